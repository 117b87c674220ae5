"""DPM-Solver++ multistep (2M, 3M) in data-prediction form (Lu et al., 2022).

With lambda = -log(sigma), h = lambda_next - lambda, r = sigma_next / sigma = exp(-h) and the
model outputs m0 = D(x, sigma), m1, m2 of the previous steps (lambda_1, lambda_2):

- order 1 (DDIM):  D_ext = m0
- order 2 (2M):    r0 = (lambda - lambda_1) / h,  D_ext = m0 + (m0 - m1) / (2 r0)
- order 3 (3M):    r1 = (lambda_1 - lambda_2) / h,
                   D1_0 = (m0 - m1) / r0,  D1_1 = (m1 - m2) / r1,
                   D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),  D2 = (D1_0 - D1_1) / (r0 + r1),
                   phi1 = expm1(-h), phi2 = phi1 / h + 1, phi3 = phi2 / h - 1/2,
                   x_next = r x + (1 - r) m0 + phi2 D1 - phi3 D2
and in every case x_next = r x + (1 - r) D_ext (the data prediction this solver reports).

``third_order`` chooses the 3M update. "reference" (default) is the formula above, exactly as in
the DPM-Solver reference code, k-diffusion and diffusers, which the published baselines used.
A Taylor expansion shows (and tests/test_solver_convergence.py measures) that it is only second
order: with equal steps, D1 = h D' and D2 = h^2 D''/2 + O(h^3), while the exact third-order
update needs -2 phi3 D2. "taylor" (ours) uses -2 phi3 D2 and is third order.

Warm-up: step i uses order min(order, i + 1). ``lower_order_final`` (default on) caps the order
of the last steps at the number of steps left (the last step is first order, 3M's second to last
second order), which keeps few-step runs stable. A step that ends at sigma = 0 is first order
(h is infinite there): it returns the current data prediction.

NFE: ``num_steps`` ("zero", "sigma_min"), ``num_steps + 1`` ("denoise"); one per step, the
history is reused.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Solver, SolverState, StepOutput, evaluate, transport


class DPMSolverPP(Solver):
    """DPM-Solver++ multistep in data-prediction form; registered as "dpmpp_2m" and "dpmpp_3m".

    Args:
        order: 1 (DDIM), 2 (2M) or 3 (3M).
        lower_order_final: cap the last steps' order at the steps left (last step first order).
        third_order: 3M update, "reference" (published, second order) or "taylor" (third order).

    NFE for N steps: N ("zero", "sigma_min"), N + 1 ("denoise"), for every order.
    """

    name = "dpmpp"

    def __init__(self, order: int = 2, lower_order_final: bool = True, third_order: str = "reference"):
        if order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order!r}")
        if third_order not in ("reference", "taylor"):
            raise ValueError(f"third_order must be 'reference' or 'taylor', got {third_order!r}")
        self.third_order = third_order
        self.order = int(order)
        self.lower_order_final = bool(lower_order_final)
        self.name = f"dpmpp_{self.order}m"

    def step(self, denoiser, x: Tensor, sigma: float, sigma_next: float, state: SolverState,
             labels: Tensor | None = None) -> StepOutput:
        m0 = evaluate(denoiser, x, sigma, labels)
        order = 1 if sigma_next == 0 else self.multistep_order(state, 1 + len(state.history))
        if order == 1:
            d_ext = m0
        else:
            lam, lam_next = -math.log(sigma), -math.log(sigma_next)
            h = lam_next - lam
            sigma_1, m1 = state.history[-1]
            r0 = (lam + math.log(sigma_1)) / h
            d1_0 = (m0 - m1) / r0
            if order == 2:
                d_ext = m0 + 0.5 * d1_0
            else:
                sigma_2, m2 = state.history[-2]
                r1 = (math.log(sigma_2) - math.log(sigma_1)) / h
                d1_1 = (m1 - m2) / r1
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi1 = math.expm1(-h)
                phi2 = phi1 / h + 1.0
                phi3 = phi2 / h - 0.5
                if self.third_order == "taylor":
                    phi3 = 2.0 * phi3
                d_ext = m0 + (phi2 * d1 - phi3 * d2) / (-phi1)
        x_next = transport(x, sigma, sigma_next, d_ext)
        new_state = state.push(sigma, m0, keep=self.order - 1)
        return StepOutput(x_next=x_next, data_prediction=d_ext, state=new_state, nfe=1)

    def global_order(self) -> int:
        """The reference 3M update is second order (module docstring); the others reach ``order``."""
        return 2 if self.order == 3 and self.third_order == "reference" else self.order

    def nfe(self, num_steps: int, final_step: str) -> int:
        return num_steps + (final_step == "denoise")
