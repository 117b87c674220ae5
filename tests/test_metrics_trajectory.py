"""Trajectory error against a high-accuracy solution of the same ODE: references given, or computed by
the metric from the run's seeds (the sampling app's metrics=trajectory group)."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torchmetrics import MetricCollection

from steindiff.core import GaussianData, build_sigmas, initial_noise, make_solver, mixture_preset, sample
from steindiff.core.adaptors import VPNetworkDenoiser
from steindiff.core.processes import VPLinearProcess
from steindiff.metrics import MixtureNLL, TrajectoryError, reference_solution, trajectory_metrics

CONF = Path(__file__).resolve().parents[1] / "src" / "steindiff" / "conf" / "sample"


def test_reference_solution_matches_the_closed_form():
    data = GaussianData.random(dim=3, seed=1)
    seeds = list(range(32))
    ref = reference_solution(data, seeds, (3,), sigma_min=0.01, final_step="sigma_min", num_steps=256)
    x0 = initial_noise(seeds, (3,), dtype=torch.float64) * 80.0
    exact = data.solution(x0, 80.0, 0.01)
    assert float((ref - exact).norm(dim=1).max()) < 1e-3


def test_trajectory_error_shrinks_with_steps_and_matches_direct_computation():
    data = mixture_preset("ring2d")
    seeds = list(range(200))
    ref = reference_solution(data, seeds, (2,))
    errors = []
    for steps in (4, 8, 32):
        x = sample(data, build_sigmas("edm", steps, "zero"), make_solver("heun"), seeds=seeds, shape=(2,),
                   dtype=torch.float64).samples
        metric = TrajectoryError()
        for chunk in range(0, 200, 64):  # several updates equal one
            metric.update(x[chunk:chunk + 64], reference=ref[chunk:chunk + 64])
        direct = (x - ref).norm(dim=1)
        assert float(metric.compute()) == pytest.approx(float(direct.mean()), rel=1e-12)
        summary = metric.summary()
        assert summary["q0.5"] == pytest.approx(float(direct.quantile(0.5)), rel=1e-12)
        errors.append(summary["mean"])
    assert errors[0] > errors[1] > errors[2]
    with pytest.raises(ValueError, match="differ in shape"):
        TrajectoryError().update(torch.zeros(3, 2), reference=torch.zeros(3, 3))


def test_seeds_path_equals_the_hand_computed_reference():
    """DPM-Solver++(2M), 6 steps on the exact ring2d mixture: update(samples, seeds=...) computes the same
    reference as reference_solution by hand, so the metric equals the direct mean distance."""
    data = mixture_preset("ring2d")
    seeds = list(range(100, 164))
    x = sample(data, build_sigmas("edm", 6, "zero"), make_solver("dpmpp_2m"), seeds=seeds, shape=(2,)).samples
    ref = reference_solution(data, seeds, (2,), sigma_min=0.002, sigma_max=80.0, final_step="zero")
    direct = (x.double() - ref).norm(dim=1)
    metrics = trajectory_metrics(denoiser=data, sigma_min=0.002, sigma_max=80.0, final_step="zero", process="ve")
    metrics.update(x[:40], seeds=seeds[:40])  # several updates equal one
    metrics.update(x[40:], seeds=torch.tensor(seeds[40:]))
    value = float(metrics.compute()["trajectory_error"])
    assert value == pytest.approx(float(direct.mean()), rel=1e-12)
    assert 1e-3 < value < 1.0  # a few-step run has a visible discretisation error


def test_metric_collection_passes_seeds_only_to_metrics_that_take_them():
    """torchmetrics' MetricCollection filters keyword arguments by each update's signature, so the app can
    call metrics.update(samples, seeds=seeds) on any collection."""
    data = mixture_preset("ring2d")
    seeds = list(range(32))
    x = sample(data, build_sigmas("edm", 4, "zero"), make_solver("heun"), seeds=seeds, shape=(2,)).samples
    both = MetricCollection({"trajectory_error": TrajectoryError(denoiser=data, num_steps=64), "nll": MixtureNLL(data)},
                            compute_groups=False)
    both.update(x, seeds=seeds)
    alone = MixtureNLL(data)
    alone.update(x)
    ref = reference_solution(data, seeds, (2,), num_steps=64)
    values = both.compute()
    assert float(values["nll"]) == float(alone.compute())
    assert float(values["trajectory_error"]) == pytest.approx(float((x.double() - ref).norm(dim=1).mean()), rel=1e-12)
    with pytest.raises(TypeError):
        MixtureNLL(data).update(x, seeds=seeds)  # called directly, a metric without seeds refuses them


def test_a_256_step_heun_run_against_itself_is_zero():
    data = mixture_preset("ring2d")
    seeds = list(range(16))
    run = sample(data, build_sigmas("edm", 256, "denoise"), make_solver("heun"), seeds=seeds, shape=(2,),
                 final_step="denoise", dtype=torch.float64).samples
    metric = TrajectoryError(denoiser=data, final_step="denoise", num_steps=256)
    metric.update(run, seeds=seeds)
    assert float(metric.compute()) < 1e-12
    zero = sample(data, build_sigmas("edm", 256, "zero"), make_solver("heun"), seeds=seeds, shape=(2,)).samples
    metric = TrajectoryError(denoiser=data, final_step="zero")
    metric.update(zero, seeds=seeds)
    assert float(metric.compute()) < 1e-5  # float32, and 255 Heun steps plus a last Euler step to 0


def test_trained_range_and_process_come_from_the_denoiser_spec():
    process = VPLinearProcess()
    denoiser = VPNetworkDenoiser(lambda x, t, labels: torch.zeros_like(x), process, sigma_min=0.01, sigma_max=50.0)
    metric = TrajectoryError(denoiser=denoiser, sigma_min=0.002, sigma_max=80.0, process="ve")
    assert (metric.sigma_min, metric.sigma_max) == (0.01, 50.0) and metric.process is process
    assert isinstance(TrajectoryError(process="vp_linear").process, VPLinearProcess)


def test_bad_uses_are_one_line_errors():
    with pytest.raises(ValueError, match="exactly one of seeds"):
        TrajectoryError().update(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="without a denoiser"):
        TrajectoryError().update(torch.zeros(2, 2), seeds=[0, 1])
    with pytest.raises(ValueError, match="float tensor as seeds"):
        TrajectoryError().update(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="3 seeds for 2 samples"):
        TrajectoryError(denoiser=mixture_preset("ring2d")).update(torch.zeros(2, 2), seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="final_step='last' is not accepted"):
        TrajectoryError(final_step="last")
    with pytest.raises(ValueError, match="unknown process 'vq'"):
        TrajectoryError(process="vq")


def test_config_group_instantiates_with_the_run_denoiser_and_grid():
    cfg = OmegaConf.create({
        "denoiser": OmegaConf.load(CONF / "denoiser" / "ring2d.yaml"),
        "schedule": OmegaConf.load(CONF / "schedule" / "edm.yaml"),
        "process": "ve",
        "metrics": OmegaConf.load(CONF / "metrics" / "trajectory.yaml"),
    })
    cfg.schedule.sigma_min = 0.01
    metrics = instantiate(cfg.metrics)
    metric = metrics["trajectory_error"]
    assert isinstance(metric, TrajectoryError) and metric.num_steps == 256 and metric.final_step == "zero"
    assert (metric.sigma_min, metric.sigma_max) == (0.01, 80.0)
    assert torch.equal(metric.denoiser.means, mixture_preset("ring2d").means)
