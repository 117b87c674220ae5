import math

import pytest
import torch

from steindiff.core.processes import (
    VEProcess,
    VPCosineProcess,
    VPDiscreteProcess,
    VPLinearProcess,
    make_process,
)

VP = [VPLinearProcess(), VPCosineProcess(), VPDiscreteProcess()]


def _times(p, n=50):
    return torch.linspace(p.t_min, p.t_max, n, dtype=torch.float64)


@pytest.mark.parametrize("process", VP, ids=lambda p: p.name)
def test_vp_is_variance_preserving_and_lambda_consistent(process):
    t = _times(process)
    a, s = process.alpha(t), process.sigma(t)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(t), rtol=0, atol=1e-12)
    torch.testing.assert_close(process.lambda_(t), torch.log(a / s), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(process.sigma_hat(t), s / a, rtol=1e-10, atol=0)
    torch.testing.assert_close(process.alpha_of_sigma(s / a), a, rtol=1e-10, atol=0)
    assert bool((process.lambda_(t)[1:] < process.lambda_(t)[:-1]).all()), "lambda must decrease in t"


@pytest.mark.parametrize("process", VP + [VEProcess()], ids=lambda p: p.name)
def test_inverse_maps_round_trip(process):
    t = _times(process)
    torch.testing.assert_close(process.t_of_lambda(process.lambda_(t)), t, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(process.t_of_sigma(process.sigma_hat(t)), t, rtol=1e-8, atol=1e-8)


def test_ve_is_edm():
    p = VEProcess()
    t = torch.tensor([0.002, 1.0, 80.0], dtype=torch.float64)
    assert torch.equal(p.alpha(t), torch.ones(3, dtype=torch.float64))
    assert torch.equal(p.sigma(t), t)
    torch.testing.assert_close(p.lambda_(t), -torch.log(t))
    assert p.sigma_min == 0.002 and p.sigma_max == 80.0


def test_linear_vp_known_values():
    p = VPLinearProcess(beta_min=0.1, beta_max=20.0)
    # log alpha(1) = -0.05 - 19.9/4
    assert math.isclose(float(p.log_alpha(torch.tensor(1.0))), -0.05 - 19.9 / 4, rel_tol=1e-12)
    # the EDM paper quotes sigma_max ~ 152 for VP at t = 1
    assert 150 < p.sigma_max < 155


def test_discrete_matches_ddpm_at_integers():
    p = VPDiscreteProcess()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    acp = torch.cumprod(1 - betas, 0)
    idx = torch.tensor([0, 1, 500, 999])
    torch.testing.assert_close(p.alpha(idx.double()) ** 2, acp[idx], rtol=1e-12, atol=0)
    # between integers log alpha is linear
    mid = p.log_alpha(torch.tensor(10.5, dtype=torch.float64))
    torch.testing.assert_close(mid, 0.5 * (p.log_alpha(torch.tensor(10.0)) + p.log_alpha(torch.tensor(11.0))))


def test_make_process_errors():
    assert isinstance(make_process("edm"), VEProcess)
    with pytest.raises(ValueError, match="unknown process 'vq'"):
        make_process("vq")
    with pytest.raises(ValueError):
        VEProcess(sigma_min=1.0, sigma_max=0.5)
