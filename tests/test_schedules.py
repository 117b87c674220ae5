import math

import pytest
import torch

from steindiff.core.processes import VPLinearProcess
from steindiff.core.schedules import build_sigmas, check_sigmas, edm_sigmas, logsnr_sigmas


def test_edm_grid_known_values():
    s = edm_sigmas(18, 0.002, 80.0, 7.0)
    assert math.isclose(float(s[0]), 80.0, rel_tol=1e-12) and math.isclose(float(s[-1]), 0.002, rel_tol=1e-12)
    # the polynomial interpolates sigma^(1/rho) linearly
    d = torch.diff(s ** (1 / 7))
    torch.testing.assert_close(d, d[0].expand_as(d))


def test_logsnr_is_uniform_in_lambda():
    s = logsnr_sigmas(10, 0.01, 10.0)
    d = torch.diff(-torch.log(s))
    torch.testing.assert_close(d, d[0].expand_as(d))


@pytest.mark.parametrize("schedule", ["edm", "logsnr", "time_uniform", "time_quadratic"])
@pytest.mark.parametrize("final_step", ["zero", "sigma_min", "denoise"])
def test_grid_lengths_and_policy(schedule, final_step):
    for n in (1, 2, 5):
        g = build_sigmas(schedule, n, final_step, sigma_min=0.01, sigma_max=50.0)
        assert g.dtype == torch.float64 and len(g) == n + 1
        assert math.isclose(float(g[0]), 50.0, rel_tol=1e-9)
        if final_step == "zero":
            assert float(g[-1]) == 0.0
            if n > 1:
                assert math.isclose(float(g[-2]), 0.01, rel_tol=1e-9)
        else:
            assert math.isclose(float(g[-1]), 0.01, rel_tol=1e-9)


def test_time_uniform_on_vp_is_uniform_in_t():
    p = VPLinearProcess()
    g = build_sigmas("time_uniform", 8, "sigma_min", sigma_min=0.01, sigma_max=50.0, process=p)
    d = torch.diff(p.t_of_sigma(g))
    torch.testing.assert_close(d, d[0].expand_as(d))


def test_explicit_and_errors():
    g = build_sigmas("explicit", None, "zero", sigmas=[10.0, 1.0, 0.0])
    assert g.tolist() == [10.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="ending at 0"):
        build_sigmas("explicit", None, "zero", sigmas=[10.0, 1.0])
    with pytest.raises(ValueError, match="strictly decreasing"):
        check_sigmas(torch.tensor([1.0, 2.0, 0.0]), "zero")
    with pytest.raises(ValueError, match="unknown schedule"):
        build_sigmas("cosine", 4)
    with pytest.raises(ValueError, match="unknown final_step"):
        build_sigmas("edm", 4, "half")
    with pytest.raises(ValueError, match="num_steps"):
        build_sigmas("edm", 0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        build_sigmas("edm", 4, sigma_min=5.0, sigma_max=1.0)
