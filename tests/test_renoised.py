"""The re-noised Stein estimate (issue 16, ours): what it estimates, exactly, on the mixture test-bed."""

from dataclasses import replace

import pytest
import torch

from steindiff.core import build_sigmas, make_solver, mixture_preset, sample
from steindiff.core.correctors import Corrector, OracleCorrector
from steindiff.core.correctors.constant import ConstantCorrector
from steindiff.core.correctors.renoised import RenoisedSteinCorrector
from steindiff.core.sampling import integrate
from steindiff.core.solvers import SOLVERS


class AnchorAt(Corrector):
    """Calls ``inner`` with the step's data prediction replaced by ``anchor`` and keeps gamma and the oracle's."""

    def __init__(self, inner, anchor=None, oracle=None):
        self.inner, self.anchor, self.oracle, self.info, self.oracle_gamma = inner, anchor, oracle, None, None

    requires_grad = False

    def correct(self, x, output, context):
        if self.oracle is not None:
            self.oracle_gamma = float(self.oracle.gamma(x, output, context).mean())
        if self.anchor is not None:
            output = replace(output, data_prediction=self.anchor)
        x_next, self.info = self.inner.correct(x, output, context)
        return x_next, self.info


def one_step(data, x, sigma, sigma_next, corrector, solver="euler", seeds=None):
    integrate(data, x, torch.tensor([sigma, sigma_next], dtype=torch.float64), make_solver(solver), corrector,
              final_step="sigma_min", seeds=seeds)
    return corrector


def gaussian_renoised_gamma(stds, sigma):
    """Closed form of the re-noised gamma for N(m, diag(s^2)), Euler, data reading, x on the marginal and the
    anchor D(x): per coordinate k = sigma^2/(s^2+sigma^2), the anchor's variance c^2 = s^4/(s^2+sigma^2),
    u(x~) = k (x~ - m), E<u, x~ - a> = k sigma^2, E|u|^2 = k^2 (c^2 + sigma^2)."""
    s2 = torch.as_tensor(stds, dtype=torch.float64) ** 2
    k = sigma**2 / (s2 + sigma**2)
    c2 = s2**2 / (s2 + sigma**2)
    return float((k * sigma**2).sum() / (k**2 * (c2 + sigma**2)).sum())


@pytest.mark.parametrize("numerator", ["stein", "direct"])
def test_closed_form_gaussian_anchor_is_posterior_mean(numerator):
    # the anchors are posterior means, not data draws: x~ is off the marginal and gamma~ is not 1 (1.16 here)
    data = mixture_preset("gaussian2d")
    sigma, n = 1.0, 40000
    _, x = data.noisy_sample(n, sigma, generator=torch.Generator().manual_seed(1))
    oracle = OracleCorrector(reference="posterior", data=data)
    corr = RenoisedSteinCorrector(divergence="exact", numerator=numerator, renoise_from="data_prediction")
    rec = one_step(data, x, sigma, 0.5, AnchorAt(corr, oracle=oracle))
    expected = gaussian_renoised_gamma([1.0, 0.3], sigma)
    assert expected == pytest.approx(1.1595, abs=1e-3)
    assert rec.info["gamma"] == pytest.approx(expected, abs=0.02)
    assert rec.oracle_gamma == pytest.approx(1.0, abs=1e-9)  # Euler, exact denoiser: the oracle is 1 at every state


@pytest.mark.parametrize("preset,sigma", [("ring2d", 1.0), ("ring2d", 0.2), ("aniso32", 1.0), ("aniso32", 0.1)])
def test_data_draw_anchor_gives_one_and_the_oracle(preset, sigma):
    # anchors that are draws of the data law: x~ = x_star + sigma eps~ is on the marginal, gamma~ = 1 = the oracle
    data = mixture_preset(preset)
    n, divergence = (20000, "exact") if data.dim == 2 else (4000, "hutchinson")
    x_star, x = data.noisy_sample(n, sigma, generator=torch.Generator().manual_seed(2))
    oracle = OracleCorrector(reference="posterior", data=data)
    corr = RenoisedSteinCorrector(divergence=divergence, renoise_from="data_prediction")
    rec = one_step(data, x, sigma, sigma / 3, AnchorAt(corr, x_star, oracle), seeds=range(n))
    assert rec.info["gamma"] == pytest.approx(1.0, abs=0.03)
    assert rec.info["gamma"] == pytest.approx(rec.oracle_gamma, abs=0.03)
    # the same states, anchored at the posterior mean instead (ring2d, sigma 1: far from 1)
    if (preset, sigma) == ("ring2d", 1.0):
        rec = one_step(data, x, sigma, sigma / 3, AnchorAt(RenoisedSteinCorrector(divergence="exact")), seeds=range(n))
        assert abs(rec.info["gamma"] - 1.0) > 0.1


def _run(corrector, seeds, batch_size, solver="heun", data="ring2d", steps=3):
    data = mixture_preset(data)
    return sample(data, build_sigmas("edm", steps, "zero"), make_solver(solver), corrector, seeds=seeds,
                  shape=(data.dim,), batch_size=batch_size, dtype=torch.float64)


@pytest.mark.parametrize("solver", ["heun", "dpmpp_2m"])
def test_per_seed_determinism(solver):
    corr = RenoisedSteinCorrector(statistics="sample", renoise_draws=2)
    seeds = list(range(12))
    whole = _run(corr, seeds, 12, solver).samples
    split = _run(corr, seeds, 5, solver).samples
    backwards = _run(corr, seeds[::-1], 7, solver).samples.flip(0)
    assert torch.allclose(whole, split, atol=1e-12, rtol=0)
    assert torch.allclose(whole, backwards, atol=1e-12, rtol=0)
    plain = _run(Corrector(), seeds, 12, solver).samples
    assert (whole - plain).abs().max() > 1e-3  # the correction did something
    other = _run(RenoisedSteinCorrector(statistics="sample", renoise_draws=2, renoise_seed=1), seeds, 12, solver)
    assert (other.samples - whole).abs().max() > 1e-6  # eps~ depends on its salt


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
@pytest.mark.parametrize("draws", [1, 2])
def test_extra_nfe_is_the_steps_nfe(solver, draws):
    seeds, steps = list(range(8)), 4
    base = _run(Corrector(), seeds, 8, solver, steps=steps)
    per_step = [t["nfe"] for t in base.trace]
    step_nfe = [b - a for a, b in zip([0] + per_step[:-1], per_step)]
    corr = RenoisedSteinCorrector(renoise_draws=draws, correct_first=False, renoise_from="data_prediction")
    got = _run(corr, seeds, 8, solver, steps=steps)
    assert got.nfe == base.nfe + draws * sum(step_nfe[1:])
    # renoise_from="denoiser": D(x, sigma) from the multistep history (2M), else one more call per corrected step
    corr = RenoisedSteinCorrector(renoise_draws=draws, correct_first=False, renoise_from="denoiser")
    got = _run(corr, seeds, 8, solver, steps=steps)
    extra_calls = (steps - 2) if solver == "heun" else 0  # Heun's two-call steps (its last step is Euler)
    assert got.nfe == base.nfe + draws * sum(step_nfe[1:]) + extra_calls


class AnchorCheck(Corrector):
    """Compares the corrector's "denoiser" anchor with D(x, sigma) evaluated directly, at every step."""

    def __init__(self):
        self.inner, self.errors = RenoisedSteinCorrector(renoise_from="denoiser"), []

    requires_grad = False

    def correct(self, x, output, context):
        with context.counter.paused():
            direct = context.counter(x, torch.full((len(x),), context.sigma, dtype=x.dtype), context.labels)
            self.errors.append(float((self.inner.anchor(x, output, context) - direct).abs().max()))
        return output.x_next, {}


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_denoiser_anchor_is_d_of_x_for_every_solver(solver):
    # the shortcuts (history, one-call steps) must give D(x, sigma) for every solver of the package
    check = AnchorCheck()
    _run(check, list(range(8)), 8, solver, steps=5)
    assert len(check.errors) == 5 and max(check.errors) < 1e-12


def test_denoiser_anchor_equals_data_prediction_for_euler():
    seeds = list(range(16))
    a = _run(RenoisedSteinCorrector(renoise_from="denoiser"), seeds, 16, "euler").samples
    b = _run(RenoisedSteinCorrector(renoise_from="data_prediction"), seeds, 16, "euler").samples
    assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_clip_applies():
    seeds = list(range(16))
    # a clip to a single value is the constant corrector
    pinned = _run(RenoisedSteinCorrector(gamma_min=0.7, gamma_max=0.7), seeds, 16, "dpmpp_2m")
    const = _run(ConstantCorrector(gamma=0.7), seeds, 16, "dpmpp_2m")
    assert torch.allclose(pinned.samples, const.samples, atol=1e-12, rtol=0)
    assert all(t["gamma"] == pytest.approx(0.7) for t in pinned.trace)
    free = _run(RenoisedSteinCorrector(statistics="sample"), seeds, 16, "heun")
    clipped = _run(RenoisedSteinCorrector(statistics="sample", gamma_min=0.95, gamma_max=1.05), seeds, 16, "heun")
    assert max(t["gamma_max_row"] for t in free.trace) > 1.05 or min(t["gamma_min_row"] for t in free.trace) < 0.95
    assert all(0.95 - 1e-12 <= t["gamma_min_row"] <= t["gamma_max_row"] <= 1.05 + 1e-12 for t in clipped.trace)
    assert sum(t["clipped"] for t in clipped.trace) > 0


@pytest.mark.parametrize("kwargs", [
    {"renoise_draws": 0}, {"renoise_draws": 1.5}, {"renoise_draws": True}, {"renoise_from": "x"},
    {"numerator": "both"}, {"renoise_seed": -1}, {"subset": 4}, {"target": "noise"}, {"gamma_min": 2, "gamma_max": 1},
])
def test_bad_options_raise_one_line(kwargs):
    with pytest.raises(ValueError) as err:
        RenoisedSteinCorrector(**kwargs)
    assert "\n" not in str(err.value)


def test_config_builds():
    from steindiff.build import build_run, compose_sample_config

    run = build_run(compose_sample_config(["denoiser=ring2d", "corrector=stein_renoised", "corrector.renoise_draws=2",
                                           "num_samples=4"]), metrics=False)
    assert isinstance(run.corrector, RenoisedSteinCorrector) and run.corrector.renoise_draws == 2
    assert not run.corrector.requires_grad
