"""UniPC (Zhao et al., 2023): unified predictor-corrector, data-prediction form, B(h) variants.

Notation: lambda = -log(sigma), h = lambda_next - lambda (> 0), model outputs m0 = D at the
current point and m_j of the j-th earlier point, r_j = (lambda_j - lambda) / h (< 0).
With phi1 = expm1(-h) and B(h) = -h ("bh1") or expm1(-h) ("bh2"):

- predictor UniP-p (uses p - 1 earlier outputs):
      x_next = r x - phi1 m0 - B(h) sum_j rho_j (m_j - m0) / r_j
- corrector UniC-p (after evaluating m_next = D(x_next), which the next step reuses):
      x_next^c = r x - phi1 m0 - B(h) [ sum_j rho^c_j (m_j - m0) / r_j + rho^c_p (m_next - m0) ]
where rho solves the order conditions R rho = b (R_ij = r_j^(i-1), with r_p = 1 for the corrector;
b_i = i! phi_{i+1}(h) h^... / B(h), computed by the usual recursion). As in the reference code,
UniP-2 uses rho = 1/2 and UniC-1 rho^c = 1/2; UniP-2 with bh2 is exactly DPM-Solver++(2M).

Step structure here. The corrector needs the model output at the new point, which is also the
first evaluation of the next step, so step i does: evaluate m_i = D(x_i) (1 NFE); if the
corrector is on and i > 0, correct x_i with UniC (the step from x_{i-1}^c); then predict x_{i+1}
from the corrected x_i with UniP. The corrector is applied as an increment,
x_i^c = x_i + (x_i^c - x_i^p) computed from the stored predictor inputs, so a change made to
x_i by a plug-in (SteinDiff) between steps is kept rather than overwritten. The last step gets no
corrector (it would cost one more NFE), exactly as in the reference implementation.

Orders 1 to 3 (order p predictor + corrector has order p + 1). Warm-up uses orders 1, 2, ...;
``lower_order_final`` caps the order of the final steps at the steps left. A step that ends at
sigma = 0 returns m0 (first order; h is infinite there).

NFE: ``num_steps`` ("zero", "sigma_min"), ``num_steps + 1`` ("denoise"), corrector on or off.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Solver, SolverState, StepOutput, effective_data_prediction, evaluate, transport


def _unipc_coefficients(h: float, rks: list[float], order: int, variant: str) -> tuple[list[float], list[float], float]:
    """rho for predictor (length order - 1) and corrector (length order) and B(h)."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = hh if variant == "bh1" else math.expm1(hh)
    factorial = 1.0
    rows, b = [], []
    rk = torch.tensor(rks + [1.0], dtype=torch.float64)
    for i in range(1, order + 1):
        rows.append(rk ** (i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    R = torch.stack(rows)
    bt = torch.tensor(b, dtype=torch.float64)
    if order == 1:
        rho_p: list[float] = []
        rho_c = [0.5]
    else:
        rho_p = [0.5] if order == 2 else torch.linalg.solve(R[:-1, :-1], bt[:-1]).tolist()
        rho_c = torch.linalg.solve(R, bt).tolist()
    return rho_p, rho_c, b_h


class UniPCSolver(Solver):
    """UniPC: UniP-p predictor with the UniC corrector; registered as "unipc" (= "unipc_bh2")
    and "unipc_bh1".

    Args:
        order: predictor order p, 1 to 3 (with the corrector the method has order p + 1).
        variant: B(h), "bh1" (-h) or "bh2" (expm1(-h)).
        use_corrector: correct a step's result with UniC, reusing the D the next step evaluates
            there (no extra NFE); not the last step's result, nor a step to sigma = 0's input.
        lower_order_final: cap the last steps' order at the steps left (last step first order).

    NFE for N steps: N ("zero", "sigma_min"), N + 1 ("denoise"), corrector on or off.
    """

    name = "unipc"

    def __init__(self, order: int = 3, variant: str = "bh2", use_corrector: bool = True,
                 lower_order_final: bool = True):
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order!r}")
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC variant must be 'bh1' or 'bh2', got {variant!r}")
        self.order = int(order)
        self.variant = variant
        self.use_corrector = bool(use_corrector)
        self.lower_order_final = bool(lower_order_final)

    def _differences(self, m0: Tensor, sigma: float, h: float, history, order: int):
        """r_j and (m_j - m0) / r_j for the order - 1 most recent earlier outputs."""
        lam = -math.log(sigma)
        rks, d1s = [], []
        for j in range(1, order):
            sigma_j, m_j = history[-j]
            rk = (-math.log(sigma_j) - lam) / h
            rks.append(rk)
            d1s.append((m_j - m0) / rk)
        return rks, d1s

    def step(self, denoiser, x: Tensor, sigma: float, sigma_next: float, state: SolverState,
             labels: Tensor | None = None) -> StepOutput:
        x_in = x
        m0 = evaluate(denoiser, x, sigma, labels)
        if self.use_corrector and "x_prev" in state.aux and sigma_next > 0:
            x = x + self._corrector_increment(m0, state)
        order = 1 if sigma_next == 0 else self.multistep_order(state, 1 + len(state.history))
        if sigma_next == 0:
            d_ext = m0
            x_next = m0
        else:
            h = math.log(sigma) - math.log(sigma_next)
            rks, d1s = self._differences(m0, sigma, h, state.history, order)
            rho_p, _, b_h = _unipc_coefficients(h, rks, order, self.variant)
            r = sigma_next / sigma
            # x_next = r x - phi1 m0 - B(h) sum rho_p d1  =  r x + (1 - r) d_ext
            d_ext = m0
            for rho, d1 in zip(rho_p, d1s):
                d_ext = d_ext + (-b_h * rho / (1.0 - r)) * d1
            x_next = transport(x, sigma, sigma_next, d_ext)
        # what the corrector of the next step needs: the predictor's input, order and output
        new_state = state.push(sigma, m0, keep=self.order, x_prev=x, x_pred=x_next,
                               order_prev=order,
                               sigma_next_prev=sigma_next)
        # the data prediction reported is relative to the step's input (before UniC), so that
        # x_next = r x_in + (1 - r) D holds for the step as a whole
        if x is not x_in:
            d_ext = effective_data_prediction(x_in, x_next, sigma, sigma_next)
        return StepOutput(x_next=x_next, data_prediction=d_ext, state=new_state, nfe=1)

    def _corrector_increment(self, m_new: Tensor, state: SolverState) -> Tensor:
        """x^c - x^p for the previous step, with m_new = D at the predicted point."""
        x_prev, x_pred = state.aux["x_prev"], state.aux["x_pred"]
        order = state.aux["order_prev"]
        sigma_prev, m_prev = state.history[-1]
        sigma = state.aux["sigma_next_prev"]
        h = math.log(sigma_prev) - math.log(sigma)
        rks, d1s = self._differences(m_prev, sigma_prev, h, state.history[:-1], order)
        _, rho_c, b_h = _unipc_coefficients(h, rks, order, self.variant)
        r = sigma / sigma_prev
        res = rho_c[-1] * (m_new - m_prev)
        for rho, d1 in zip(rho_c[:-1], d1s):
            res = res + rho * d1
        x_corrected = r * x_prev - math.expm1(-h) * m_prev - b_h * res
        return x_corrected - x_pred

    def global_order(self) -> int:
        """p with the predictor alone, p + 1 with the corrector."""
        return self.order + int(self.use_corrector)

    def nfe(self, num_steps: int, final_step: str) -> int:
        return num_steps + (final_step == "denoise")
