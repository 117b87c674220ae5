"""build_run: every packaged experiment builds into the objects its config names, and a config means
the same run whether the app, a test or a notebook builds it."""

import math
from importlib import resources

import pytest
import torch

from steindiff.build import Run, build_run, compose_sample_config, run_seeds
from steindiff.core import (
    DenoiserSpec,
    LipschitzObserver,
    NoCorrector,
    Schedule,
    SteinCorrector,
    make_process,
    mixture_preset,
    sample,
    spec_of,
)
from steindiff.core.solvers import DPMSolverPP
from steindiff.errors import ConfigError

EXPERIMENTS = sorted(p.name.removesuffix(".yaml")
                     for p in resources.files("steindiff.conf.sample").joinpath("experiment").iterdir()
                     if p.name.endswith(".yaml"))


def test_there_are_experiments():
    assert {"digits", "digits_few_steps", "ring2d_mlp", "aniso32_mlp", "ring2d_stein",
            "aniso32_overshoot"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_every_experiment_builds(experiment):
    cfg = compose_sample_config([f"experiment={experiment}"] if experiment else [])
    run = build_run(cfg)
    assert isinstance(run, Run)
    assert run.shape == spec_of(run.denoiser).shape  # the declared shape, never probed
    assert run.grid.final_step == cfg.schedule.final_step
    assert run.expected_nfe <= cfg.nfe < run.solver.nfe(run.grid.num_steps + 1, run.grid.final_step)
    first = cfg.seed_set * cfg.num_samples
    assert run.seeds == list(range(first, first + cfg.num_samples)) and run.batch_size == cfg.batch_size
    assert run.metrics is not None and len(run.metrics) >= 1
    assert run.observers == [] and run.notes == []
    assert (cfg.corrector._target_.endswith("SteinCorrector")) == isinstance(run.corrector, SteinCorrector)


def test_config_means_the_same_run_as_the_core_by_hand():
    cfg = compose_sample_config(["experiment=ring2d_stein", "num_samples=64", "batch_size=32",
                                 "diagnostics.lipschitz=true", "diagnostics.lipschitz_iters=3"])
    run = build_run(cfg)
    by_hand = sample(mixture_preset("ring2d", temperature=0.5), Schedule("edm").grid(6),
                     DPMSolverPP(order=2, lower_order_final=True),
                     SteinCorrector(target="data", statistics="batch", gamma_min=0.95, gamma_max=1.05),
                     seeds=range(64), shape=(2,), batch_size=32, observers=[LipschitzObserver(iters=3)])
    built = run.sample()
    assert torch.equal(built.samples, by_hand.samples) and built.nfe == by_hand.nfe == 6
    assert [t["gamma"] for t in built.trace] == [t["gamma"] for t in by_hand.trace]
    assert all("lipschitz_mean" in t for t in built.trace)


def test_seed_sets_and_explicit_seeds():
    assert run_seeds(compose_sample_config(["num_samples=5", "seed_set=2"])) == [10, 11, 12, 13, 14]
    assert run_seeds(compose_sample_config(["seeds='0-2,7'"])) == [0, 1, 2, 7]
    with pytest.raises(ConfigError, match="seeds='9-2'"):
        run_seeds(compose_sample_config(["seeds='9-2'"]))


def test_steps_instead_of_nfe_and_schedules():
    run = build_run(compose_sample_config(["nfe=null", "steps=5", "solver=heun", "schedule=logsnr"]))
    assert run.grid.num_steps == 5 and run.nfe_budget is None and run.expected_nfe == 9
    explicit = build_run(compose_sample_config(["schedule=explicit", "schedule.sigmas=[80,10,1,0.1,0]", "nfe=null",
                                                "steps=4"]))
    assert explicit.grid.tolist() == [80.0, 10.0, 1.0, 0.1, 0.0]
    for name in ("time_uniform", "time_quadratic"):
        run = build_run(compose_sample_config([f"schedule={name}", "process=vp_linear"]))
        assert float(run.grid.sigmas[0]) == pytest.approx(80.0) and run.grid.num_steps == 8


def trained_on_vp(sigma_max: float = 10.0):
    """A mixture denoiser that declares a VP process and a trained range (as a diffusers model does)."""
    base = mixture_preset("ring2d")
    return _VPMixture(base.weights, base.means, base.stds, sigma_max=sigma_max)


class _VPMixture(type(mixture_preset("ring2d"))):
    def __init__(self, weights, means, stds, sigma_max):
        super().__init__(weights, means, stds)
        self.spec = DenoiserSpec(shape=(2,), process=make_process("vp_cosine"), sigma_min=0.01, sigma_max=sigma_max)


def test_declared_process_and_trained_range_are_used():
    cfg = compose_sample_config([f"denoiser._target_={__name__}.trained_on_vp", "~denoiser.name",
                                 "~denoiser.temperature", "~denoiser.residual_scale", "~denoiser.sigma_scale",
                                 "metrics=none"])
    run = build_run(cfg)
    assert run.process is spec_of(run.denoiser).process
    positive = [s for s in run.grid.tolist() if s > 0]
    assert positive[0] == pytest.approx(10.0) and positive[-1] == pytest.approx(0.01)
    assert run.notes == ["schedule clipped to the denoiser's trained range: sigma_min 0.01, sigma_max 10"]


@pytest.mark.parametrize("overrides,message", [
    (["shape=[3]"], r"shape=\[3\] does not fit the denoiser, which declares \[2\]"),
    (["experiment=digits", "metrics=mixture"], "metrics: metrics=mixture needs the exact mixture .* give "
                                                "metrics.data=ring2d"),
    (["diagnostics.lipschitz_iters=-1"], "lipschitz_iters=-1 is not accepted"),
    (["nfe=0"], "nfe=0 is not accepted"), (["num_threads=0"], "num_threads=0 is not accepted"),
    (["dtype=half"], "dtype='half'"), (["process=vq"], "process='vq'"),
    (["schedule.final_step=half"], "schedule: unknown final_step 'half'"),
    (["schedule.sigma_min=100"], "schedule: need 0 < sigma_min < sigma_max, got sigma_min=100, sigma_max=80.0"),
    (["corrector=stein", "corrector.num_probes=0"], "corrector: num_probes"),
    (["solver=dpmpp_2m", "solver.order=9"], r"solver: DPM-Solver\+\+ order must be 1, 2 or 3, got 9"),
    (["corrector=stein", "corrector.gamma_min=2", "corrector.gamma_max=1"], r"gamma_min \(2\) must not exceed"),
    (["solver=heun", "nfe=1", "schedule.final_step=sigma_min"], "schedule: heun with final_step 'sigma_min' needs"),
])
def test_mistakes_are_one_line_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        build_run(compose_sample_config(overrides))
    assert "\n" not in str(err.value)


def test_none_corrector_is_a_corrector():
    assert isinstance(build_run(compose_sample_config(["corrector=none"])).corrector, NoCorrector)


def test_any_torchmetrics_metric_is_configurable():
    cfg = compose_sample_config(["metrics=none", "+metrics._target_=torchmetrics.aggregation.MeanMetric",
                                 "num_samples=10"])
    run = build_run(cfg)
    result = run.sample()
    run.metrics.update(result.samples.double(), seeds=torch.tensor(run.seeds))  # as the app calls it
    assert list(run.metrics.keys()) == ["meanmetric"]
    assert float(run.metrics.compute()["meanmetric"]) == pytest.approx(float(result.samples.double().mean()))
    with pytest.raises(ValueError, match="metrics: torch.nn.Identity builds Identity, expected a torchmetrics"):
        build_run(compose_sample_config(["metrics=none", "+metrics._target_=torch.nn.Identity"]))


def test_each_piece_is_built_and_checked_once(monkeypatch):
    """The grid is validated once, the solver built once, however many batches a run has."""
    import steindiff.core.schedules as schedules
    from steindiff.core.solvers import dpmpp

    calls = {"check_sigmas": 0, "solver": 0}
    check, init = schedules.check_sigmas, dpmpp.DPMSolverPP.__init__

    def counted_check(*args, **kwargs):
        calls["check_sigmas"] += 1
        return check(*args, **kwargs)

    def counted_init(self, *args, **kwargs):
        calls["solver"] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(schedules, "check_sigmas", counted_check)
    monkeypatch.setattr(dpmpp.DPMSolverPP, "__init__", counted_init)
    run = build_run(compose_sample_config(["num_samples=40", "batch_size=10", "corrector=stein"]))
    run.sample()
    assert calls == {"check_sigmas": 1, "solver": 1}


def test_trajectory_metric_gets_the_runs_own_denoiser():
    run = build_run(compose_sample_config(["metrics=trajectory", "metrics.num_steps=32", "num_samples=16",
                                           "nfe=4"]))
    metric = run.metrics["trajectory_error"]
    assert metric.denoiser is run.denoiser  # not a second copy built from the config
    result = run.sample()
    run.metrics.update(result.samples, seeds=torch.tensor(run.seeds))
    assert 0 < float(run.metrics.compute()["trajectory_error"]) < 10


def test_metrics_none_with_an_experiment_that_sets_metric_keys_builds_no_metrics():
    # experiment=ring2d_mlp sets metrics.data; with metrics=none that key is left over and must not break the run
    cfg = compose_sample_config(["experiment=ring2d_mlp", "metrics=none", "num_samples=4"])
    assert cfg.metrics == {"data": "ring2d"}
    assert build_run(cfg).metrics is None


def test_the_default_stein_corrector_never_gives_a_negative_or_non_finite_gamma():
    """corrector=stein's defaults are the results study's choice: gamma clipped to [0.95, 1.05]. The same run without
    the clip does give gammas far outside it (the issue's -1.85), so the clip is what holds them."""
    overrides = ["corrector=stein", "num_samples=400", "batch_size=200"]
    cfg = compose_sample_config(overrides)
    assert 0 <= cfg.corrector.gamma_min <= 1 <= cfg.corrector.gamma_max < math.inf
    clipped = build_run(cfg).sample().trace
    gammas = [t[k] for t in clipped for k in ("gamma_min_row", "gamma_max_row") if k in t]
    assert gammas and all(math.isfinite(g) and 0.95 - 1e-6 <= g <= 1.05 + 1e-6 for g in gammas)  # float32
    free = build_run(compose_sample_config([*overrides, "corrector.gamma_min=null", "corrector.gamma_max=null"]))
    unclipped = [t["gamma"] for t in free.sample().trace if t.get("corrected")]
    assert min(unclipped) < 0.95 or max(unclipped) > 1.05
