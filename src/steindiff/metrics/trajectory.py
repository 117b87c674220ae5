"""Trajectory error: the discretisation error of a few-step sampler, separated from model error.

For the same seeds (so the same initial noise), compare a few-step solution with a high-accuracy
solution of the same PF-ODE: ``reference_solution`` integrates with many small Heun steps in float64
(default 256 steps on the EDM grid, to sigma_min, then one denoising call when the run ends at 0).
``TrajectoryError`` accumulates per-sample distances |x - x_ref| (a cat state, so it syncs under DDP)
and returns their mean; ``summary()`` adds quantiles. It takes the reference either given
(``update(samples, reference=x_ref)``) or computed by itself for the samples' seeds, when it was built
with the run's denoiser and grid end points (``update(samples, seeds=seeds)``: what the sampling app
calls through a MetricCollection, which passes ``seeds`` only to metrics whose ``update`` takes it).

    metrics = trajectory_metrics(denoiser=mixture_preset("ring2d"), sigma_min=0.002, sigma_max=80.0)
    metrics.update(result.samples, seeds=result.seeds)
    metrics.compute()["trajectory_error"]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from steindiff.core.denoiser import spec_of
from steindiff.core.processes import NoiseProcess, make_process
from steindiff.core.sampling import sample
from steindiff.core.schedules import Schedule
from steindiff.core.solvers import HeunSolver

__all__ = ["FINAL_STEPS", "TrajectoryError", "reference_solution", "trajectory_metrics"]

FINAL_STEPS = ("zero", "sigma_min", "denoise")


def reference_solution(denoiser, seeds: Sequence[int], shape, *, sigma_max: float = 80.0, sigma_min: float = 0.002,
                       final_step: str = "zero", num_steps: int = 256, process=None,
                       batch_size: int | None = None, device: torch.device | str = "cpu") -> Tensor:
    """High-accuracy PF-ODE solution from the same per-seed noise as ``steindiff.core.sample``.

    ``final_step`` "zero" and "denoise" end with D(x, sigma_min) (the limit of the ODE as sigma -> 0 up
    to O(sigma_min^2) for a smooth denoiser); "sigma_min" ends at sigma_min. Float64, on ``device``.
    Cost per sample: 2 ``num_steps`` denoiser evaluations (Heun), plus one for the final denoising call.
    """
    policy = "sigma_min" if final_step == "sigma_min" else "denoise"
    grid = Schedule("edm", policy, sigma_min=sigma_min, sigma_max=sigma_max).grid(num_steps)
    return sample(denoiser, grid, HeunSolver(), seeds=seeds, shape=shape, process=process,
                  batch_size=batch_size, dtype=torch.float64, device=device).samples


def _as_process(process) -> NoiseProcess | None:
    """A ``NoiseProcess`` from a name ("ve", "vp_linear", ...) or as given; None stays None (VE)."""
    if process is None or isinstance(process, NoiseProcess):
        return process
    if isinstance(process, str):
        return make_process(process)
    raise ValueError(f"process={process!r} is not accepted: expected a process name or a NoiseProcess")


class TrajectoryError(Metric):
    """Mean distance |x - x_ref| per sample between a run's samples and a high-accuracy PF-ODE solution.

    Two ways to update: ``update(samples, reference=x_ref)`` with references computed elsewhere, or,
    when built with the run's ``denoiser``, ``update(samples, seeds=seeds)``: the metric computes
    ``reference_solution`` for those seeds itself (the same per-seed noise and class labels as the
    sampler, float64, on the samples' device). The grid end points are clipped to the denoiser's
    trained range (``spec.sigma_min`` / ``spec.sigma_max``) as the sampling app clips the run's
    schedule, and a denoiser that declares its process (``spec.process``) integrates in it, as the app
    does. Cost of the seeds path: 2 ``num_steps`` + 1 denoiser evaluations per sample, outside the
    run's measured NFE (the metric calls the denoiser directly, not the run's counter).

    ``compute()`` is the mean distance; ``summary()`` adds the ``quantiles``.

    Args:
        denoiser: the run's denoiser (None: references must be given to ``update``). It is registered
            as a submodule, so it moves with the metric.
        sigma_min, sigma_max: the run's grid end points.
        final_step: the run's final step, "zero", "sigma_min" or "denoise".
        process: the run's noise process, a name (``steindiff.core.make_process``) or a ``NoiseProcess``.
        num_steps: Heun steps of the reference solution.
        quantiles: the quantiles reported by ``summary()``.
        batch_size: seeds per batch of the reference computation (None: all at once).
        **kwargs: torchmetrics ``Metric`` options (e.g. ``sync_on_compute``).
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(self, denoiser=None, sigma_min: float = 0.002, sigma_max: float = 80.0, final_step: str = "zero",
                 process: str | NoiseProcess | None = "ve", num_steps: int = 256,
                 quantiles: Sequence[float] = (0.5, 0.9, 0.99), batch_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if final_step not in FINAL_STEPS:
            raise ValueError(f"final_step={final_step!r} is not accepted: expected one of {', '.join(FINAL_STEPS)}")
        if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
            raise ValueError(f"num_steps={num_steps!r} is not accepted: expected an integer >= 1")
        spec = spec_of(denoiser)
        self.sigma_min = max(float(sigma_min), spec.sigma_min if spec.sigma_min is not None else 0.0)
        self.sigma_max = min(float(sigma_max), spec.sigma_max if spec.sigma_max is not None else float("inf"))
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"the reference grid needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min} "
                             f"and sigma_max={self.sigma_max}")
        self.denoiser = denoiser
        self.final_step, self.num_steps = final_step, int(num_steps)
        self.process = spec.process if spec.process is not None else _as_process(process)
        self.batch_size = batch_size
        self.quantiles = tuple(float(q) for q in quantiles)
        self.add_state("distances", default=[], dist_reduce_fx="cat")

    def reference(self, seeds: Sequence[int], shape, device: torch.device | str = "cpu") -> Tensor:
        """The high-accuracy solution for ``seeds`` (float64, (len(seeds), *shape)) on this metric's grid."""
        if self.denoiser is None:
            raise ValueError("TrajectoryError without a denoiser cannot compute references from seeds: build it "
                             "with denoiser=... or pass reference=... to update")
        return reference_solution(self.denoiser, seeds, shape, sigma_max=self.sigma_max, sigma_min=self.sigma_min,
                                  final_step=self.final_step, num_steps=self.num_steps, process=self.process,
                                  batch_size=self.batch_size, device=device)

    def update(self, samples: Tensor, seeds: Sequence[int] | None = None, reference: Tensor | None = None) -> None:
        """Add the distances of ``samples`` (B, *shape) to their references: given, or computed for ``seeds``."""
        if (seeds is None) == (reference is None):
            raise ValueError("TrajectoryError.update needs exactly one of seeds=... (with a denoiser) or reference=...")
        if isinstance(seeds, Tensor) and seeds.is_floating_point():
            raise ValueError("TrajectoryError.update got a float tensor as seeds; pass a reference as reference=...")
        if reference is None:
            seeds = seeds.tolist() if isinstance(seeds, Tensor) else list(seeds)
            if len(seeds) != samples.shape[0]:
                raise ValueError(f"{len(seeds)} seeds for {samples.shape[0]} samples")
            reference = self.reference(seeds, tuple(samples.shape[1:]), samples.device)
        if samples.shape != reference.shape:
            raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
        reference = reference.to(samples.device)
        self.distances.append((samples.double() - reference.double()).flatten(1).norm(dim=1))

    def _all(self) -> Tensor:
        d = self.distances
        return torch.cat(d) if isinstance(d, list) else d

    def compute(self) -> Tensor:
        return self._all().mean()

    def summary(self) -> dict[str, float]:
        """{"mean", "q<quantile>"...} of the accumulated distances."""
        d = self._all()
        out = {"mean": float(d.mean())}
        for q in self.quantiles:
            out[f"q{q:g}"] = float(torch.quantile(d, q))
        return out


def trajectory_metrics(**kwargs) -> MetricCollection:
    """The sampling app's ``metrics=trajectory`` group: {"trajectory_error": TrajectoryError(**kwargs)}.

    The app calls ``metrics.update(samples, seeds=seeds)``; see ``TrajectoryError`` for the arguments.
    """
    return MetricCollection({"trajectory_error": TrajectoryError(**kwargs)}, compute_groups=False)
