"""Observers: per-step diagnostics that see every step and never change the samples or the NFE.

The sampling loop calls ``observer.observe(x, output, context)`` after the corrector, with the state
x at sigma, the solver's ``StepOutput`` and the ``StepContext`` (whose ``step_fn`` re-evaluates the
same step at another state, history held constant); the returned numbers join the per-step trace.
Observer denoiser calls run with the NFE counter paused.

``LipschitzObserver`` records the local Lipschitz constant of the base solver's step map T at the
current state (power iteration with JVPs and VJPs; the paper's Figure 4): the batch mean and max of
the per-sample estimates.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .correctors.base import StepContext
from .diagnostics import lipschitz_estimate
from .solvers.base import StepOutput

__all__ = ["Observer", "LipschitzObserver"]


class Observer:
    """Base class of per-step diagnostics: ``observe`` returns numbers for the trace."""

    def observe(self, x: Tensor, output: StepOutput, context: StepContext) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LipschitzObserver(Observer):
    """Local Lipschitz constant of the step map x -> T(x) at each step's state.

    Args:
        iters: power-iteration steps (each one JVP and one VJP through the step).
        seed: seed of the starting directions (the generator of step i is seeded with seed * 7919 + i).

    NFE: none counted (its step evaluations run with the counter paused).
    """

    def __init__(self, iters: int = 10, seed: int = 0):
        if isinstance(iters, bool) or int(iters) != iters or iters < 1:
            raise ValueError(f"lipschitz iterations must be an integer >= 1, got {iters!r}")
        self.iters, self.seed = int(iters), int(seed)

    def observe(self, x: Tensor, output: StepOutput, context: StepContext) -> dict:
        g = torch.Generator().manual_seed(self.seed * 7919 + context.index)

        def step_map(z):
            return context.step_fn(z).x_next

        paused = context.counter.paused() if context.counter is not None else contextlib.nullcontext()
        with paused:
            lip = lipschitz_estimate(step_map, x.detach(), self.iters, g)
        return {"lipschitz_mean": float(lip.mean()), "lipschitz_max": float(lip.max())}

    def __repr__(self) -> str:
        return f"LipschitzObserver(iters={self.iters}, seed={self.seed})"
