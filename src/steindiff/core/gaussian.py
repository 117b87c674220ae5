"""Gaussian data: the one case where the PF-ODE has a closed-form solution.

For x_star ~ N(mu, diag(s^2)) the exact denoiser is D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu),
and the PF-ODE dx/dsigma = (x - D) / sigma is solved by

    x(sigma_1) = mu + sqrt(s^2 + sigma_1^2) / sqrt(s^2 + sigma_0^2) * (x(sigma_0) - mu).

``convergence_order`` measures a solver's global error against it as the number of steps doubles,
and fits the slope of log2(error) against log2(steps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .denoiser import Denoiser, DenoiserSpec
from .sampling import integrate
from .schedules import Schedule

__all__ = ["GaussianData", "global_errors", "convergence_order"]


class GaussianData(Denoiser):
    """Exact denoiser of N(mu, diag(std^2)) data, with the closed-form PF-ODE solution.

    Args:
        mu: (d,) data mean.
        std: (d,) data standard deviations, all > 0 (same shape as mu).
    """

    def __init__(self, mu: Tensor, std: Tensor):
        super().__init__(DenoiserSpec(shape=tuple(torch.as_tensor(mu).shape) or None))
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float64))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64))
        if self.mu.shape != self.std.shape or bool((self.std <= 0).any()):
            raise ValueError("GaussianData needs mu and std of the same shape with std > 0")

    @classmethod
    def random(cls, dim: int = 4, seed: int = 0) -> GaussianData:
        g = torch.Generator().manual_seed(seed)
        mu = torch.randn(dim, generator=g, dtype=torch.float64)
        std = torch.rand(dim, generator=g, dtype=torch.float64) + 0.2
        return cls(mu, std)

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        var, mu = self.std.to(x.dtype) ** 2, self.mu.to(x.dtype)
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return mu + var / (var + sigma**2) * (x - mu)

    def solution(self, x0: Tensor, sigma0: float, sigma1: float) -> Tensor:
        var, mu = self.std.to(x0.dtype) ** 2, self.mu.to(x0.dtype)
        return mu + torch.sqrt(var + sigma1**2) / torch.sqrt(var + sigma0**2) * (x0 - mu)


def global_errors(solver, data: GaussianData, steps: Sequence[int], *, schedule: str = "edm",
                  sigma_min: float = 0.01, sigma_max: float = 80.0, num_samples: int = 16,
                  seed: int = 0) -> list[float]:
    """Mean L2 distance at sigma_min between the solver's solution and the exact one (float64)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(num_samples, data.mu.numel(), generator=g, dtype=torch.float64) * sigma_max
    exact = data.solution(x0, sigma_max, sigma_min)
    errors = []
    for n in steps:
        grid = Schedule(schedule, "sigma_min", sigma_min=sigma_min, sigma_max=sigma_max).grid(n)
        with torch.no_grad():
            x, _, _ = integrate(data, x0.clone(), grid, solver)
        errors.append(float((x - exact).norm(dim=1).mean()))
    return errors


def convergence_order(errors: Sequence[float], steps: Sequence[int]) -> float:
    """Least-squares slope of -log2(error) against log2(steps)."""
    xs = [math.log2(n) for n in steps]
    ys = [-math.log2(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
