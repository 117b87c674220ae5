"""Heun's second-order method in EDM form (EDM's deterministic sampler, S_churn = 0).

    d      = (x - D(x, sigma)) / sigma
    x_e    = x + (sigma_next - sigma) d                          (Euler predictor)
    d'     = (x_e - D(x_e, sigma_next)) / sigma_next
    x_next = x + (sigma_next - sigma) (d + d') / 2              (trapezoidal corrector)

A step that ends at sigma_next = 0 is a plain Euler step (d' is undefined there), as in EDM.
The data prediction reported is the effective one, (x_next - r x) / (1 - r).

NFE for N steps: "zero" 2N - 1 (the last step is Euler), "sigma_min" 2N, "denoise" 2N + 1.
"""

from __future__ import annotations

from torch import Tensor

from .base import Solver, SolverState, StepOutput, effective_data_prediction, evaluate, transport


class HeunSolver(Solver):
    """Heun's second-order method (EDM's deterministic sampler); the step to sigma = 0 is Euler.

    Args:
        none.

    NFE for N steps: 2N - 1 ("zero"), 2N ("sigma_min"), 2N + 1 ("denoise").
    """

    name = "heun"
    order = 2

    def step(self, denoiser, x: Tensor, sigma: float, sigma_next: float, state: SolverState,
             labels: Tensor | None = None) -> StepOutput:
        d_x = evaluate(denoiser, x, sigma, labels)
        x_euler = transport(x, sigma, sigma_next, d_x)
        if sigma_next == 0:
            return StepOutput(x_next=x_euler, data_prediction=d_x,
                              state=state.push(sigma, d_x, keep=0), nfe=1)
        d_e = evaluate(denoiser, x_euler, sigma_next, labels)
        slope = (x - d_x) / sigma
        slope_e = (x_euler - d_e) / sigma_next
        x_next = x + (sigma_next - sigma) * 0.5 * (slope + slope_e)
        data_prediction = effective_data_prediction(x, x_next, sigma, sigma_next)
        return StepOutput(x_next=x_next, data_prediction=data_prediction,
                          state=state.push(sigma, d_x, keep=0), nfe=2)

    def nfe(self, num_steps: int, final_step: str) -> int:
        if final_step == "zero":
            return 2 * num_steps - 1
        return 2 * num_steps + (final_step == "denoise")
