"""Per-step estimator diagnostics (ours): Stein's estimate of gamma beside the oracle gamma at the same states.

``EstimatorObserver`` computes, at every step and on the run's own states (corrected or not), the gamma a
``SteinCorrector`` would estimate there ("stein_estimate" in the trace) and the gamma an ``OracleCorrector``
knows ("oracle_gamma"), both unclipped and with the same reading and statistics, so a user sees where and
how far the estimate departs from what it estimates. It changes neither the samples nor the counted NFE:
its step evaluations run with the counter paused, and it returns numbers only. Defaults are the paper's
estimator (Hutchinson, 5 probes, batch statistics) under the data reading.

With the same probe seed and settings, "stein_estimate" equals a SteinCorrector's "gamma" at the same state
(same per-seed probes), and "oracle_gamma" an OracleCorrector's.

Several estimators at once (ours, for comparing estimator variants): ``correctors={name: corrector}`` reads, at
each step, the gamma each named corrector reports ("stein_estimate[name]" in the trace) instead of the single
default estimate. Each is called exactly as the sampling loop calls a corrector (``correct(x, output,
context)``, with a fresh autograd graph of the step at x when it differentiates), on the observer's own copy
with no clip and no sigma window (``unclipped``), so its number is the raw estimate at every step; a corrector
that keeps state across the steps of a batch (smoothing, say) keeps it in that copy. Its gamma at a step
equals what the same corrector, unclipped, reports when it runs that step itself from the same state.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import Tensor

from .correctors.base import Corrector, StepContext
from .correctors.oracle import OracleCorrector
from .correctors.stein import SteinCorrector
from .observers import Observer
from .solvers.base import StepOutput

__all__ = ["EstimatorObserver", "unclipped", "estimate_key"]

#: what ``unclipped`` resets: the clip, the sigma window and the first/last-step switches of the Stein family
_SAFEGUARDS = {"gamma_min": None, "gamma_max": None, "sigma_window": None, "correct_first": True,
               "correct_last": True}


def unclipped(corrector: Corrector) -> Corrector:
    """A copy of ``corrector`` that estimates at every step and reports its raw gamma: no clip, no sigma window,
    first and last steps corrected (only the attributes it has are reset; its own state is copied too)."""
    out = copy.deepcopy(corrector)
    for key, value in _SAFEGUARDS.items():
        if hasattr(out, key):
            setattr(out, key, value)
    return out


def estimate_key(name: str) -> str:
    """The trace key of the named estimate of ``EstimatorObserver(correctors=...)``."""
    return f"stein_estimate[{name}]"


class EstimatorObserver(Observer):
    """Stein's estimate and the oracle gamma at each step's state (module docstring).

    Args:
        reference: the oracle's truth, "posterior" (needs ``data``) or "trajectory".
        data: the data law of the "posterior" oracle (a ``GaussianMixture`` or a preset name).
        target: "data" (default) or "state", for both numbers (for the oracle only when ``correctors`` is given).
        statistics, group_size: pooling of both numbers, as in ``SteinCorrector`` (idem).
        divergence, num_probes, probe_seed: Stein's estimator (the paper's: "hutchinson", 5 probes).
        substeps: Heun substeps per interval of the "trajectory" reference.
        correctors: None (default: one ``SteinCorrector`` from the arguments above, "stein_estimate" in the
            trace), or {name: corrector}: each one's unclipped gamma as "stein_estimate[name]" (ours).

    NFE: none counted (a step re-evaluation for the autograd estimators, and the trajectory reference).
    """

    def __init__(self, reference: str = "posterior", data=None, target: str = "data", statistics: str = "batch",
                 group_size: int = 16, divergence: str = "hutchinson", num_probes: int = 5, probe_seed: int = 0,
                 substeps: int = 32, correctors: dict[str, Corrector] | None = None):
        self.oracle = OracleCorrector(reference=reference, data=data, target=target, statistics=statistics,
                                      group_size=group_size, substeps=substeps)
        if correctors is None:
            self.stein = SteinCorrector(target=target, statistics=statistics, group_size=group_size,
                                        divergence=divergence, num_probes=num_probes, probe_seed=probe_seed)
            self.correctors = None
            return
        if not isinstance(correctors, dict) or not correctors:
            raise ValueError("correctors must be a non-empty dict {name: corrector}")
        for name, corrector in correctors.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"corrector names must be non-empty strings, got {name!r}")
            if not isinstance(corrector, Corrector):
                raise ValueError(f"correctors[{name!r}] is a {type(corrector).__name__}, not a steindiff Corrector")
        self.stein = None
        self.correctors = {name: unclipped(c) for name, c in correctors.items()}

    def __repr__(self) -> str:
        if self.correctors is None:
            return f"EstimatorObserver(stein={self.stein!r}, oracle={self.oracle!r})"
        return f"EstimatorObserver(correctors={self.correctors!r}, oracle={self.oracle!r})"

    @staticmethod
    def _estimate(corrector: Corrector, x: Tensor, output: StepOutput, context: StepContext) -> dict:
        """The corrector's trace numbers at x, called as the sampling loop calls it (counter paused by the caller)."""
        if corrector.differentiates(context):  # a fresh graph of the step at x (the loop's may be used or absent)
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                return corrector.correct(xg, context.step_fn(xg), context)[1]
        return corrector.correct(x.detach(), output, context)[1]

    def observe(self, x: Tensor, output: StepOutput, context: StepContext) -> dict:
        paused = context.counter.paused() if context.counter is not None else contextlib.nullcontext()
        with paused:
            oracle = float(self.oracle.gamma(x, output, context).mean())
            if self.correctors is None:
                return {"stein_estimate": self._estimate(self.stein, x, output, context)["gamma"],
                        "oracle_gamma": oracle}
            out = {estimate_key(name): self._estimate(c, x, output, context)["gamma"]
                   for name, c in self.correctors.items()}
        return {**out, "oracle_gamma": oracle}
