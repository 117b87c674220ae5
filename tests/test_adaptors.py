"""Tests for steindiff.core.adaptors: exact networks for Gaussian data must give exact denoisers."""

from __future__ import annotations

import math

import pytest
import torch

from steindiff.core.adaptors import (
    EDMPrecond,
    VPNetworkDenoiser,
    draw_labels,
    one_hot_labels,
    round_sigma,
    trained_sigmas,
)
from steindiff.core.denoiser import GuidedDenoiser
from steindiff.core.processes import VEProcess, VPCosineProcess, VPDiscreteProcess, VPLinearProcess

F64 = torch.float64
SIGMAS = torch.tensor([0.02, 0.1, 0.5, 1.0, 3.0, 10.0, 40.0, 80.0], dtype=F64)
MU, S = 0.3, 0.7  # Gaussian data N(MU, S^2 I)


def exact_edm_denoiser(x, sigma, mu=MU, s=S):
    """E[x_star | x_hat] for x_star ~ N(mu, s^2 I), x_hat = x_star + sigma eps."""
    sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return mu + s**2 / (s**2 + sigma**2) * (x - mu)


def sample_x(sigma, shape=(3, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = MU + S * torch.randn(len(sigma), *shape, generator=g, dtype=F64)
    return x0 + sigma.reshape(-1, 1, 1) * torch.randn(len(sigma), *shape, generator=g, dtype=F64)


# ---- EDMPrecond ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_edm_precond_exact_network_gives_exact_denoiser(sigma_data):
    def f_exact(x_in, c_noise, labels):
        sigma = torch.exp(4 * c_noise).reshape(-1, 1, 1)
        r = torch.sqrt(sigma**2 + sigma_data**2)
        x = x_in * r  # undo c_in
        d = MU + S**2 / (S**2 + sigma**2) * (x - MU)
        c_skip, c_out = sigma_data**2 / r**2, sigma * sigma_data / r
        return (d - c_skip * x) / c_out

    den = EDMPrecond(f_exact, sigma_data=sigma_data)
    x = sample_x(SIGMAS)
    out = den(x, SIGMAS)
    assert out.dtype == F64
    torch.testing.assert_close(out, exact_edm_denoiser(x, SIGMAS), rtol=1e-10, atol=1e-10)


def test_edm_precond_coefficients_numeric():
    den = EDMPrecond(lambda x, c, y: x, sigma_data=0.5)
    c_skip, c_out, c_in, c_noise = den.coefficients(torch.tensor([0.5, 1.2], dtype=F64))
    torch.testing.assert_close(c_skip, torch.tensor([0.5, 0.25 / 1.69], dtype=F64))
    torch.testing.assert_close(c_out, torch.tensor([0.25 / math.sqrt(0.5), 0.6 / 1.3], dtype=F64))
    torch.testing.assert_close(c_in, torch.tensor([1 / math.sqrt(0.5), 1 / 1.3], dtype=F64))
    torch.testing.assert_close(c_noise, torch.tensor([math.log(0.5) / 4, math.log(1.2) / 4], dtype=F64))


def test_edm_precond_network_dtype_and_labels_pass_through():
    seen = {}

    def net(x_in, c_noise, labels):
        seen.update(x=x_in.dtype, c=c_noise.dtype, labels=labels)
        return torch.zeros_like(x_in)

    den = EDMPrecond(net, num_classes=3, network_dtype=torch.float32)
    labels = one_hot_labels([2, 0], 3, dtype=F64)
    x = torch.ones(2, 5, dtype=F64)
    out = den(x, 1.0, labels)  # scalar sigma is broadcast; F = 0 leaves c_skip x
    assert out.dtype == F64 and seen["x"] == torch.float32 and seen["c"] == torch.float32
    torch.testing.assert_close(seen["labels"], labels.float())
    torch.testing.assert_close(out, torch.full_like(x, 0.25 / 1.25))
    assert den.num_classes == 3 and GuidedDenoiser(den, scale=2.0).num_classes == 3


# ---- VPNetworkDenoiser ---------------------------------------------------------------------------

PROCESSES = {
    "linear": VPLinearProcess(),
    "cosine": VPCosineProcess(),
    "discrete": VPDiscreteProcess(),
}


def exact_native_network(process, prediction, time_scale=1.0, record=None):
    """A perfect network in native coordinates: net(x_t, t_input) -> eps, v or x0."""

    def net(x_t, t_in, labels):
        if record is not None:
            record.append(t_in.clone())
        t = t_in.to(F64) / time_scale
        alpha = process.alpha(t).reshape(-1, 1, 1)
        sigma = process.sigma(t).reshape(-1, 1, 1)
        # posterior mean of x0 ~ N(MU, S^2) given x_t = alpha x0 + sigma eps
        x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x_t - alpha * MU)
        eps = (x_t - alpha * x0) / sigma
        return {"x0": x0, "eps": eps, "v": alpha * eps - sigma * x0}[prediction]

    return net


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("name", list(PROCESSES))
def test_vp_network_exact_for_gaussian_data(name, prediction):
    process = PROCESSES[name]
    time_scale = 1.0 if name == "discrete" else 1000.0
    net = exact_native_network(process, prediction, time_scale)
    den = VPNetworkDenoiser(net, process, prediction=prediction, time_scale=time_scale)
    assert den.time_input == ("discrete" if name == "discrete" else "continuous")
    x = sample_x(SIGMAS)
    torch.testing.assert_close(den(x, SIGMAS), exact_edm_denoiser(x, SIGMAS), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_vp_timestep_round_trips(name):
    process = PROCESSES[name]
    den = VPNetworkDenoiser(lambda *a: a[0], process, time_scale=1.0)
    t = den.timestep(SIGMAS)
    torch.testing.assert_close(process.sigma_hat(t), SIGMAS, rtol=1e-10, atol=0)
    scaled = VPNetworkDenoiser(lambda *a: a[0], process, time_input="continuous", time_scale=999.0)
    torch.testing.assert_close(scaled.timestep(SIGMAS), 999.0 * t)


def test_discrete_round_timesteps_feeds_integers_and_uses_rounded_sigma():
    process = PROCESSES["discrete"]
    record = []
    net = exact_native_network(process, "eps", record=record)
    den = VPNetworkDenoiser(net, process, prediction="eps", round_timesteps=True)
    sigmas = torch.tensor([0.0317, 0.77, 5.3, 61.0], dtype=F64)  # deliberately off-grid
    x = sample_x(sigmas)
    out = den(x, sigmas)
    t_in = record[-1]
    assert torch.equal(t_in, t_in.round()) and not torch.equal(t_in, den.process.t_of_sigma(sigmas))
    torch.testing.assert_close(den.timestep(sigmas), t_in)
    # the network is evaluated as trained, at the rounded timestep's own noise level
    s_rounded = process.sigma_hat(t_in)
    torch.testing.assert_close(out, exact_edm_denoiser(x, s_rounded), rtol=1e-9, atol=1e-9)


def test_trained_and_round_sigma():
    process = VPDiscreteProcess(num_timesteps=50, beta_start=1e-3, beta_end=0.1)
    table = trained_sigmas(process)
    assert table.shape == (50,) and bool((table[1:] < table[:-1]).all())
    torch.testing.assert_close(table, process.sigma_hat(torch.arange(49, -1, -1, dtype=F64)))
    torch.testing.assert_close(round_sigma(table, process), table, rtol=0, atol=0)
    r = round_sigma(torch.tensor([0.9, 2.5], dtype=torch.float32), process)
    assert r.dtype == torch.float32 and bool(torch.isin(r.double(), table.float().double()).all())
    s = round_sigma(1.7, process)
    assert isinstance(s, float) and s in table.tolist()
    assert abs(math.log(s / 1.7)) == pytest.approx(float((table.log() - math.log(1.7)).abs().min()))
    # a grid built from trained sigmas hits integer timesteps, so rounding is a no-op there
    t = process.t_of_sigma(table)
    torch.testing.assert_close(t, t.round(), rtol=0, atol=1e-8)


def test_vp_labels_pass_through():
    seen = []
    den = VPNetworkDenoiser(lambda x, t, y: seen.append(y) or x, PROCESSES["linear"], "x0", num_classes=4)
    labels = one_hot_labels([3, 1], 4, dtype=F64)
    den(torch.zeros(2, 3, dtype=F64), torch.tensor([1.0, 2.0], dtype=F64), labels)
    assert seen[-1] is labels and den.num_classes == 4


# ---- validation ----------------------------------------------------------------------------------


def test_bad_prediction_and_ve_process_raise():
    with pytest.raises(ValueError, match=r"unknown prediction 'score'; accepted: eps, v, x0") as err:
        VPNetworkDenoiser(lambda *a: a[0], PROCESSES["linear"], prediction="score")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs a VP process") as err:
        VPNetworkDenoiser(lambda *a: a[0], VEProcess())
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="VPDiscreteProcess"):
        VPNetworkDenoiser(lambda *a: a[0], PROCESSES["cosine"], time_input="discrete")
    with pytest.raises(ValueError, match="round_timesteps"):
        VPNetworkDenoiser(lambda *a: a[0], PROCESSES["cosine"], round_timesteps=True)
    with pytest.raises(TypeError, match="VPDiscreteProcess"):
        trained_sigmas(PROCESSES["linear"])


# ---- labels --------------------------------------------------------------------------------------


def test_draw_labels_per_seed_and_position_independent():
    a = draw_labels([0, 1, 2, 3, 4], 10)
    b = draw_labels([4, 2, 0], 10)
    assert a.dtype == torch.long and a.shape == (5,)
    assert b.tolist() == [a[4].item(), a[2].item(), a[0].item()]
    assert draw_labels([0], 10).item() == a[0].item()  # seed 0 is valid, same alone or in a batch
    many = draw_labels(range(500), 10)
    assert set(many.tolist()) == set(range(10))
    # label streams are distinct from a generator seeded with the seed itself (the noise stream)
    naive = [int(torch.randint(1000, (1,), generator=torch.Generator().manual_seed(s))) for s in range(50)]
    assert draw_labels(range(50), 1000).tolist() != naive
    assert draw_labels([], 10).shape == (0,)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_draw_labels_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seeds must be"):
        draw_labels([0, bad], 10)


def test_one_hot_labels():
    y = one_hot_labels(torch.tensor([2, 0]), 3, dtype=F64)
    assert y.dtype == F64
    torch.testing.assert_close(y, torch.tensor([[0, 0, 1], [1, 0, 0]], dtype=F64))
    with pytest.raises(ValueError, match="class indices"):
        one_hot_labels([3], 3)
    with pytest.raises(ValueError, match="num_classes"):
        draw_labels([1], 0)
