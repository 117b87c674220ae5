"""The sampling loop: per-seed noise, labels, float64, NFE budget, errors, the main job."""

import json

import pytest
import torch

from steindiff.core import (
    GaussianMixture,
    build_sigmas,
    initial_noise,
    make_solver,
    mixture_preset,
    num_steps_for_nfe,
    parse_seeds,
    sample,
)
from steindiff.core.denoiser import CountingDenoiser, Denoiser, DenoiserSpec, GuidedDenoiser
from steindiff.core.solvers import SOLVERS


def test_noise_depends_on_seed_alone():
    a = initial_noise([5, 0, 9], (3, 2))
    b = initial_noise([9, 1, 2, 5], (3, 2))
    assert torch.equal(a[0], b[3]) and torch.equal(a[2], b[0])
    assert not torch.equal(a[0], a[1])
    # float64 and float32 runs start from the same noise up to rounding
    torch.testing.assert_close(initial_noise([3], (4,), dtype=torch.float64).float(), initial_noise([3], (4,)))


def test_seed_parsing_and_errors():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds(0) == [0]
    assert parse_seeds([4, 2]) == [4, 2]
    for bad in ("3-1", "a-b", "1,,2", "-4"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    with pytest.raises(ValueError, match="distinct"):
        parse_seeds("0-3,2")
    with pytest.raises(ValueError, match="non-negative"):
        parse_seeds([1, -2])


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_sample_matches_across_batch_sizes_and_order(batch_size):
    data = mixture_preset("aniso32")
    sigmas = build_sigmas("edm", 6, "zero")
    seeds = list(range(64))
    ref = sample(data, sigmas, make_solver("dpmpp_2m"), seeds=seeds, shape=(32,)).samples
    got = sample(data, sigmas, make_solver("dpmpp_2m"), seeds=seeds, shape=(32,), batch_size=batch_size)
    assert torch.equal(got.samples, ref)
    # a seed's sample does not depend on its position or its batch-mates
    sub = sample(data, sigmas, make_solver("dpmpp_2m"), seeds=[40, 3], shape=(32,)).samples
    assert torch.equal(sub[0], ref[40]) and torch.equal(sub[1], ref[3])


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("preset", ["ring2d", "aniso32"])
def test_every_solver_is_finite_on_mixture_presets(name, preset):
    data = mixture_preset(preset, temperature=0.5)
    sigmas = build_sigmas("edm", 5, "zero")
    res = sample(data, sigmas, make_solver(name), seeds=range(32), shape=(data.dim,))
    assert bool(torch.isfinite(res.samples).all())


def test_float64_on_request_and_many_steps_reach_the_data():
    data = mixture_preset("ring2d")
    sigmas = build_sigmas("edm", 64, "zero")
    res = sample(data, sigmas, make_solver("heun"), seeds=range(256), shape=(2,), dtype=torch.float64)
    assert res.samples.dtype == torch.float64
    radius = res.samples.norm(dim=1)
    assert abs(float(radius.mean()) - 2.0) < 0.05  # the ring of modes has radius 2


def test_vp_process_starts_from_its_prior():
    from steindiff.core import make_process

    data = mixture_preset("ring2d")
    vp = make_process("vp_linear")
    sigmas = build_sigmas("logsnr", 4, "zero", sigma_max=vp.sigma_max)
    seeds = [0]
    res = sample(data, sigmas, make_solver("euler"), seeds=seeds, shape=(2,), process=vp,
                 dtype=torch.float64)
    # the first Euler step's input is eps / alpha = sqrt(1 + sigma^2) eps
    x0 = initial_noise(seeds, (2,), dtype=torch.float64) * (1 + vp.sigma_max**2) ** 0.5
    x = x0
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        d = data(x, s)
        x = s_next / s * x + (1 - s_next / s) * d
    torch.testing.assert_close(res.samples, x)


class Conditional(Denoiser):
    """A toy class-conditional denoiser: pulls x toward its class's value."""

    def __init__(self):
        super().__init__(DenoiserSpec(shape=(1,), num_classes=3))

    def denoise(self, x, sigma, labels):
        target = labels @ torch.arange(3, dtype=x.dtype).unsqueeze(1) if labels is not None else 0.0
        return x / (1 + sigma[:, None] ** 2) + target * sigma[:, None] ** 2 / (1 + sigma[:, None] ** 2)


def test_conditional_labels_drawn_per_seed_and_guidance():
    sigmas = build_sigmas("edm", 8, "zero")
    a = sample(Conditional(), sigmas, make_solver("euler"), seeds=[0, 1, 2, 3], shape=(1,))
    b = sample(Conditional(), sigmas, make_solver("euler"), seeds=[3, 1], shape=(1,))
    assert a.labels.shape == (4, 3)
    assert torch.equal(a.labels[3], b.labels[0]) and torch.equal(a.samples[3], b.samples[0])
    guided = GuidedDenoiser(Conditional(), scale=2.0)
    g = sample(guided, sigmas, make_solver("euler"), seeds=[0, 1, 2, 3], shape=(1,))
    assert torch.equal(g.labels, a.labels)
    assert g.nfe == a.nfe == 8
    with pytest.raises(ValueError, match="class-conditional"):
        GuidedDenoiser(mixture_preset("ring2d"), scale=2.0)


def test_counting_and_nfe_budget():
    counter = CountingDenoiser(mixture_preset("ring2d"))
    counter(torch.zeros(3, 2), 1.0)
    counter(torch.zeros(3, 2), 0.5)
    assert counter.calls == 2
    assert num_steps_for_nfe(make_solver("heun"), 7, "zero") == 4
    assert num_steps_for_nfe(make_solver("heun"), 8, "sigma_min") == 4
    assert num_steps_for_nfe(make_solver("dpmpp_2m"), 6, "denoise") == 5
    with pytest.raises(ValueError, match="at least 2 NFE"):
        num_steps_for_nfe(make_solver("heun"), 1, "sigma_min")
    with pytest.raises(ValueError, match="nfe must be"):
        num_steps_for_nfe(make_solver("euler"), 0)


def test_sample_errors():
    data = mixture_preset("ring2d")
    with pytest.raises(ValueError, match="ending at 0"):
        sample(data, build_sigmas("edm", 3, "sigma_min"), make_solver("euler"), seeds=[0], shape=(2,))
    with pytest.raises(ValueError, match="x must have shape"):
        bad = GaussianMixture([1.0], [[0.0, 0.0, 0.0]], [1.0])
        sample(bad, build_sigmas("edm", 3), make_solver("euler"), seeds=[0], shape=(2,))


def test_main_job_writes_results(tmp_path, capsys):
    from steindiff.cli.compare import main

    rc = main(["--solvers", "euler,heun", "--nfe", "5", "--seeds", "0-99", "--out", str(tmp_path)])
    assert rc == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["solvers"]["euler"]["nfe"] == 5 and results["solvers"]["heun"]["nfe"] == 5
    assert (tmp_path / "scatter.png").stat().st_size > 1000
    assert "energy dist" in capsys.readouterr().out
    rc = main(["--solvers", "dpmpp_2m", "--nfe", "4", "--seeds", "0-49", "--corrector", "stein",
               "--gamma-min", "0.5", "--out", str(tmp_path / "stein")])
    assert rc == 0
    stein = json.loads((tmp_path / "stein" / "results.json").read_text())["solvers"]["dpmpp_2m"]
    assert len(stein["trace"]) == 4 and all(t["gamma"] >= 0.5 for t in stein["trace"])
    assert (tmp_path / "stein" / "gamma.png").exists()
    assert main(["--solvers", "rk4", "--out", str(tmp_path / "x")]) == 2
    assert "unknown solver 'rk4'" in capsys.readouterr().err
