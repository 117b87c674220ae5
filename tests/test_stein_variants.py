"""The Stein-family options of issue 16 (history, exact_terms, probes, shrinkage, smoothing; all ours) do what
their docstrings say, and their defaults leave the corrector as it was."""

import math

import pytest
import torch

from steindiff.core import SteinCorrector, build_sigmas, make_solver, mixture_preset, sample
from steindiff.core.correctors import Corrector
from steindiff.core.correctors.stein import ratio_standard_error, shrink_gamma
from steindiff.core.divergence import make_probes, orthogonalize_probes, seeded_probes, vjp_divergence
from steindiff.core.sampling import integrate
from steindiff.core.solvers.base import transport


class Recorder(Corrector):
    """Wraps a corrector and keeps each step's input, output, context, next state and info."""

    def __init__(self, inner):
        self.inner, self.records = inner, []

    @property
    def requires_grad(self):
        return self.inner.requires_grad

    def differentiates(self, context):
        return self.inner.differentiates(context)

    def correct(self, x, output, context):
        x_next, info = self.inner.correct(x, output, context)
        self.records.append((x.detach(), output, context, x_next, info))
        return x_next, info


RING = mixture_preset("ring2d", temperature=0.5)
GRID = build_sigmas("edm", 5, "zero")


def run(solver, corrector, seeds=range(16), batch_size=None, data=RING, dtype=torch.float64):
    return sample(data, GRID, make_solver(solver), corrector, seeds=seeds, shape=(data.dim,), dtype=dtype,
                  batch_size=batch_size)


# ---- defaults -------------------------------------------------------------------------------

# gamma per step of SteinCorrector() before issue 16's options existed (ring2d at temperature 0.5, EDM grid of
# 5 steps to zero, seeds 0-15, float64, per-seed Gaussian probes)
KNOWN = {"dpmpp_2m": [1.1166674186040377, 3.2904287498075075, 0.02553655089982555, 0.0002121402980215006,
                      -0.003916272650281658],
         "heun": [1.1228100034734836, 4.292814385037986, 0.03220339089498168, 0.0002701643722598388,
                  -0.003682436334058201]}


@pytest.mark.parametrize("solver", sorted(KNOWN))
def test_defaults_are_the_corrector_as_it_was(solver):
    default = run(solver, SteinCorrector())
    for got, want in zip([t["gamma"] for t in default.trace], KNOWN[solver], strict=True):
        assert math.isclose(got, want, rel_tol=1e-8, abs_tol=1e-12), (got, want)
    explicit = run(solver, SteinCorrector(history="hold", exact_terms=False, probes="gaussian", shrinkage=False,
                                          smoothing=0.0))
    assert torch.equal(default.samples, explicit.samples) and default.trace == explicit.trace
    # divergence "rademacher" is Hutchinson with Rademacher probes, the same numbers either way
    a = run(solver, SteinCorrector(divergence="rademacher"))
    b = run(solver, SteinCorrector(probes="rademacher"))
    assert torch.equal(a.samples, b.samples) and not torch.equal(a.samples, default.samples)


# ---- history ---------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_flow_equals_hold_without_history(solver):
    hold, flow = run(solver, SteinCorrector()), run(solver, SteinCorrector(history="flow"))
    assert torch.equal(hold.samples, flow.samples) and hold.trace == flow.trace and hold.nfe == flow.nfe


@pytest.mark.parametrize("solver,extra,total,flow", [("dpmpp_2m", 1, 3, "flow"), ("dpmpp_3m", 2, 4, "flow"),
                                                     ("dpmpp_2m", 1, 6, "flow_heun")])
def test_flow_derivative_equals_autograd_reference(solver, extra, total, flow):
    """The flow's divergence of the data prediction equals the full Jacobian trace of
    D_ext(D(x, s), D(x_j(x), s_j), ...), x_j(x) = (s_j/s) x + (1 - s_j/s) D(x, s), by autograd; the step's
    output is unchanged and each history entry the step uses costs one counted call."""
    data = mixture_preset("aniso32", temperature=0.7)
    grid = torch.tensor([5.0, 2.0, 1.0, 0.4, 0.15, 0.05], dtype=torch.float64)
    x0 = torch.randn(6, data.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 5.0
    records, nfes = {}, {}
    for history in ("hold", flow):
        rec = Recorder(SteinCorrector(history=history, divergence="exact", statistics="sample"))
        _, nfes[history], _ = integrate(data, x0, grid, make_solver(solver), rec, final_step="sigma_min")
        records[history] = rec.records
    step = 2  # a step with the full history (3M: two entries) and not the lower-order last ones
    x, out, ctx, x_next, _ = records[flow][step]
    # extra calls: one per history entry a step uses (2M: steps 1-3; 3M: 1 + 2 + 1; the last step is first order)
    assert nfes[flow] == nfes["hold"] + total  # flow_heun: two calls per entry
    s, s_next, history = ctx.sigma, ctx.sigma_next, ctx.step_fn.state.history
    assert len(history) == extra

    def d_ext(z):  # one row, the step's data prediction with the history a function of z
        m0 = data(z[None], torch.full((1,), s, dtype=z.dtype))[0]
        hist = []
        for s_j, _ in history:
            z_j = (s_j / s) * z + (1 - s_j / s) * m0
            if flow == "flow_heun":
                d_j = data(z_j[None], torch.full((1,), s_j, dtype=z.dtype))[0]
                z_j = (s_j / s) * z + (1 - s_j / s) * 0.5 * (m0 + d_j)
            hist.append((s_j, data(z_j[None], torch.full((1,), s_j, dtype=z.dtype))))
        state = ctx.step_fn.state.__class__(index=ctx.step_fn.state.index, num_steps=ctx.step_fn.state.num_steps,
                                            history=tuple(hist))
        return make_solver(solver).step(data, z[None], s, s_next, state).data_prediction[0]

    div = torch.stack([torch.autograd.functional.jacobian(d_ext, row).diagonal().sum() for row in x])
    u = x - out.data_prediction.detach()
    gamma = s**2 * (data.dim - div) / u.pow(2).sum(1)
    g = gamma[:, None]
    torch.testing.assert_close(x_next, transport(x, s, s_next, (1 - g) * x + g * out.data_prediction.detach()),
                               rtol=1e-9, atol=1e-9)
    # the step's output itself is the held-history one, bit for bit, and the flow changes gamma
    with torch.no_grad():
        held = ctx.step_fn(x)
    assert torch.equal(held.data_prediction, out.data_prediction.detach())
    assert not torch.allclose(records["hold"][step][3], x_next)


def test_flow_refuses_solvers_with_derived_state_and_non_autograd_divergences():
    for name, kw in (("ipndm", {}), ("unipc", {})):
        with pytest.raises(ValueError, match="history 'flow' does not support solver") as err:
            sample(RING, GRID, make_solver(name, **kw), SteinCorrector(history="flow"), seeds=range(8), shape=(2,))
        assert "\n" not in str(err.value)
    res = sample(RING, GRID, make_solver("unipc", use_corrector=False), SteinCorrector(history="flow"),
                 seeds=range(8), shape=(2,))
    assert bool(torch.isfinite(res.samples).all())
    with pytest.raises(ValueError, match="autograd divergence"):
        SteinCorrector(history="flow", divergence="jvp")


# ---- exact_terms -----------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_exact_terms_same_expectation_lower_variance(solver):
    """Target "state": div T = r d + (1 - r) div P with only div P probed. Many probes on fixed states: both
    estimates agree with the exact divergence within their standard errors; exact_terms' error is smaller."""
    data = mixture_preset("aniso32", temperature=0.7)
    x0 = data.noisy_sample(32, 2.0, generator=torch.Generator().manual_seed(4))[1]
    rec = Recorder(SteinCorrector(target="state", divergence="exact", statistics="sample"))
    integrate(data, x0, torch.tensor([2.0, 0.5], dtype=torch.float64), make_solver(solver), rec,
              final_step="sigma_min")
    x, _, ctx, _, _ = rec.records[0]
    results = {}
    for exact_terms in (False, True, "exact"):
        corrector = (SteinCorrector(target="state", divergence="exact") if exact_terms == "exact" else
                     SteinCorrector(target="state", num_probes=400, exact_terms=exact_terms))
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            _, _, div, err = corrector._divergence_of_target(xg, ctx.step_fn(xg), ctx, None)
        results[exact_terms] = (div, err)
    exact = results["exact"][0]
    for key in (False, True):
        div, err = results[key]
        assert float(((div - exact) / err).abs().max()) < 4.5, key
    assert bool((results[True][1] < results[False][1]).all())
    assert float((results[True][1] / results[False][1]).mean()) < 0.9
    # target "data": nothing is known exactly, the option changes nothing
    a = run("heun", SteinCorrector(exact_terms=True))
    b = run("heun", SteinCorrector())
    assert torch.equal(a.samples, b.samples)


# ---- probes ----------------------------------------------------------------------------------

def test_orthogonal_probes_are_orthogonal_unbiased_and_per_seed():
    p = seeded_probes(torch.arange(4000), 3, 4, (2, 3), "orthogonal", dtype=torch.float64)
    assert p.shape == (4, 4000, 2, 3)
    flat = p.flatten(2).transpose(0, 1)  # (B, M, d)
    gram = flat @ flat.transpose(1, 2)
    torch.testing.assert_close(gram, 6.0 * torch.eye(4, dtype=torch.float64).expand(4000, 4, 4), rtol=0, atol=1e-10)
    second = (flat[:, :, :, None] * flat[:, :, None, :]).mean((0, 1))  # E[v v^T] = I
    assert float((second - torch.eye(6, dtype=torch.float64)).abs().max()) < 0.05
    q = seeded_probes(torch.tensor([3999, 7]), 3, 4, (2, 3), "orthogonal", dtype=torch.float64)
    torch.testing.assert_close(q[:, 0], p[:, 3999], rtol=0, atol=1e-12)
    torch.testing.assert_close(q[:, 1], p[:, 7], rtol=0, atol=1e-12)
    assert not torch.allclose(seeded_probes(torch.tensor([7]), 4, 4, (2, 3), "orthogonal", dtype=torch.float64)[:, 0],
                              p[:, 7])
    # M = d: the estimate is the exact trace
    a = torch.randn(5, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.einsum("bij,bj->bi", a, x)
    v = make_probes(6, x, "orthogonal", torch.Generator().manual_seed(1))
    div, _ = vjp_divergence(y, x, v)
    torch.testing.assert_close(div, torch.diagonal(a, dim1=1, dim2=2).sum(1), rtol=1e-10, atol=1e-10)
    # M > d: consecutive blocks of d probes, each an orthogonal frame of its own
    w = orthogonalize_probes(torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    for block in (w[0:2], w[2:4]):
        gram = torch.einsum("mbi,nbi->bmn", block, block)
        torch.testing.assert_close(gram, 2.0 * torch.eye(2, dtype=torch.float64).expand(3, 2, 2), rtol=0, atol=1e-12)
    torch.testing.assert_close(w[4].pow(2).sum(-1), torch.full((3,), 2.0, dtype=torch.float64))
    res = run("dpmpp_2m", SteinCorrector(probes="orthogonal", num_probes=2), seeds=range(8))
    again = run("dpmpp_2m", SteinCorrector(probes="orthogonal", num_probes=2), seeds=range(8))
    assert torch.equal(res.samples, again.samples)
    assert not torch.equal(res.samples, run("dpmpp_2m", SteinCorrector(num_probes=2), seeds=range(8)).samples)


# ---- shrinkage -------------------------------------------------------------------------------

def test_shrinkage_formula_and_standard_error():
    g = torch.tensor([1.5, 1.5, 0.2, 1.0, float("nan")], dtype=torch.float64)
    se = torch.tensor([0.0, 10.0, 0.4, 0.3, 0.1], dtype=torch.float64)
    out = shrink_gamma(g, se)
    assert out[0] == 1.5 and out[1] == 1.0 and out[3] == 1.0 and math.isnan(out[4])
    assert math.isclose(float(out[2]), 1 + (-0.8) * (1 - 0.16 / 0.64), rel_tol=1e-12)
    # the delta-method standard error matches the spread of the ratio over many batches
    gen = torch.Generator().manual_seed(0)
    num = 2.0 + torch.randn(500, 200, generator=gen, dtype=torch.float64)
    den = 1.0 + 0.3 * torch.randn(500, 200, generator=gen, dtype=torch.float64) ** 2
    ratios = num.mean(1) / den.mean(1)
    ses = torch.stack([ratio_standard_error(n, d, torch.zeros(200, dtype=torch.int64), r[None])[0]
                       for n, d, r in zip(num, den, ratios)])
    assert abs(float(ses.mean()) / float(ratios.std()) - 1) < 0.1
    # groups: one row gives an infinite standard error
    se_g = ratio_standard_error(num[0, :3], den[0, :3], torch.tensor([0, 0, 1]),
                                torch.tensor([float(num[0, :2].mean() / den[0, :2].mean()),
                                              float(num[0, 2] / den[0, 2])], dtype=torch.float64))
    assert math.isfinite(float(se_g[0])) and math.isinf(float(se_g[1]))


def test_shrinkage_in_the_corrector_records_the_standard_error():
    res = run("dpmpp_2m", SteinCorrector(shrinkage=True), seeds=range(32))
    plain = run("dpmpp_2m", SteinCorrector(), seeds=range(32))
    assert res.trace[0]["gamma_unshrunk"] == plain.trace[0]["gamma"]  # the same first step, before shrinkage
    for t in res.trace:
        raw = t["gamma_unshrunk"]
        assert t["gamma_se"] > 0 and min(1.0, raw) - 1e-12 <= t["gamma"] <= max(1.0, raw) + 1e-12
    assert any(t["gamma"] != t["gamma_unshrunk"] for t in res.trace)
    group = run("dpmpp_2m", SteinCorrector(shrinkage=True, statistics="group", group_size=1), seeds=range(8))
    assert all(t["gamma"] == 1.0 for t in group.trace)  # groups of one row: infinite standard error


# ---- smoothing -------------------------------------------------------------------------------

def test_smoothing():
    plain = run("heun", SteinCorrector(), seeds=range(32))
    zero = run("heun", SteinCorrector(smoothing=0.0), seeds=range(32))
    assert torch.equal(plain.samples, zero.samples) and plain.trace == zero.trace
    s = 0.5
    smooth = run("heun", SteinCorrector(smoothing=s), seeds=range(32), batch_size=16)  # two batches, one instance
    for batch in (0, 1):
        steps = [t for t in smooth.trace if t["batch"] == batch]
        assert steps[0]["gamma"] == steps[0]["gamma_unsmoothed"]  # restarted at step 0 of each batch
        for prev, cur in zip(steps, steps[1:]):
            assert math.isclose(cur["gamma"], s * prev["gamma"] + (1 - s) * cur["gamma_unsmoothed"], rel_tol=1e-12)
    # per-sample statistics: smoothing is per row and per batch, so the batch size does not matter
    a = run("heun", SteinCorrector(smoothing=s, statistics="sample", gamma_max=3.0), seeds=range(32), batch_size=32)
    b = run("heun", SteinCorrector(smoothing=s, statistics="sample", gamma_max=3.0), seeds=range(32), batch_size=8)
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-9, atol=1e-9)


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,msg", [
    ({"history": "freeze"}, "unknown history"), ({"history": "flow", "divergence": "finite_difference"}, "autograd"),
    ({"exact_terms": "yes"}, "exact_terms"), ({"probes": "sobol"}, "unknown probes"),
    ({"divergence": "rademacher", "probes": "orthogonal"}, "Rademacher probes"),
    ({"shrinkage": 1}, "shrinkage"), ({"shrinkage": True, "statistics": "sample"}, "shrinkage needs"),
    ({"smoothing": 1.0}, "smoothing"), ({"smoothing": -0.1}, "smoothing"), ({"smoothing": "0.5"}, "smoothing"),
])
def test_bad_values_are_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg) as err:
        SteinCorrector(**kw)
    assert "\n" not in str(err.value)
