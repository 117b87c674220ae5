"""One step interface for every PF-ODE solver.

All solvers work in EDM coordinates (see ``steindiff.core.processes``): the state x at noise level
sigma, the denoiser D(x, sigma). A step maps x at ``sigma`` to the candidate x_next at
``sigma_next < sigma`` and returns a ``StepOutput`` holding

- ``x_next``: the solver's next-state candidate (T_theta(x) under the corrector's "state" reading);
- ``data_prediction``: the x_star estimate the update used (the "data" reading). It is defined so
  that the step is a first-order (DDIM) transport with it:

      x_next = r * x + (1 - r) * data_prediction,      r = sigma_next / sigma,

  which is exactly the extrapolated D for DPM-Solver++ and UniPC and the effective estimate for
  Heun and iPNDM. A corrector can therefore replace the data prediction and re-transport without
  knowing which solver it wraps (``transport``). Every solver is tested against this identity.
- ``state``: the solver's explicit state after the step (multistep history). States are immutable;
  ``step`` never mutates its input state, so a step can be re-evaluated at another x (to
  differentiate it, say) with the history held constant.
- ``nfe``: the denoiser evaluations this step made.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

__all__ = ["SolverState", "StepOutput", "Solver", "transport", "effective_data_prediction"]


@dataclass(frozen=True)
class SolverState:
    """Explicit, immutable solver state (``Solver.init_state`` builds the first one).

    Args:
        index: number of steps already taken.
        num_steps: steps in the whole run (for lower-order final steps).
        history: (sigma, data prediction) pairs of earlier denoiser evaluations, most recent last.
        aux: solver-specific extras (iPNDM keeps its slopes there, UniPC its corrector's inputs).
    """

    index: int  # number of steps already taken
    num_steps: int  # steps in the whole run (for lower-order final steps)
    history: tuple[tuple[float, Tensor], ...] = ()
    aux: dict[str, Any] = field(default_factory=dict)

    def detach(self) -> SolverState:
        """The same state with every tensor detached from autograd graphs."""

        def _d(v):
            if isinstance(v, Tensor):
                return v.detach()
            if isinstance(v, tuple):
                return tuple(_d(u) for u in v)
            return v

        return replace(
            self,
            history=tuple((s, d.detach()) for s, d in self.history),
            aux={k: _d(v) for k, v in self.aux.items()},
        )

    def select(self, rows: Tensor) -> SolverState:
        """The state of a subset of the batch (every tensor is indexed by ``rows`` along dim 0)."""

        def _s(v):
            if isinstance(v, Tensor):
                return v[rows]
            if isinstance(v, tuple):
                return tuple(_s(u) for u in v)
            return v

        return replace(self, history=tuple((s, d[rows]) for s, d in self.history),
                       aux={k: _s(v) for k, v in self.aux.items()})

    def push(self, sigma: float, data_prediction: Tensor, keep: int, **aux) -> SolverState:
        """The state after one more step, with (sigma, D) appended and at most ``keep`` kept."""
        history = (self.history + ((float(sigma), data_prediction),))[-keep:] if keep > 0 else ()
        new_aux = dict(self.aux)
        new_aux.update(aux)
        return replace(self, index=self.index + 1, history=history, aux=new_aux)


@dataclass
class StepOutput:
    """What one solver step returns (see the module docstring).

    Args:
        x_next: the next-state candidate at sigma_next, (B, ...) like the input x.
        data_prediction: the D with x_next = r x + (1 - r) D, r = sigma_next / sigma.
        state: the solver state after the step (the input state is left untouched).
        nfe: denoiser evaluations this step made.
    """

    x_next: Tensor
    data_prediction: Tensor
    state: SolverState
    nfe: int


def transport(x: Tensor, sigma: float, sigma_next: float, data_prediction: Tensor) -> Tensor:
    """First-order (DDIM) transport: r x + (1 - r) D with r = sigma_next / sigma."""
    r = sigma_next / sigma
    return r * x + (1.0 - r) * data_prediction


def effective_data_prediction(x: Tensor, x_next: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """The D with ``transport(x, sigma, sigma_next, D) == x_next`` (sigma_next < sigma)."""
    r = sigma_next / sigma
    return (x_next - r * x) / (1.0 - r)


class Solver:
    """Base class. Subclasses implement ``step`` and ``nfe`` and set ``order``.

    Final-step policies (``steindiff.core.schedules``): "zero" (the grid ends at sigma = 0),
    "sigma_min" (the grid ends at sigma_min > 0), "denoise" (as sigma_min, then one extra
    denoiser call, D(x, sigma_min), which adds 1 NFE; the sampling loop makes that call).
    Every subclass states its exact NFE for N steps under each policy; ``nfe`` computes it.

    Args:
        none (subclasses take their options as keyword arguments).
    """

    name = "base"
    #: nominal order of accuracy (the convergence test fits it)
    order = 1

    def init_state(self, num_steps: int) -> SolverState:
        return SolverState(index=0, num_steps=int(num_steps))

    def step(self, denoiser, x: Tensor, sigma: float, sigma_next: float, state: SolverState,
             labels: Tensor | None = None) -> StepOutput:
        raise NotImplementedError

    def nfe(self, num_steps: int, final_step: str) -> int:
        """Exact NFE of a run with ``num_steps`` steps and the given final-step policy."""
        raise NotImplementedError

    def global_order(self) -> int:
        """Order of the global error on a non-uniform sigma grid (EDM's rho = 7, logSNR) with
        ``lower_order_final`` off: what tests/test_solver_convergence.py fits. Default ``order``."""
        return self.order

    def multistep_order(self, state: SolverState, available: int) -> int:
        """The order of this step: at most ``self.order``, at most the ``available`` model outputs
        (warm-up), and with ``lower_order_final`` at most the steps left (1 for the last step)."""
        order = min(self.order, available)
        if getattr(self, "lower_order_final", False):
            order = min(order, state.num_steps - state.index)
        return max(order, 1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def evaluate(denoiser, x: Tensor, sigma: float, labels: Tensor | None) -> Tensor:
    """Call the denoiser at one noise level for the whole batch."""
    return denoiser(x, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device), labels)
