"""Euler = DDIM: the first-order data-prediction step.

    x_next = (sigma_next / sigma) x + (1 - sigma_next / sigma) D(x, sigma)

In EDM coordinates Euler's method on dx/dsigma = (x - D) / sigma is exactly DDIM (eta = 0).

NFE: ``num_steps`` for final-step policies "zero" and "sigma_min"; ``num_steps + 1`` for "denoise".
"""

from __future__ import annotations

from torch import Tensor

from .base import Solver, SolverState, StepOutput, evaluate, transport


class EulerSolver(Solver):
    """Euler = DDIM (eta = 0), first order; registered as "euler" and "ddim".

    Args:
        none.

    NFE for N steps: N ("zero", "sigma_min"), N + 1 ("denoise").
    """

    name = "euler"
    order = 1

    def step(self, denoiser, x: Tensor, sigma: float, sigma_next: float, state: SolverState,
             labels: Tensor | None = None) -> StepOutput:
        d = evaluate(denoiser, x, sigma, labels)
        x_next = transport(x, sigma, sigma_next, d)
        return StepOutput(x_next=x_next, data_prediction=d, state=state.push(sigma, d, keep=0), nfe=1)

    def nfe(self, num_steps: int, final_step: str) -> int:
        return num_steps + (final_step == "denoise")


#: DDIM is the same step.
DDIMSolver = EulerSolver
