"""The statistics of the SteinDiff corrector: Theorem 4.7's coefficient from sample means (``stein_gamma``, the
paper's; one per batch, sample or group, and, ours, with E<u, x> and E|u|^2 from other rows), and for the
``shrinkage`` option of ``SteinCorrector`` (ours, issue 16) its delta-method standard error
(``ratio_standard_error``) and gamma shrunk toward 1 by it (``shrink_gamma``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["stein_gamma", "ratio_standard_error", "shrink_gamma"]


def stein_gamma(u: Tensor, x: Tensor, div_u: Tensor, alpha: float, sigma: float, groups: Tensor | None = None,
                moments: tuple[Tensor, Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """Theorem 4.7's coefficient from native-coordinate residuals u (B, ...), states x, div u (B,).

    ``groups`` (B,) int: one coefficient per group (all zeros = one for the batch); None = one per
    sample. ``moments`` (ours; needs ``groups``): (u, x, groups) of other rows, e.g. every row of the
    batch when u, x, div_u hold a subset with rows in every group, to take E<u, x> and E|u|^2 from.
    Returns gamma per row (B,) and the statistics s_xu, s_uu, s_div per group.
    """
    s_xu_rows = (u * x).flatten(1).sum(1)
    s_uu_rows = u.flatten(1).pow(2).sum(1)
    if groups is None:
        if moments is not None:
            raise ValueError("stein_gamma: moments from other rows need groups")
        s_xu, s_uu, s_div, index = s_xu_rows, s_uu_rows, div_u, torch.arange(len(u), device=u.device)
    else:
        index, (s_xu, s_uu, s_div) = _group_means(groups, s_xu_rows, s_uu_rows, div_u)
        if moments is not None:
            u_m, x_m, groups_m = moments
            _, (s_xu, s_uu) = _group_means(groups_m, (u_m * x_m).flatten(1).sum(1), u_m.flatten(1).pow(2).sum(1))
    numerator = (1.0 - 1.0 / alpha) * s_xu + (sigma**2 / alpha) * s_div
    gamma = numerator / s_uu
    return {"gamma": gamma, "s_xu": s_xu, "s_uu": s_uu, "s_div": s_div, "index": index}


def _group_means(groups: Tensor, *values: Tensor) -> tuple[Tensor, list[Tensor]]:
    """(each row's group index among the sorted group ids, the mean of each (B,) value per group)."""
    index = torch.unique(groups, return_inverse=True)[1]
    n = int(index.max()) + 1
    like = values[0]
    count = torch.zeros(n, dtype=like.dtype, device=like.device).index_add_(0, index, torch.ones_like(like))
    return index, [torch.zeros(n, dtype=like.dtype, device=like.device).index_add_(0, index, v) / count
                   for v in values]


def ratio_standard_error(num: Tensor, den: Tensor, groups: Tensor, gamma: Tensor) -> Tensor:
    """Delta-method standard error of gamma = mean(num) / mean(den) per group (ours).

    num, den (B,) per-row numerator and denominator, groups (B,) group ids, gamma (G,) each group's ratio (in
    the order of the sorted ids): se^2 = sum (num - gamma den)^2 / ((n - 1) n mean(den)^2). A group of one
    row has an infinite standard error.
    """
    index, (mean_den,) = _group_means(groups, den)
    resid = num - gamma[index] * den
    n = int(index.max()) + 1
    count = torch.zeros(n, dtype=num.dtype, device=num.device).index_add_(0, index, torch.ones_like(num))
    sq = torch.zeros(n, dtype=num.dtype, device=num.device).index_add_(0, index, resid.pow(2))
    var = torch.where(count > 1, sq / (count - 1).clamp_min(1), torch.full_like(sq, float("inf")))
    return (var / count).sqrt() / mean_den.abs()


def shrink_gamma(gamma: Tensor, se: Tensor) -> Tensor:
    """gamma shrunk toward 1 by its standard error (ours): 1 + (gamma - 1) max(0, 1 - se^2 / (gamma - 1)^2).

    se = 0 leaves gamma unchanged; se >= |gamma - 1| gives 1; non-finite gamma stays non-finite (the
    corrector's fallback then applies)."""
    dev = gamma - 1
    factor = (1 - se.pow(2) / dev.pow(2)).clamp_min(0)
    factor = torch.where(se == 0, torch.ones_like(factor), factor)
    factor = torch.where(torch.isnan(factor) & torch.isfinite(gamma), torch.zeros_like(factor), factor)
    return 1 + dev * factor
