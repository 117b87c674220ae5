"""The results study's controls: the oracle corrector (posterior and trajectory), the constant corrector,
epsilon scaling and the estimator observer, in the core and in the app."""

from __future__ import annotations

import pytest
import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.core import (
    ConstantCorrector,
    Corrector,
    EpsilonScaled,
    EstimatorObserver,
    OracleCorrector,
    Schedule,
    SteinCorrector,
    epsilon_scaled,
    integrate,
    make_process,
    make_solver,
    mixture_preset,
    num_steps_for_nfe,
    sample,
)
from steindiff.core.denoiser import Denoiser, DenoiserSpec
from steindiff.core.diagnostics import energy_distance, oracle_gamma
from steindiff.errors import ConfigError
from steindiff.metrics.trajectory import reference_solution
from tests.solver_specs import DEFAULT_SPECS, spec_id

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _grid(solver, nfe=6):
    return Schedule("edm", final_step="zero").grid(num_steps_for_nfe(solver, nfe, "zero"))


def _one_step(data, x, sigma, sigma_next, corrector, solver="euler", process=None):
    """The trace entry of one corrected step from x at sigma."""
    grid = torch.tensor([sigma, sigma_next], dtype=F64)
    _, _, trace = integrate(data, x, grid, make_solver(solver), corrector, final_step="sigma_min", process=process,
                            seeds=range(len(x)))
    return trace[0]


# ---- the posterior oracle -------------------------------------------------------------------------------

@pytest.mark.parametrize("process", ["ve", "vp_linear"])
@pytest.mark.parametrize("target", ["data", "state"])
@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_posterior_oracle_is_the_rao_blackwell_gamma_and_matches_x_star(process, target, solver):
    """On exactly on-marginal states: the oracle equals E<u, x - D_true>/E|u|^2 computed by hand, and the
    gamma* with the true x_star within Monte Carlo error."""
    data, proc = mixture_preset("aniso32"), make_process(process)
    sigma, sigma_next = 2.0, 0.6
    x_star, x = data.noisy_sample(4000, sigma, generator=torch.Generator().manual_seed(1))
    got = _one_step(data, x, sigma, sigma_next, OracleCorrector(data=data, target=target), solver, proc)["gamma"]
    alpha, alpha_next = (float(a) for a in proc.alpha_of_sigma(torch.tensor([sigma, sigma_next], dtype=F64)))
    out = make_solver(solver).step(data, x, sigma, sigma_next, make_solver(solver).init_state(1))
    u = alpha * x - (alpha_next * out.x_next if target == "state" else out.data_prediction)
    d_true = data(x, sigma)
    by_hand = float((u * (alpha * x - d_true)).sum() / u.pow(2).sum())
    assert got == pytest.approx(by_hand, rel=1e-12)
    num = (u * (alpha * x - x_star)).sum(1)
    standard_error = float(num.std() / len(num) ** 0.5 / u.pow(2).sum(1).mean())
    assert abs(got - oracle_gamma(u, alpha * x, x_star)) < 4 * standard_error
    if solver == "euler" and process == "ve":  # the closed forms (findings.md)
        assert got == pytest.approx(1.0 if target == "data" else 1 / (1 - sigma_next / sigma), abs=1e-12)


@pytest.mark.parametrize("statistics", ["batch", "sample", "group"])
def test_euler_exact_denoiser_data_oracle_is_one_on_and_off_the_marginal(statistics):
    data = mixture_preset("ring2d")
    oracle = OracleCorrector(data=data, statistics=statistics, group_size=4)
    off = 5 * torch.rand(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64) - 2.5  # far off p_sigma
    info = _one_step(data, off, 0.7, 0.2, oracle)
    assert abs(info["gamma_min_row"] - 1) < 1e-10 and abs(info["gamma_max_row"] - 1) < 1e-10
    # along a run pushed off the marginal by a constant gamma, and on the run's own path
    for corrector in (ConstantCorrector(1.4), None):
        result = sample(data, _grid(make_solver("euler")), make_solver("euler"), corrector, seeds=range(64),
                        shape=(2,), dtype=F64, observers=[EstimatorObserver(data=data, statistics=statistics,
                                                                            group_size=4)])
        assert all(abs(t["oracle_gamma"] - 1) < 1e-10 for t in result.trace)


def test_posterior_oracle_ignores_the_denoisers_knobs_and_needs_a_law():
    sharp = mixture_preset("ring2d", temperature=0.5)
    assert OracleCorrector(data=sharp).data.is_exact
    with pytest.raises(ValueError, match="trajectory"):
        OracleCorrector()
    with pytest.raises(ValueError, match="reference"):
        OracleCorrector(reference="truth", data="ring2d")


# ---- the trajectory oracle ------------------------------------------------------------------------------

class _Constant(Denoiser):
    """D(x, sigma) = m: the PF-ODE is x(sigma) = m + (x0 - m) sigma / sigma0, which a DDIM step follows exactly."""

    def __init__(self):
        super().__init__(DenoiserSpec(shape=(3,)))
        self.m = torch.tensor([0.5, -1.0, 2.0], dtype=F64)

    def denoise(self, x, sigma, labels):
        return self.m.to(x.dtype).expand_as(x).clone()


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_trajectory_oracle_is_one_where_the_solver_step_is_exact(solver):
    s = make_solver(solver)
    result = sample(_Constant(), _grid(s), s, OracleCorrector(reference="trajectory", substeps=4, statistics="sample"),
                    seeds=range(16), shape=(3,), dtype=F64)
    for t in result.trace:
        assert abs(t["gamma_min_row"] - 1) < 1e-9 and abs(t["gamma_max_row"] - 1) < 1e-9


def test_trajectory_oracle_follows_the_reference_and_counts_no_nfe():
    data, s = mixture_preset("ring2d"), make_solver("dpmpp_2m")
    grid, seeds = _grid(s), range(200)
    x_ref = reference_solution(data, seeds, (2,), num_steps=64)
    runs = {name: sample(data, grid, s, corrector, seeds=seeds, shape=(2,), dtype=F64)
            for name, corrector in (("none", None), ("oracle", OracleCorrector(reference="trajectory", substeps=8)))}
    assert runs["oracle"].nfe == runs["none"].nfe == 6
    mse = {name: float((r.samples - x_ref).pow(2).sum(1).mean()) for name, r in runs.items()}
    assert mse["oracle"] < 0.2 * mse["none"], mse


def test_trajectory_oracle_must_see_the_first_step():
    data = mixture_preset("ring2d")
    x = torch.randn(8, 2, dtype=F64)
    with pytest.raises(ValueError, match="first"):
        integrate(data, x, torch.tensor([1.0, 0.5], dtype=F64), make_solver("euler"),
                  _Skip(OracleCorrector(reference="trajectory")), final_step="sigma_min")


class _Skip(Corrector):  # a plain Corrector that hands the oracle step 1 as if it were first
    def __init__(self, inner):
        self.inner = inner

    def correct(self, x, output, context):
        context.index = 1
        return self.inner.correct(x, output, context)


# ---- the constant corrector -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,options", DEFAULT_SPECS, ids=[spec_id(n, o) for n, o in DEFAULT_SPECS])
def test_constant_one_is_no_correction_bit_for_bit(name, options):
    data, s = mixture_preset("ring2d"), make_solver(name, **options)
    grid = _grid(s, 8)
    base = sample(data, grid, s, None, seeds=range(32), shape=(2,))
    for corrector in (ConstantCorrector(1.0), ConstantCorrector([1.0] * grid.num_steps, target="state")):
        got = sample(data, grid, s, corrector, seeds=range(32), shape=(2,))
        assert torch.equal(got.samples, base.samples) and got.nfe == base.nfe


def test_constant_gamma_is_the_formula_and_a_list_is_per_step():
    data = mixture_preset("aniso32")
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    grid = torch.tensor([3.0, 1.0, 0.0], dtype=F64)
    got, _, trace = integrate(data, x, grid, make_solver("euler"), ConstantCorrector([0.8, 1.0]))
    d = data(x, 3.0)
    x1 = (1 / 3) * x + (2 / 3) * (0.2 * x + 0.8 * d)
    assert torch.allclose(got, data(x1, 1.0), rtol=0, atol=1e-12)
    assert [t["gamma"] for t in trace] == [0.8, 1.0] and [t["corrected"] for t in trace] == [1.0, 0.0]


def test_constant_list_of_the_wrong_length_is_a_one_line_error():
    data = mixture_preset("ring2d")
    with pytest.raises(ValueError) as err:
        sample(data, _grid(make_solver("euler")), make_solver("euler"), ConstantCorrector([1.0, 0.9]),
               seeds=range(4), shape=(2,))
    assert "2 values for 6 steps" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="finite"):
        ConstantCorrector(float("nan"))


# ---- epsilon scaling ------------------------------------------------------------------------------------

def test_epsilon_scaling_off_is_the_denoiser_itself_and_on_is_the_formula():
    data = mixture_preset("ring2d")
    assert epsilon_scaled(data, None) is data and epsilon_scaled(data, 1) is data
    scaled = epsilon_scaled(data, 1.25)
    x, sigma = torch.randn(10, 2, dtype=F64), torch.full((10,), 0.7, dtype=F64)
    assert torch.equal(scaled(x, sigma), x - (x - data(x, sigma)) / 1.25)
    assert scaled.spec == data.spec
    with pytest.raises(ValueError, match="lambda"):
        EpsilonScaled(data, 0.0)


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_epsilon_scaling_keeps_nfe_and_is_a_constant_data_gamma_for_euler(solver):
    data, s = mixture_preset("aniso32"), make_solver(solver)
    grid = _grid(s)
    base = sample(data, grid, s, None, seeds=range(32), shape=(32,), dtype=F64)
    scaled = sample(EpsilonScaled(data, 1.1), grid, s, None, seeds=range(32), shape=(32,), dtype=F64)
    assert scaled.nfe == base.nfe and not torch.equal(scaled.samples, base.samples)
    if solver == "euler":  # one evaluation per step: the same as a constant gamma = 1/lambda on the data prediction
        constant = sample(data, grid, s, ConstantCorrector(1 / 1.1), seeds=range(32), shape=(32,), dtype=F64)
        assert torch.allclose(scaled.samples, constant.samples, rtol=0, atol=1e-10)


def test_app_epsilon_scaling_one_is_bit_identical_and_checked():
    runs = {v: build_run(compose_sample_config(["num_samples=64", "nfe=6", f"epsilon_scaling={v}"]), metrics=False)
            for v in ("null", "1", "1.01")}
    results = {v: run.sample() for v, run in runs.items()}
    assert torch.equal(results["1"].samples, results["null"].samples)
    assert not torch.equal(results["1.01"].samples, results["null"].samples)
    assert results["1.01"].nfe == results["null"].nfe == 6
    with pytest.raises(ConfigError, match="epsilon_scaling=-1"):
        build_run(compose_sample_config(["epsilon_scaling=-1"]), metrics=False)


# ---- the estimator observer -----------------------------------------------------------------------------

@pytest.mark.parametrize("corrector", [None, SteinCorrector(gamma_min=0.5, gamma_max=1.5)])
def test_observer_changes_nothing_and_records_both_numbers(corrector):
    data, s = mixture_preset("aniso32"), make_solver("dpmpp_2m")
    grid = _grid(s)
    kw = dict(seeds=range(500), shape=(32,), dtype=F64)
    base = sample(data, grid, s, corrector, **kw)
    seen = sample(data, grid, s, corrector, observers=[EstimatorObserver(data=data)], **kw)
    assert torch.equal(seen.samples, base.samples) and seen.nfe == base.nfe == 6
    assert all("stein_estimate" in t and "oracle_gamma" in t for t in seen.trace)
    for t in seen.trace[:2]:  # sigma 80 and 24: the states are close to the forward marginal, the two agree
        assert abs(t["stein_estimate"] - t["oracle_gamma"]) < 0.05, t
    if corrector is not None:  # the same probes and settings: the observer's estimate is the corrector's (unclipped)
        unclipped = sample(data, grid, s, SteinCorrector(), observers=[EstimatorObserver(data=data)],
                           **{**kw, "seeds": range(64)})
        assert all(t["stein_estimate"] == pytest.approx(t["gamma"], rel=1e-9) for t in unclipped.trace)


def test_observer_oracle_is_the_oracle_correctors_gamma():
    data, s = mixture_preset("ring2d"), make_solver("heun")
    for reference in ("posterior", "trajectory"):
        run = sample(data, _grid(s), s, OracleCorrector(reference=reference, data=data), seeds=range(100),
                     shape=(2,), dtype=F64, observers=[EstimatorObserver(reference=reference, data=data)])
        assert all(t["oracle_gamma"] == pytest.approx(t["gamma"], rel=1e-9) for t in run.trace)


def test_gamma_plot_draws_the_estimate_beside_the_oracle():
    from steindiff.plots import trace_plot

    trace = [{"batch": 0, "step": i, "sigma": s, "stein_estimate": e, "oracle_gamma": o}
             for i, (s, e, o) in enumerate([(80.0, 1.07, 1.0), (5.0, 0.2, 1.3), (0.1, -0.5, 0.9)])]
    legend = [t.get_text() for t in trace_plot(None, trace, "gamma", "run").axes[0].get_legend().get_texts()]
    assert "Stein estimate (observer)" in legend and "oracle gamma (observer)" in legend


# ---- the app --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("denoiser,law", [("ring2d", "ring2d"), ("ring2d_mlp", "ring2d"), ("aniso32_mlp", "aniso32")])
def test_app_builds_the_posterior_oracle_with_the_denoisers_data_law(denoiser, law):
    run = build_run(compose_sample_config(["corrector=oracle", f"denoiser={denoiser}", "nfe=4"]), metrics=False)
    expected = mixture_preset(law)
    assert isinstance(run.corrector, OracleCorrector) and torch.equal(run.corrector.data.means, expected.means)


def test_app_refuses_the_posterior_oracle_without_a_data_law_in_one_line():
    for overrides in (["corrector=oracle"], ["diagnostics.estimator=true"]):
        with pytest.raises(ConfigError) as err:
            build_run(compose_sample_config([*overrides, "denoiser=digits_unet"]), metrics=False)
        assert "trajectory" in str(err.value) and "\n" not in str(err.value)
    run = build_run(compose_sample_config(["corrector=oracle_trajectory", "denoiser=digits_unet"]), metrics=False)
    assert run.corrector.reference == "trajectory"


def test_app_constant_list_of_the_wrong_length_is_a_config_error():
    with pytest.raises(ConfigError, match="2 values for 6 steps"):
        build_run(compose_sample_config(["corrector=constant", "corrector.gamma=[1,0.9]", "nfe=6"]), metrics=False)


def test_app_oracle_is_no_worse_than_none_on_ring2d_dpmpp_2m_nfe6():
    data = mixture_preset("ring2d")
    reference = data.sample(2000, generator=torch.Generator().manual_seed(7))
    distance = {}
    for corrector in ("none", "oracle"):
        cfg = compose_sample_config([f"corrector={corrector}", "num_samples=200", "nfe=6", "solver=dpmpp_2m",
                                     "diagnostics.estimator=true"])
        result = build_run(cfg, metrics=False).sample()
        assert result.nfe == 6 and all("oracle_gamma" in t for t in result.trace)
        distance[corrector] = energy_distance(result.samples, reference)
    assert distance["oracle"] < 0.5 * distance["none"], distance
