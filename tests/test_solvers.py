"""The suite every solver passes: shape, dtype, determinism, NFE, the step interface.

Its list is the registry (``SOLVERS`` and ``VARIANTS``, see tests/solver_specs.py): registering a
solver puts it through every test here.
"""

import math

import pytest
import torch

from steindiff.core.correctors import Corrector
from steindiff.core.sampling import integrate, sample
from steindiff.core.schedules import build_sigmas
from steindiff.core.solvers import SOLVERS, VARIANTS, Solver, StepOutput, make_solver, transport

from .solver_specs import DEFAULT_SPECS, SOLVER_SPECS, behaviour_specs, convergence_specs, spec_id

IDS = [spec_id(n, o) for n, o in DEFAULT_SPECS]


class Spy(Corrector):
    """Records every step's input, output and context; changes nothing."""

    def __init__(self):
        self.records = []

    def correct(self, x, output, context):
        self.records.append((x.clone(), output, context))
        return output.x_next, {"spy": 1.0}


@pytest.fixture(params=DEFAULT_SPECS, ids=IDS)
def solver(request):
    name, options = request.param
    return make_solver(name, **options)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_and_finite(solver, gaussian, dtype):
    sigmas = build_sigmas("edm", 6, "zero")
    res = sample(gaussian, sigmas, solver, seeds=range(5), shape=(4,), dtype=dtype)
    assert res.samples.shape == (5, 4) and res.samples.dtype == dtype
    assert res.samples.device.type == "cpu"
    assert bool(torch.isfinite(res.samples).all())


def test_deterministic(solver, gaussian):
    sigmas = build_sigmas("logsnr", 5, "sigma_min")
    a = sample(gaussian, sigmas, solver, seeds=range(4), shape=(4,), final_step="sigma_min")
    b = sample(gaussian, sigmas, solver, seeds=range(4), shape=(4,), final_step="sigma_min")
    assert torch.equal(a.samples, b.samples)


@pytest.mark.parametrize("final_step", ["zero", "sigma_min", "denoise"])
@pytest.mark.parametrize("num_steps", [1, 2, 3, 4, 5, 6, 10])
def test_measured_nfe_matches_docstring(solver, gaussian, final_step, num_steps):
    sigmas = build_sigmas("edm", num_steps, final_step)
    res = sample(gaussian, sigmas, solver, seeds=[0, 1], shape=(4,), final_step=final_step)
    assert res.nfe == solver.nfe(num_steps, final_step)
    assert res.trace[-1]["nfe"] == solver.nfe(num_steps, final_step) - (final_step == "denoise")


def test_step_is_a_transport_with_its_data_prediction(solver, gaussian):
    """x_next = r x + (1 - r) D at every step: the identity correctors rely on."""
    spy = Spy()
    sigmas = build_sigmas("edm", 8, "zero")
    x0 = torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 80
    integrate(gaussian, x0, sigmas, solver, spy, final_step="zero")
    assert len(spy.records) == 8
    for x, out, ctx in spy.records:
        expected = transport(x, ctx.sigma, ctx.sigma_next, out.data_prediction)
        torch.testing.assert_close(out.x_next, expected, rtol=1e-10, atol=1e-10)


def test_step_is_pure(solver, gaussian):
    """The state is explicit: re-running a step with the same state gives the same output and
    leaves the state untouched (what differentiating a step with history held constant needs)."""
    spy = Spy()
    sigmas = build_sigmas("edm", 6, "sigma_min")
    x0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 80
    integrate(gaussian, x0, sigmas, solver, spy, final_step="sigma_min")
    x, out, ctx = spy.records[3]
    again = ctx.step_fn(x)
    assert torch.equal(again.x_next, out.x_next)
    assert torch.equal(again.data_prediction, out.data_prediction)
    other = ctx.step_fn(x + 1.0)
    assert not torch.equal(other.x_next, out.x_next)
    assert torch.equal(ctx.step_fn(x).x_next, out.x_next)


def _snapshot(value):
    """A deep copy of a state's contents (tensors cloned) for comparison."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return tuple(_snapshot(v) for v in value)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, tuple):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_same(u, v)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    else:
        assert a == b


def test_step_leaves_its_input_state_untouched(solver, gaussian):
    """A step never mutates the state it is given (history, aux tensors included)."""
    sigmas = build_sigmas("edm", 6, "sigma_min").tolist()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 80
    state = solver.init_state(6)
    for i in range(3):
        out = solver.step(gaussian, x, sigmas[i], sigmas[i + 1], state)
        x, state = out.x_next, out.state
    before = _snapshot((state.index, state.num_steps, state.history, state.aux))
    first = solver.step(gaussian, x, sigmas[3], sigmas[4], state)
    solver.step(gaussian, x + 1.0, sigmas[3], sigmas[4], state)
    _assert_same(_snapshot((state.index, state.num_steps, state.history, state.aux)), before)
    assert first.state is not state and first.state.index == state.index + 1


def test_batch_size_does_not_change_samples(solver, gaussian):
    sigmas = build_sigmas("edm", 5, "zero")
    seeds = list(range(64))
    ref = sample(gaussian, sigmas, solver, seeds=seeds, shape=(4,), batch_size=64).samples
    for bs in (1, 7):
        got = sample(gaussian, sigmas, solver, seeds=seeds, shape=(4,), batch_size=bs).samples
        assert torch.equal(got, ref), f"batch size {bs} changed the samples"


def test_trace_records_every_step(solver, gaussian):
    sigmas = build_sigmas("edm", 4, "zero")
    res = sample(gaussian, sigmas, solver, Spy(), seeds=range(10), shape=(4,), batch_size=4)
    assert len(res.trace) == 3 * 4  # three batches of four steps
    first = [t for t in res.trace if t["batch"] == 0]
    assert [t["sigma"] for t in first] == [float(s) for s in sigmas[:-1]]
    assert all(t["spy"] == 1.0 for t in res.trace)
    nfes = [t["nfe"] for t in first]
    assert nfes == sorted(nfes) and nfes[-1] == res.nfe


# ---- the suite's list is the registry --------------------------------------------------------

def test_every_registered_solver_is_in_the_suite():
    assert {name for name, _ in DEFAULT_SPECS} == set(SOLVERS)
    assert {name for _, name, _, _ in SOLVER_SPECS} == set(SOLVERS)
    assert set(VARIANTS) <= set(SOLVERS), "VARIANTS names a solver that is not registered"
    for name in SOLVERS:
        for options in ({}, *VARIANTS.get(name, ())):
            assert (name, options) in DEFAULT_SPECS
    assert len(set(IDS)) == len(IDS)


class _Undeclared(Solver):
    """A DDIM step that declares nothing beyond ``step`` and ``nfe`` (no order, no variants)."""

    def step(self, denoiser, x, sigma, sigma_next, state, labels=None):
        d = denoiser(x, torch.full((x.shape[0],), sigma, dtype=x.dtype), labels)
        return StepOutput(x_next=transport(x, sigma, sigma_next, d), data_prediction=d,
                          state=state.push(sigma, d, keep=1), nfe=1)

    def nfe(self, num_steps, final_step):
        return num_steps + (final_step == "denoise")


def test_a_solver_with_no_declared_facts_gets_the_generic_suite(gaussian):
    registry = {**SOLVERS, "undeclared": _Undeclared}
    assert ("undeclared", {}) in behaviour_specs(registry)
    assert ("undeclared", "undeclared", {}, 1) in convergence_specs(registry)
    solver = _Undeclared()  # the module's generic checks, run on it directly
    test_step_is_a_transport_with_its_data_prediction(solver, gaussian)
    test_step_leaves_its_input_state_untouched(solver, gaussian)
    for final_step in ("zero", "sigma_min", "denoise"):
        for num_steps in range(1, 7):
            test_measured_nfe_matches_docstring(solver, gaussian, final_step, num_steps)


# ---- equivalences ------------------------------------------------------------------------

def _run(name, gaussian, final_step="sigma_min", schedule="edm", steps=7, **options):
    sigmas = build_sigmas(schedule, steps, final_step)
    x0 = torch.randn(8, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 80
    x, _, _ = integrate(gaussian, x0, sigmas, make_solver(name, **options), final_step=final_step)
    return x


def test_first_order_solvers_all_equal_euler(gaussian):
    from steindiff.core.solvers import DPMSolverPP

    euler = _integrate_solver(make_solver("euler"), gaussian)
    assert torch.equal(_integrate_solver(make_solver("ddim"), gaussian), euler)
    for solver in [DPMSolverPP(order=1), make_solver("unipc", order=1, use_corrector=False),
                   make_solver("ipndm", order=1)]:
        torch.testing.assert_close(_integrate_solver(solver, gaussian), euler, rtol=1e-12, atol=1e-12)


def _integrate_solver(solver, gaussian):
    sigmas = build_sigmas("edm", 7, "sigma_min")
    x0 = torch.randn(8, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 80
    return integrate(gaussian, x0, sigmas, solver, final_step="sigma_min")[0]


def test_euler_is_the_edm_euler_step(gaussian):
    sigmas = build_sigmas("edm", 7, "sigma_min")
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 80
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        x = x + (s_next - s) * (x - gaussian(x, s)) / s
    torch.testing.assert_close(_run("euler", gaussian), x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lower_order_final", [True, False])
def test_unip2_bh2_equals_dpmpp_2m(gaussian, lower_order_final):
    a = _run("unipc", gaussian, order=2, use_corrector=False, lower_order_final=lower_order_final)
    b = _run("dpmpp_2m", gaussian, lower_order_final=lower_order_final)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_unip3_bh2_equals_taylor_3m_not_reference_3m(gaussian):
    a = _run("unipc", gaussian, order=3, use_corrector=False, schedule="logsnr")
    b = _run("dpmpp_3m", gaussian, third_order="taylor", schedule="logsnr")
    ref = _run("dpmpp_3m", gaussian, schedule="logsnr")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert (a - ref).abs().max() > 1e-6


def test_unipc_corrector_changes_result_but_not_nfe(gaussian):
    on = _run("unipc", gaussian)
    off = _run("unipc", gaussian, use_corrector=False)
    assert (on - off).abs().max() > 1e-6


def test_heun_last_step_to_zero_is_euler(gaussian):
    sigmas = torch.tensor([2.0, 0.0], dtype=torch.float64)
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    h = integrate(gaussian, x, sigmas, make_solver("heun"))[0]
    torch.testing.assert_close(h, gaussian(x, 2.0), rtol=0, atol=0)


def test_lower_order_final_changes_only_the_last_steps(gaussian):
    sigmas = build_sigmas("logsnr", 6, "sigma_min")
    x0 = torch.randn(4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 80
    spies = []
    for lof in (True, False):
        spy = Spy()
        integrate(gaussian, x0, sigmas, make_solver("dpmpp_3m", lower_order_final=lof), spy,
                  final_step="sigma_min")
        spies.append(spy)
    for i, (a, b) in enumerate(zip(*[s.records for s in spies])):
        same = torch.equal(a[1].x_next, b[1].x_next)
        assert same == (i < 4), f"step {i}"


def test_unknown_solver_and_bad_options():
    with pytest.raises(ValueError, match="unknown solver 'rk4'"):
        make_solver("rk4")
    with pytest.raises(ValueError, match="order must be"):
        make_solver("unipc", order=5)
    with pytest.raises(ValueError, match="bad options"):
        make_solver("euler", order=2)
    with pytest.raises(ValueError, match="variant"):
        make_solver("unipc", variant="bh3")
    assert set(SOLVERS) >= {"euler", "ddim", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm"}
    assert math.isfinite(make_solver("heun").nfe(3, "zero"))
