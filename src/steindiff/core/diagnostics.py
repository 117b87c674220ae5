"""Small diagnostics on samples (pure torch). The platform's torchmetrics versions build on these."""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

__all__ = ["energy_distance", "oracle_gamma", "mse_to_target", "lipschitz_estimate"]


def _mean_pairwise_distance(a: Tensor, b: Tensor, chunk: int = 1024) -> Tensor:
    total = a.new_zeros(())
    for i in range(0, len(a), chunk):
        total = total + torch.cdist(a[i:i + chunk], b).sum()
    return total / (len(a) * len(b))


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between two sample sets (V-statistic)."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    value = 2 * _mean_pairwise_distance(x, y) - _mean_pairwise_distance(x, x) - _mean_pairwise_distance(y, y)
    return float(value)


def oracle_gamma(u: Tensor, x_native: Tensor, x_star: Tensor) -> float:
    """The MSE-optimal coefficient gamma* = E<u, x - x_star> / E|u|^2 (x_star known)."""
    num = (u * (x_native - x_star)).flatten(1).sum(1).mean()
    return float(num / u.flatten(1).pow(2).sum(1).mean())


def mse_to_target(x: Tensor, x_star: Tensor) -> float:
    """Mean squared distance E|x - x_star|^2 (per sample, summed over dimensions)."""
    return float((x - x_star).flatten(1).pow(2).sum(1).mean())


def lipschitz_estimate(f, x: Tensor, iters: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample spectral norm of the Jacobian of f at x by power iteration on J^T J.

    J v comes from forward-mode AD (a JVP), J^T w from a VJP; each iteration costs one forward
    and one backward pass of f. Returns (B,) estimates |J v| / |v| (a lower bound that converges
    to the largest singular value).
    """
    x = x.detach()
    v = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x)
    v = v / v.flatten(1).norm(dim=1).reshape(-1, *([1] * (x.ndim - 1)))
    estimate = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for _ in range(int(iters)):
        with fwAD.dual_level():
            jv = fwAD.unpack_dual(f(fwAD.make_dual(x, v))).tangent
        estimate = jv.flatten(1).norm(dim=1)
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            (jtjv,) = torch.autograd.grad(f(xg), xg, grad_outputs=jv)
        norm = jtjv.flatten(1).norm(dim=1).clamp_min(1e-30)
        v = (jtjv / norm.reshape(-1, *([1] * (x.ndim - 1)))).detach()
    return estimate.detach()
