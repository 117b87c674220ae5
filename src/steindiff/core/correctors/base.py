"""Correctors: plug-ins that act on each solver step without the solver knowing.

At every step the sampling loop calls ``corrector.correct(x, output, context)`` with the state x at
sigma, the solver's ``StepOutput`` (its next-state candidate and data prediction) and a
``StepContext``; the corrector returns the next state and a dict of numbers for the per-step
trace. ``NoCorrector`` ("none") returns the solver's candidate unchanged.

A corrector that differentiates the step sets ``requires_grad = True``: the loop then evaluates the
step with autograd enabled on x (output tensors carry the graph; no extra NFE), and
``context.step_fn(x')`` re-evaluates the same step at another x' with the solver history held
constant (each call costs the step's NFE again); ``context.step_fn(x_rows, rows)`` does so for a
subset of the batch. Diagnostics that should not count as NFE run inside
``context.counter.paused()``.

Correctors are plug-ins chosen by a config file's ``_target_`` (``steindiff/conf/sample/corrector/``);
per-step diagnostics that must not change the samples are observers (``steindiff.core.observers``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ..processes import NoiseProcess
from ..solvers.base import StepOutput

__all__ = ["StepContext", "Corrector", "NoCorrector"]


@dataclass
class StepContext:
    """What a corrector or observer may know about the step it acts on (all at the current state x)."""

    index: int  # 0-based step index
    num_steps: int
    sigma: float  # EDM noise level of x
    sigma_next: float
    alpha: float  # native alpha of the process at sigma (1 for VE)
    alpha_next: float
    process: NoiseProcess
    step_fn: Callable[..., StepOutput]  # step_fn(x, rows=None): the same step, history held constant
    labels: Tensor | None = None
    seeds: Tensor | None = None  # (B,) int64 seed of each row
    counter: object | None = None  # the CountingDenoiser of this run


class Corrector:
    """Base class and the "none" corrector: the solver's candidate is the next state.

    Subclasses override ``correct``; ``requires_grad = True`` asks the loop for a step evaluated with
    autograd on x (``differentiates(context)`` narrows that to the steps that need it).
    NFE: none of its own (a subclass's docstring states any extra calls).
    """

    name = "none"
    requires_grad = False

    def differentiates(self, context: StepContext) -> bool:
        """Whether this step must be evaluated with autograd on x (asked before the step is evaluated)."""
        return self.requires_grad

    def correct(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        return output.x_next, {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


NoCorrector = Corrector
