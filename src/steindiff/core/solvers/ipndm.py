"""iPNDM: improved pseudo-numerical multistep (Zhang & Chen, 2023), EDM form.

Adams-Bashforth on dx/dsigma = (x - D(x, sigma)) / sigma with the fixed (equal-step) coefficients,
using the slopes d_j of the previous steps (d_0 the current one):

    order 1: d_0
    order 2: (3 d_0 - d_1) / 2
    order 3: (23 d_0 - 16 d_1 + 5 d_2) / 12
    order 4: (55 d_0 - 59 d_1 + 37 d_2 - 9 d_3) / 24
    x_next = x + (sigma_next - sigma) * combination

Warm-up: step i uses order min(order, i + 1). The coefficients assume equal steps, so on a
non-uniform sigma grid the method is consistent but its order is at most 2 (the convergence test
states what is measured); on a grid uniform in sigma it is order ``order`` after warm-up.
``lower_order_final`` (off by default, as in the reference samplers) caps the last steps' order.

NFE: ``num_steps`` ("zero", "sigma_min"), ``num_steps + 1`` ("denoise").
"""

from __future__ import annotations

from torch import Tensor

from .base import Solver, SolverState, StepOutput, effective_data_prediction, evaluate

ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


class IPNDMSolver(Solver):
    """iPNDM: Adams-Bashforth on the EDM PF-ODE with equal-step coefficients and warm-up.

    Args:
        order: 1 to 4, the Adams-Bashforth order after warm-up.
        lower_order_final: cap the last steps' order at the steps left (off by default).

    NFE for N steps: N ("zero", "sigma_min"), N + 1 ("denoise"), for every order.
    """

    name = "ipndm"

    def __init__(self, order: int = 4, lower_order_final: bool = False):
        if order not in ADAMS_BASHFORTH:
            raise ValueError(f"iPNDM order must be 1, 2, 3 or 4, got {order!r}")
        self.order = int(order)
        self.lower_order_final = bool(lower_order_final)

    def step(self, denoiser, x: Tensor, sigma: float, sigma_next: float, state: SolverState,
             labels: Tensor | None = None) -> StepOutput:
        d = evaluate(denoiser, x, sigma, labels)
        slope = (x - d) / sigma
        slopes = (slope,) + tuple(state.aux.get("slopes", ()))  # most recent first
        order = self.multistep_order(state, len(slopes))
        combination = 0.0
        for c, s in zip(ADAMS_BASHFORTH[order], slopes):
            combination = combination + c * s
        x_next = x + (sigma_next - sigma) * combination
        data_prediction = d if order == 1 else effective_data_prediction(x, x_next, sigma, sigma_next)
        new_state = state.push(sigma, d, keep=1, slopes=slopes[: self.order - 1])
        return StepOutput(x_next=x_next, data_prediction=data_prediction, state=new_state, nfe=1)

    def global_order(self) -> int:
        """At most 2 on a non-uniform grid: the coefficients assume equal steps (module docstring)."""
        return min(self.order, 2)

    def nfe(self, num_steps: int, final_step: str) -> int:
        return num_steps + (final_step == "denoise")
