"""Trajectory error: the discretisation error of a few-step sampler, separated from model error.

For the same seeds (so the same initial noise), compare a few-step solution with a high-accuracy
solution of the same PF-ODE: ``reference_solution`` integrates with many small Heun steps in float64
(default 256 steps on the EDM grid, to sigma_min, then one denoising call when the run ends at 0).
``TrajectoryError`` accumulates per-sample distances |x - x_ref| (a cat state, so it syncs under DDP)
and returns their mean; ``summary()`` adds quantiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from steindiff.core.sampling import sample
from steindiff.core.schedules import build_sigmas
from steindiff.core.solvers import HeunSolver

__all__ = ["TrajectoryError", "reference_solution"]


def reference_solution(denoiser, seeds: Sequence[int], shape, *, sigma_max: float = 80.0, sigma_min: float = 0.002,
                       final_step: str = "zero", num_steps: int = 256, process=None,
                       batch_size: int | None = None) -> Tensor:
    """High-accuracy PF-ODE solution from the same per-seed noise as ``steindiff.core.sample``.

    ``final_step`` "zero" and "denoise" end with D(x, sigma_min) (the limit of the ODE as sigma -> 0 up
    to O(sigma_min^2) for a smooth denoiser); "sigma_min" ends at sigma_min.
    """
    sigmas = build_sigmas("edm", num_steps, "sigma_min", sigma_min=sigma_min, sigma_max=sigma_max)
    policy = "sigma_min" if final_step == "sigma_min" else "denoise"
    return sample(denoiser, sigmas, HeunSolver(), seeds=seeds, shape=shape, final_step=policy, process=process,
                  batch_size=batch_size, dtype=torch.float64).samples


class TrajectoryError(Metric):
    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(self, quantiles: Sequence[float] = (0.5, 0.9, 0.99), **kwargs):
        super().__init__(**kwargs)
        self.quantiles = tuple(float(q) for q in quantiles)
        self.add_state("distances", default=[], dist_reduce_fx="cat")

    def update(self, samples: Tensor, reference: Tensor) -> None:
        if samples.shape != reference.shape:
            raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
        self.distances.append((samples.double() - reference.double()).flatten(1).norm(dim=1))

    def _all(self) -> Tensor:
        d = self.distances
        return torch.cat(d) if isinstance(d, list) else d

    def compute(self) -> Tensor:
        return self._all().mean()

    def summary(self) -> dict[str, float]:
        d = self._all()
        out = {"mean": float(d.mean())}
        for q in self.quantiles:
            out[f"q{q:g}"] = float(torch.quantile(d, q))
        return out
