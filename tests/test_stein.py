"""The SteinDiff corrector computes what the paper says (checked on the exact mixture test-bed)."""

import math
import weakref

import pytest
import torch

from steindiff.core import (
    SteinCorrector,
    build_sigmas,
    make_process,
    make_solver,
    mixture_preset,
    sample,
)
from steindiff.core.correctors import Corrector
from steindiff.core.denoiser import Denoiser
from steindiff.core.diagnostics import lipschitz_estimate, mse_to_target, oracle_gamma
from steindiff.core.divergence import exact_divergence, make_probes, vjp_divergence
from steindiff.core.observers import LipschitzObserver
from steindiff.core.sampling import integrate
from steindiff.core.solvers import SOLVERS


class Recorder(Corrector):
    """Wraps a corrector and keeps each step's input, output and context."""

    def __init__(self, inner):
        self.inner, self.records = inner, []

    @property
    def requires_grad(self):
        return self.inner.requires_grad

    def correct(self, x, output, context):
        x_next, info = self.inner.correct(x, output, context)
        self.records.append((x.detach(), output, context, x_next, info))
        return x_next, info


def on_marginal(data, n, sigma_hat, seed=0):
    """(x_star, x_hat) with x_hat = x_star + sigma_hat * eps: the exact forward marginal (EDM coordinates)."""
    g = torch.Generator().manual_seed(seed)
    return data.noisy_sample(n, sigma_hat, generator=g)


def one_step(data, x_hat, sigma, sigma_next, solver, corrector, process=None):
    rec = Recorder(corrector)
    integrate(data, x_hat, torch.tensor([sigma, sigma_next], dtype=torch.float64), solver, rec,
              final_step="sigma_min", process=process)
    return rec.records[0]


def residual_native(x_hat, output, context, target):
    x_native = context.alpha * x_hat
    t = context.alpha_next * output.x_next if target == "state" else output.data_prediction
    return x_native - t.detach(), x_native


# ---- Theorem 4.7 ------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["state", "data"])
@pytest.mark.parametrize("process_name", ["ve", "vp_linear"])
@pytest.mark.parametrize("preset,knobs", [("ring2d", {}),
                                          pytest.param("aniso32", {"temperature": 0.5}, marks=pytest.mark.slow)])
def test_stein_gamma_equals_oracle_on_marginal(target, process_name, preset, knobs):
    """On-marginal states: the Stein estimate equals gamma* = E<u, x - x_star>/E|u|^2 within MC error,
    for exact and miscalibrated denoisers (Stein's identity needs only the true marginal of x)."""
    data = mixture_preset(preset, **knobs)
    process = make_process(process_name)
    n = 30000 if preset == "ring2d" else 6000
    sigma, sigma_next = 1.2, 0.4
    x_star, x_hat = on_marginal(data, n, sigma)
    corrector = SteinCorrector(target=target, statistics="sample", divergence="exact")
    x, out, ctx, _, info = one_step(data, x_hat, sigma, sigma_next, make_solver("heun"), corrector, process)
    if process_name == "vp_linear":
        assert ctx.alpha < 0.7  # a real VP test: alpha = 1/sqrt(1 + 1.2^2)
    u, x_native = residual_native(x, out, ctx, target)
    gamma_oracle = oracle_gamma(u, x_native, x_star)
    # per-sample Stein numerators (exact divergence of the same step map)
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        o = ctx.step_fn(xg)
        t = o.x_next if target == "state" else o.data_prediction
        div_t, _ = exact_divergence(t, xg)
    scale = ctx.alpha_next / ctx.alpha if target == "state" else 1.0 / ctx.alpha
    div_u = x[0].numel() - scale * div_t
    sigma_native = ctx.alpha * sigma
    stein_rows = (1 - 1 / ctx.alpha) * (u * x_native).sum(1) + (sigma_native**2 / ctx.alpha) * div_u
    oracle_rows = (u * (x_native - x_star)).sum(1)
    uu = u.pow(2).sum(1).mean()
    gamma_stein = float(stein_rows.mean() / uu)
    diff_se = float((stein_rows - oracle_rows).std() / math.sqrt(n) / uu)
    assert abs(gamma_stein - gamma_oracle) < 4 * diff_se + 1e-9, (gamma_stein, gamma_oracle, diff_se)
    assert diff_se < 0.1 * abs(gamma_oracle), "test too noisy to be meaningful"
    # the corrector's own batch estimate is the same quantity
    batch = SteinCorrector(target=target, statistics="batch", divergence="exact")
    _, _, _, _, info_b = one_step(data, x_hat, sigma, sigma_next, make_solver("heun"), batch, process)
    assert math.isclose(info_b["gamma"], gamma_stein, rel_tol=1e-6)


# ---- Corollary 4.9 and the "state" reading ---------------------------------------------------

@pytest.mark.parametrize("solver_name", ["euler", "dpmpp_2m"])
def test_exact_denoiser_data_target_gives_gamma_one(solver_name):
    data = mixture_preset("ring2d")
    for sigma, sigma_next in [(3.0, 1.0), (0.5, 0.2)]:
        x_star, x_hat = on_marginal(data, 20000, sigma, seed=1)
        corrector = SteinCorrector(target="data", statistics="batch", divergence="exact")
        x, out, ctx, _, info = one_step(data, x_hat, sigma, sigma_next, make_solver(solver_name), corrector)
        u, xn = residual_native(x, out, ctx, "data")
        # MC error of the estimate: spread of per-sample Stein terms over sqrt(n)
        assert abs(info["gamma"] - 1.0) < 0.03, info["gamma"]
        assert abs(oracle_gamma(u, xn, x_star) - 1.0) < 0.03


def test_exact_denoiser_state_target_gives_one_over_one_minus_r():
    data = mixture_preset("ring2d")
    sigma, sigma_next = 2.0, 0.5
    x_star, x_hat = on_marginal(data, 20000, sigma, seed=2)
    corrector = SteinCorrector(target="state", statistics="batch", divergence="exact")
    x, out, ctx, x_next, info = one_step(data, x_hat, sigma, sigma_next, make_solver("euler"), corrector)
    r = sigma_next / sigma
    assert abs(info["gamma"] - 1 / (1 - r)) < 0.03 * (1 / (1 - r))
    assert math.isclose(info["inv_one_minus_r"], 1 / (1 - r))
    # so the corrected next state is (close to) the posterior mean D(x): the jump method.md describes;
    # x_next - D = (1 - gamma (1 - r)) (x - D)
    d = out.data_prediction
    assert float((x_next - d).norm(dim=1).max() / (x - d).detach().norm(dim=1).max()) < 0.05


# ---- Theorem 4.8 ------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["state", "data"])
def test_corrected_mse_never_rises_along_on_marginal_levels(target):
    """With the exact coefficient, E|x - gamma u - x_star|^2 = E_k - b^2/c <= E_k at every level,
    and never above the uncorrected solver's error."""
    data = mixture_preset("ring2d", temperature=0.5)
    sigmas = build_sigmas("edm", 6, "sigma_min").tolist()
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x_star, x_hat = on_marginal(data, 8000, sigma, seed=3)
        corrector = SteinCorrector(target=target, statistics="batch", divergence="exact")
        x, out, ctx, x_next, info = one_step(data, x_hat, sigma, sigma_next, make_solver("euler"), corrector)
        u, xn = residual_native(x, out, ctx, target)
        gamma = oracle_gamma(u, xn, x_star)
        e_k = mse_to_target(xn, x_star)
        e_corr = mse_to_target(xn - gamma * u, x_star)
        b = float((u * (xn - x_star)).sum(1).mean())
        c = float(u.pow(2).sum(1).mean())
        assert math.isclose(e_corr, e_k - b * b / c, rel_tol=1e-8)
        assert e_corr <= e_k * (1 + 1e-12)
        assert e_corr <= mse_to_target(xn - u, x_star) * (1 + 1e-12)  # gamma = 1: the solver itself
        rho = b * b / (c * e_k)
        assert 0 <= rho <= 1


# ---- Hutchinson ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased_and_batched_equals_looped(kind):
    data = mixture_preset("aniso32", temperature=0.7)
    _, x = on_marginal(data, 16, 0.3, seed=4)
    x = x.clone().requires_grad_(True)
    y = data(x, 0.3)
    exact = data.divergence(x.detach(), torch.full((16,), 0.3, dtype=torch.float64))
    probes = make_probes(4000, x, kind, torch.Generator().manual_seed(0))
    mean, err = vjp_divergence(y, x, probes, retain_graph=True)
    assert bool(((mean - exact).abs() < 4 * err + 1e-9).all()), (mean - exact) / err
    assert float(err.mean()) < 0.2 * float(exact.abs().mean())
    few = probes[:5]
    batched, _ = vjp_divergence(y, x, few, batched=True, retain_graph=True)
    exact_autograd, _ = exact_divergence(y, x, retain_graph=True)
    torch.testing.assert_close(exact_autograd, exact, rtol=1e-10, atol=1e-10)
    looped, _ = vjp_divergence(y, x, few)  # the default: one backward per probe, the graph released at the end
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        vjp_divergence(y, x, few)


def test_estimators_agree_on_the_same_probes():
    """Same probes, three ways to get v^T J v: VJP, JVP, finite differences (compare the batch mean
    divergence; per-sample gammas amplify rows with tiny |u|)."""
    data = mixture_preset("ring2d", temperature=0.5)
    sigmas = build_sigmas("edm", 5, "zero")
    s_div = {}
    for div in ["hutchinson", "jvp", "finite_difference"]:
        c = SteinCorrector(target="data", statistics="sample", divergence=div)
        res = sample(data, sigmas, make_solver("euler"), c, seeds=range(50), shape=(2,), dtype=torch.float64)
        s_div[div] = [t["s_div"] for t in res.trace]
    for i, ref in enumerate(s_div["hutchinson"]):
        assert math.isclose(s_div["jvp"][i], ref, rel_tol=1e-6, abs_tol=1e-9)
        assert math.isclose(s_div["finite_difference"][i], ref, rel_tol=1e-2, abs_tol=1e-3)


# ---- switches, safeguards, NFE --------------------------------------------------------------

def test_autograd_estimators_cost_no_extra_nfe_and_the_others_do():
    data = mixture_preset("ring2d")
    sigmas = build_sigmas("edm", 4, "zero")
    for div, extra in [("hutchinson", 0), ("rademacher", 0), ("exact", 0), ("jvp", 3), ("finite_difference", 3)]:
        c = SteinCorrector(divergence=div, num_probes=3)
        res = sample(data, sigmas, make_solver("dpmpp_2m"), c, seeds=range(8), shape=(2,))
        assert res.nfe == 4 * (1 + extra), div


class NaNAt(Denoiser):
    """The exact ring denoiser, except that it returns NaN at one noise level."""

    def __init__(self, bad_sigma):
        super().__init__()
        self.data, self.bad = mixture_preset("ring2d"), bad_sigma

    def denoise(self, x, sigma, labels):
        out = self.data(x, sigma)
        return torch.where((sigma == self.bad)[:, None], torch.full_like(out, float("nan")), out)


def test_nan_denoiser_falls_back_and_is_counted():
    sigmas = build_sigmas("edm", 5, "zero")
    bad = float(sigmas[2])
    res = sample(NaNAt(bad), sigmas, make_solver("euler"), SteinCorrector(), seeds=range(16), shape=(2,))
    step = res.trace[2]
    assert step["fallback"] == 16.0 and step["gamma"] == 1.0
    assert all(t["fallback"] == 0.0 for t in res.trace[:2])


class Identity(Denoiser):
    def denoise(self, x, sigma, labels):
        return x.clone()


def test_zero_residual_falls_back():
    res = sample(Identity(), build_sigmas("edm", 3, "sigma_min"), make_solver("euler"),
                 SteinCorrector(target="data"), seeds=range(4), shape=(2,), final_step="sigma_min")
    assert all(t["fallback"] == 4.0 and t["gamma"] == 1.0 for t in res.trace)
    assert bool(torch.isfinite(res.samples).all())


def test_clipping_window_and_step_selection():
    data = mixture_preset("ring2d", temperature=0.3)
    sigmas = build_sigmas("edm", 6, "zero")
    run = lambda **kw: sample(data, sigmas, make_solver("euler"), SteinCorrector(**kw),  # noqa: E731
                              seeds=range(64), shape=(2,)).trace
    free = run()
    clipped = run(gamma_min=0.5, gamma_max=1.5)
    assert any(not 0.5 <= t["gamma"] <= 1.5 for t in free)  # so the clip has work to do
    for b in clipped:
        assert 0.5 <= b["gamma_min_row"] and b["gamma_max_row"] <= 1.5
    assert sum(t["clipped"] for t in clipped) > 0
    window = run(sigma_window=(0.5, 10.0))
    for t in window:
        assert t["corrected"] == (1.0 if 0.5 <= t["sigma"] <= 10.0 else 0.0)
        if not t["corrected"]:
            assert t["gamma"] == 1.0
    ends = run(correct_first=False, correct_last=False)
    assert [t["corrected"] for t in ends] == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_statistics_modes_and_batch_independence():
    data = mixture_preset("ring2d", temperature=0.5)
    sigmas = build_sigmas("edm", 5, "zero")
    seeds = list(range(64))

    def run(stat, bs, **kw):
        return sample(data, sigmas, make_solver("dpmpp_2m"), SteinCorrector(statistics=stat, **kw),
                      seeds=seeds, shape=(2,), batch_size=bs).samples

    # per-sample and group statistics do not depend on the batch size (groups whole in each batch),
    # up to float rounding of the batched backward pass
    torch.testing.assert_close(run("sample", 64, gamma_max=3.0), run("sample", 7, gamma_max=3.0),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(run("group", 64, group_size=8), run("group", 16, group_size=8), rtol=1e-6, atol=1e-6)
    # batch statistics couple samples: the batch size changes the result
    assert not torch.allclose(run("batch", 64), run("batch", 16))
    # group statistics differ from batch statistics
    assert not torch.allclose(run("group", 64, group_size=8), run("batch", 64))


def test_subset_statistics_correct_every_sample():
    data = mixture_preset("ring2d", temperature=0.5)
    sigmas = build_sigmas("edm", 4, "zero")
    full = sample(data, sigmas, make_solver("euler"), SteinCorrector(statistics="batch", subset=64),
                  seeds=range(64), shape=(2,), dtype=torch.float64)
    ref = sample(data, sigmas, make_solver("euler"), SteinCorrector(statistics="batch"),
                 seeds=range(64), shape=(2,), dtype=torch.float64)
    # a subset that is the whole batch gives the same gammas; it costs one extra call per step
    for a, b in zip(full.trace, ref.trace):
        assert math.isclose(a["gamma"], b["gamma"], rel_tol=1e-9)
    assert full.nfe == ref.nfe + 4
    part = sample(data, sigmas, make_solver("euler"), SteinCorrector(statistics="batch", subset=16),
                  seeds=range(64), shape=(2,), dtype=torch.float64)
    gammas = [t["gamma"] for t in part.trace]
    assert gammas != [t["gamma"] for t in ref.trace]
    assert all(t["gamma_min_row"] == t["gamma_max_row"] for t in part.trace)  # one gamma for all rows


@pytest.mark.parametrize("statistics", ["batch", "group"])
def test_subset_moments_all_takes_moments_from_every_row(statistics):
    """subset_moments="all" (ours): E<u, x> and E|u|^2 from every row of the batch (or group), E[div u] from
    the subset rows only; checked against the formula with the mixture's analytic divergence, under a VP
    process (alpha != 1, so E<u, x> counts)."""
    from steindiff.core.solvers.base import transport

    data, process = mixture_preset("aniso32", temperature=0.7), make_process("vp_linear")
    x_star, x = on_marginal(data, 24, 2.0, seed=3)
    grid = torch.tensor([2.0, 1.2], dtype=torch.float64)
    results = {}
    for moments in ("all", "subset"):
        rec = Recorder(SteinCorrector(statistics=statistics, group_size=8, subset=3, divergence="exact",
                                      subset_moments=moments))
        integrate(data, x, grid, make_solver("euler"), rec, final_step="sigma_min", process=process, seeds=range(24))
        results[moments] = rec.records[0]
    x_hat, output, context, x_next, _ = results["all"]
    alpha, sigma = context.alpha, context.sigma
    u = alpha * x_hat - output.data_prediction.detach()  # (24, 32) native residuals, target "data"
    div_u = 32 - data.divergence(x_hat, torch.full((24,), sigma, dtype=torch.float64)) / alpha
    groups = torch.zeros(24, dtype=torch.int64) if statistics == "batch" else torch.arange(24) // 8
    rows = torch.arange(3) if statistics == "batch" else torch.cat([torch.arange(g * 8, g * 8 + 3) for g in range(3)])
    gamma = torch.empty(24, dtype=torch.float64)
    for g in groups.unique():
        every, some = groups == g, rows[groups[rows] == g]
        s_xu, s_uu = (u[every] * alpha * x_hat[every]).sum(1).mean(), u[every].pow(2).sum(1).mean()
        gamma[every] = ((1 - 1 / alpha) * s_xu + (alpha * sigma) ** 2 / alpha * div_u[some].mean()) / s_uu
    g = gamma[:, None]
    expected = transport(x_hat, sigma, context.sigma_next, (1 - g) * alpha * x_hat + g * output.data_prediction)
    torch.testing.assert_close(x_next, expected, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(results["subset"][3], expected, rtol=1e-6, atol=1e-6)  # the default: subset moments
    with pytest.raises(ValueError, match="unknown subset_moments 'every'; accepted: subset, all"):
        SteinCorrector(subset=3, subset_moments="every")


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("target", ["state", "data"])
def test_every_solver_runs_with_the_corrector(name, target):
    for preset in ("ring2d", "aniso32"):
        data = mixture_preset(preset, temperature=0.5)
        corrector = SteinCorrector(target=target, gamma_min=0.0, gamma_max=4.0)
        res = sample(data, build_sigmas("edm", 5, "zero"), make_solver(name), corrector,
                     seeds=range(32), shape=(data.dim,))
        assert bool(torch.isfinite(res.samples).all()), (name, preset)
        assert res.nfe == make_solver(name).nfe(5, "zero")
        assert all(t["corrected"] == 1.0 for t in res.trace)


def test_bad_options_are_one_line_errors():
    for kw, msg in [({"target": "x0"}, "unknown target"), ({"statistics": "rank"}, "unknown statistics"),
                    ({"divergence": "magic"}, "unknown divergence"), ({"num_probes": 0}, "num_probes"),
                    ({"gamma_min": 2.0, "gamma_max": 1.0}, "gamma_min"), ({"sigma_window": (2.0, 1.0)}, "sigma_window"),
                    ({"subset": 4, "statistics": "sample"}, "subset")]:
        with pytest.raises(ValueError, match=msg) as err:
            SteinCorrector(**kw)
        assert "\n" not in str(err.value)


# ---- diagnostics ------------------------------------------------------------------------

def test_contractivity_probe_matches_exact_jacobian_norm_and_costs_no_nfe():
    data = mixture_preset("ring2d", temperature=0.5)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    solver = make_solver("heun")

    def f(z):
        return solver.step(data, z, 2.0, 0.5, solver.init_state(3)).x_next

    est = lipschitz_estimate(f, x, iters=30)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda z: f(z[None])[0], xi) for xi in x])
    torch.testing.assert_close(est, torch.linalg.matrix_norm(jac, ord=2), rtol=1e-6, atol=1e-8)
    sigmas = build_sigmas("edm", 6, "zero")
    res = sample(data, sigmas, make_solver("euler"), seeds=range(64), shape=(2,), observers=[LipschitzObserver()])
    plain = sample(data, sigmas, make_solver("euler"), seeds=range(64), shape=(2,))
    assert res.nfe == 6 and torch.equal(res.samples, plain.samples)  # observing changes nothing
    assert all(t["lipschitz_max"] >= t["lipschitz_mean"] * (1 - 1e-6) > 0 for t in res.trace)
    # the trap: a contraction at the first (large-sigma) step, far from one at small sigma
    assert res.trace[0]["lipschitz_max"] < 1.0
    assert max(t["lipschitz_max"] for t in res.trace) > 1.5


def test_seeded_probes_depend_on_the_seed_alone_and_are_standard():
    from steindiff.core.divergence import seeded_probes

    p = seeded_probes(torch.arange(20000), 3, 5, (4,), "gaussian", dtype=torch.float64)
    assert p.shape == (5, 20000, 4)
    assert abs(float(p.mean())) < 0.01 and abs(float(p.var()) - 1) < 0.02 and abs(float((p**4).mean()) - 3) < 0.1
    corr = torch.corrcoef(p.reshape(5, -1))
    assert float((corr - torch.eye(5, dtype=torch.float64)).abs().max()) < 0.02  # probes uncorrelated
    q = seeded_probes(torch.tensor([19999, 7]), 3, 5, (4,), "gaussian", dtype=torch.float64)
    assert torch.equal(q[:, 0], p[:, 19999]) and torch.equal(q[:, 1], p[:, 7])
    assert not torch.equal(seeded_probes(torch.tensor([7]), 4, 5, (4,))[:, 0], p[:, 7].float())
    r = seeded_probes(torch.arange(1000), 0, 3, (8,), "rademacher")
    assert set(r.unique().tolist()) == {-1.0, 1.0} and abs(float(r.mean())) < 0.03


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_seeded_probes_hashed_in_chunks_are_the_same_bits(kind, monkeypatch):
    """seeded_probes hashes its rows a chunk at a time: any chunk size gives the same bits as one chunk."""
    from steindiff.core import divergence

    seeds = torch.arange(37) * 11 + 5
    whole = divergence.seeded_probes(seeds, 2, 3, (2, 3), kind, salt=4, dtype=torch.float64)
    for chunk in (1, 100, 200):  # 1: one row at a time
        monkeypatch.setattr(divergence, "_PROBE_CHUNK", chunk)
        assert torch.equal(divergence.seeded_probes(seeds, 2, 3, (2, 3), kind, salt=4, dtype=torch.float64), whole)


class _Remembering(type(mixture_preset("ring2d"))):
    """The ring2d mixture; remembers weak references to a tensor that autograd saves inside each call,
    and counts, at every call, how many of the earlier calls' saved tensors are still alive."""

    def __init__(self, base):
        super().__init__(base.weights, base.means, base.stds, temperature=0.5)
        self.refs, self.alive_at_call = [], []

    def denoise(self, x, sigma, labels):
        self.alive_at_call.append(sum(r() is not None for r in self.refs))
        h = x * 1.0  # a new tensor that sin() saves for its backward pass
        self.refs.append(weakref.ref(h))
        return super().denoise(h, sigma, labels) + 0.0 * torch.sin(h)


@pytest.mark.parametrize("options", [{}, {"batched_vjp": True}, {"sigma_window": (10.0, 100.0)}])
def test_no_graph_outlives_its_step(options):
    """The Stein corrector's backward passes release the step's graph, and the loop keeps no reference to
    it (steps outside the sigma window build a graph that no backward pass frees): when step i + 1
    evaluates the denoiser, nothing saved by step i's evaluation is alive."""
    data = _Remembering(mixture_preset("ring2d"))
    sample(data, build_sigmas("edm", 6, "zero"), make_solver("dpmpp_2m"),
           SteinCorrector(num_probes=3, **options), seeds=range(32), shape=(2,))
    assert len(data.alive_at_call) == 6 and data.alive_at_call == [0] * 6


def test_steps_left_uncorrected_build_no_graph():
    """Outside the sigma window the Stein corrector leaves the step alone, so the loop evaluates it without
    autograd; the samples are the same as when every step carried a graph."""
    seen = []

    class Watching(type(mixture_preset("ring2d"))):
        def denoise(self, x, sigma, labels):
            seen.append((float(sigma[0]), x.requires_grad))
            return super().denoise(x, sigma, labels)

    base = mixture_preset("ring2d")
    data = Watching(base.weights, base.means, base.stds, temperature=0.5)
    grid = build_sigmas("edm", 6, "zero")
    res = sample(data, grid, make_solver("dpmpp_2m"), SteinCorrector(sigma_window=(1.0, 100.0)), seeds=range(32),
                 shape=(2,))
    assert [needs for s, needs in seen] == [s >= 1.0 for s, _ in seen] and any(s < 1.0 for s, _ in seen)
    with_graphs = SteinCorrector(sigma_window=(1.0, 100.0))
    with_graphs.differentiates = lambda context: True  # the loop as it was: a graph at every step
    again = sample(data, grid, make_solver("dpmpp_2m"), with_graphs, seeds=range(32), shape=(2,))
    assert torch.equal(res.samples, again.samples)
