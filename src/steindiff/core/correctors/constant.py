"""A constant gamma (ours, not the paper's): the tuned-constant baseline of the results study.

The corrected output is SteinCorrector's, (1 - gamma) x + gamma T(x) with T the data prediction
(``target`` "data", the step then proceeds as r x + (1 - r) D_corrected) or the next state ("state"),
with gamma fixed: one number for every step, or one per step. Where gamma == 1 the solver's candidate is
returned unchanged, so gamma = 1 is bit-identical to no correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..solvers.base import StepOutput
from .base import Corrector, StepContext
from .stein import TARGETS, SteinCorrector

__all__ = ["ConstantCorrector"]


def _as_gammas(gamma) -> tuple[list[float], bool]:
    """(the values, whether they are one per step) from a number or a sequence of numbers."""
    per_step = not isinstance(gamma, int | float)
    values = list(gamma) if per_step and isinstance(gamma, Sequence) else [gamma]
    if per_step and not isinstance(gamma, Sequence) or not values:
        raise ValueError(f"gamma must be a number or a non-empty list of numbers, got {gamma!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"gamma must be a finite number or a list of them, got {gamma!r}")
    return [float(v) for v in values], per_step


class ConstantCorrector(Corrector):
    """x_next from (1 - gamma) x + gamma T(x) with a fixed gamma (module docstring).

    Args:
        gamma: one number, or a list with one number per step (its length must be the number of steps).
        target: "data" (default) or "state", as in ``SteinCorrector``.

    NFE: none of its own.
    """

    name = "constant"

    def __init__(self, gamma: float | list[float] = 1.0, target: str = "data"):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; accepted: {', '.join(TARGETS)}")
        self.gammas, self.per_step = _as_gammas(gamma)
        self.target = target
        self._apply = SteinCorrector(target=target)._apply  # the corrected output, as Stein's

    def __repr__(self) -> str:
        gamma = self.gammas if self.per_step else self.gammas[0]
        return f"ConstantCorrector(gamma={gamma!r}, target={self.target!r})"

    def check_steps(self, num_steps: int) -> None:
        """A one-line ValueError when a per-step list does not have one value per step."""
        if self.per_step and len(self.gammas) != num_steps:
            raise ValueError(f"gamma has {len(self.gammas)} values for {num_steps} steps: give one value per step "
                             "or a single number")

    def correct(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        self.check_steps(context.num_steps)
        gamma = self.gammas[context.index] if self.per_step else self.gammas[0]
        info = {"gamma": gamma, "corrected": float(gamma != 1.0)}
        if gamma == 1.0:
            return output.x_next, info
        rows = torch.full((len(x),), gamma, dtype=x.dtype, device=x.device)
        return self._apply(x.detach(), output, rows, context), info
