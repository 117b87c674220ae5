"""A multistep solver's history under differentiation: the ``history`` option of ``SteinCorrector`` (issue 16).

- ``history``: "hold" (the paper's: a multistep solver's history, its earlier data predictions D_j, is held
  constant when differentiating) or "flow" (ours). Stein's identity needs u as a function of the current
  state x_k alone; along a trajectory D_j = D(x_j, sigma_j) depends on x_k through the flow. "flow" makes
  each history state a differentiable function of x_k by transporting x_k back along the first-order (DDIM)
  map with the current data prediction, x_j(x_k) = (sigma_j/sigma_k) x_k + (1 - sigma_j/sigma_k) D(x_k, sigma_k)
  (one DDIM step from sigma_k to each sigma_j, not chained), re-evaluates D(x_j(x_k), sigma_j) with
  autograd and differentiates through it "straight-through": the history's value is the stored one (the
  step's output is unchanged, bit for bit), its derivative is the re-evaluation's. The step is replayed with
  the current D (the graph the loop built; no new call at x_k). Cost: one denoiser call per history entry the
  step uses, per corrected step, counted by the loop (DPM-Solver++(2M): 1 from the second step on, 0 on a
  first-order last step; 3M: up to 2). "flow_heun" (ours) transports back by one Heun step instead
  (x_j^1 the DDIM transport, then x_j(x_k) = (sigma_j/sigma_k) x_k + (1 - sigma_j/sigma_k) (D(x_k, sigma_k) +
  D(x_j^1, sigma_j)) / 2), a second-order back-flow at two calls per history entry. Solvers without history
  (Euler, Heun) are unchanged. Needs an autograd
  divergence ("hutchinson", "rademacher", "exact"). Solvers whose state holds derived quantities (iPNDM's
  slopes, order > 1; UniPC with its corrector, whose inputs are earlier states) are refused with a ValueError.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from ..solvers.base import StepOutput
from ..solvers.ipndm import IPNDMSolver
from ..solvers.unipc import UniPCSolver
from .base import StepContext

__all__ = ["HISTORIES", "check_history", "flow_output", "history_used", "check_flow_solver"]

HISTORIES = ("hold", "flow", "flow_heun")


def check_history(history: str, divergence: str, autograd: tuple[str, ...]) -> None:
    """One-line ValueErrors for ``history`` (``autograd``: the divergences differentiated by autograd)."""
    if history not in HISTORIES:
        raise ValueError(f"unknown history {history!r}; accepted: {', '.join(HISTORIES)}")
    if history != "hold" and divergence not in autograd:
        raise ValueError(f"history {history!r} needs an autograd divergence ({', '.join(autograd)}), "
                         f"got {divergence!r}")


class _Replay:
    """A denoiser that returns the value the step already computed at (x, sigma): replays a step with the
    loop's graph of D(x, sigma) and no new call (used once)."""

    def __init__(self, value: Tensor, sigma: float):
        self.value, self.sigma, self.used = value, sigma, False

    def __call__(self, x: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.used or not torch.all(sigma == self.sigma):
            raise ValueError("history 'flow' replays a step that calls the denoiser once, at the step's sigma")
        self.used = True
        return self.value


def flow_output(x: Tensor, out: StepOutput, context: StepContext, rows: Tensor | None, history: str) -> StepOutput:
    """The step's output replayed with each history entry D_j a differentiable function of x (straight-through:
    the stored value, the derivative of D(x_j(x), sigma_j), x_j(x) the DDIM transport of x back to sigma_j;
    ``history`` "flow_heun": the Heun transport)."""
    step = context.step_fn
    solver, state = getattr(step, "solver", None), getattr(step, "state", None)
    if solver is None or state is None:
        raise ValueError("history 'flow' needs the sampling loop's step (context.step_fn with solver and state)")
    check_flow_solver(solver, state)
    if rows is not None:
        state = state.select(rows)
    if not state.history:
        return out
    sigma = context.sigma
    new_state = out.state
    last = new_state.history[-1] if new_state.history else None
    if last is None or last[0] != float(sigma) or not last[1].requires_grad:
        raise ValueError(f"history 'flow' cannot replay solver {getattr(solver, 'name', type(solver).__name__)!r}: "
                         "its step does not record D(x, sigma) in its history")
    m0 = new_state.history[-1][1]  # D(x, sigma), carrying the loop's graph
    labels = getattr(step, "labels", None)
    if labels is not None and rows is not None:
        labels = labels[rows]
    used = history_used(solver, x, context, state, m0, labels)
    counter = context.counter if context.counter is not None else step.counter
    entries = []
    for (sigma_j, m_j), needed in zip(state.history, used):
        if needed:
            ratio, level = sigma_j / sigma, torch.full((len(x),), sigma_j, dtype=x.dtype, device=x.device)
            x_j = ratio * x + (1.0 - ratio) * m0  # DDIM back to sigma_j
            if history == "flow_heun":  # Heun: the mean of the two ends' data predictions
                x_j = ratio * x + (1.0 - ratio) * 0.5 * (m0 + counter(x_j, level, labels))
            m_flow = counter(x_j, level, labels)
            m_j = m_j.detach() + (m_flow - m_flow.detach())
        entries.append((sigma_j, m_j))
    flow_state = replace(state, history=tuple(entries))
    return solver.step(_Replay(m0, sigma), x, sigma, context.sigma_next, flow_state, labels)


def history_used(solver, x: Tensor, context: StepContext, state, m0: Tensor, labels) -> list[bool]:
    """Which history entries this step's output depends on (a replay on detached leaves; no denoiser call)."""
    leaves = [m.detach().requires_grad_(True) for _, m in state.history]
    with torch.enable_grad():
        probe_state = replace(state, history=tuple((s, leaf) for (s, _), leaf in zip(state.history, leaves)))
        out = solver.step(_Replay(m0.detach(), context.sigma), x.detach(), context.sigma, context.sigma_next,
                          probe_state, labels)
        if not out.data_prediction.requires_grad:
            return [False] * len(leaves)
        grads = torch.autograd.grad(out.data_prediction.sum(), leaves, allow_unused=True)
    return [g is not None for g in grads]


def check_flow_solver(solver, state) -> None:
    """ValueError for the solvers whose state holds derived quantities (history 'flow' cannot replay them)."""
    name = getattr(solver, "name", type(solver).__name__)
    if isinstance(solver, IPNDMSolver) and solver.order > 1:
        raise ValueError(f"history 'flow' does not support solver {name!r} (order {solver.order}): its slopes "
                         "are derived from earlier states; use history 'hold'")
    if isinstance(solver, UniPCSolver):
        if solver.use_corrector:
            raise ValueError(f"history 'flow' does not support solver {name!r} with its corrector (it uses "
                             "earlier states); use history 'hold' or use_corrector=false")
        return
    derived = [k for k, v in state.aux.items() if isinstance(v, Tensor) or (isinstance(v, tuple) and v)]
    if derived:
        raise ValueError(f"history 'flow' does not support solver {name!r}: its state holds derived quantities "
                         f"({', '.join(derived)}); use history 'hold'")
