"""Small diagnostics on samples (pure torch). The platform's torchmetrics versions build on these."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["energy_distance"]


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
