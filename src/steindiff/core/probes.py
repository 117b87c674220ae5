"""Per-step diagnostics that ride along a corrector without changing the samples or the NFE.

``ContractivityProbe(corrector)`` records, at every step, the local Lipschitz constant of the base
solver's step map T at the current state (power iteration with JVPs and VJPs, the paper's
Figure 4): the batch mean and max of the per-sample estimates. Its denoiser calls run with the NFE
counter paused. The wrapped corrector's own numbers go into the trace unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .correctors import Corrector, NoCorrector, StepContext
from .diagnostics import lipschitz_estimate
from .solvers.base import StepOutput

__all__ = ["ContractivityProbe"]


class ContractivityProbe(Corrector):
    def __init__(self, corrector: Corrector | None = None, iters: int = 10, seed: int = 0):
        self.inner = corrector or NoCorrector()
        self.iters, self.seed = int(iters), int(seed)
        self.name = f"{self.inner.name}+lipschitz"

    @property
    def requires_grad(self) -> bool:
        return self.inner.requires_grad

    def correct(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        x_next, info = self.inner.correct(x, output, context)
        g = torch.Generator().manual_seed(self.seed * 7919 + context.index)

        def step_map(z):
            return context.step_fn(z).x_next

        if context.counter is not None:
            with context.counter.paused():
                lip = lipschitz_estimate(step_map, x.detach(), self.iters, g)
        else:
            lip = lipschitz_estimate(step_map, x.detach(), self.iters, g)
        return x_next, {**info, "lipschitz_mean": float(lip.mean()), "lipschitz_max": float(lip.max())}
