"""Per-step estimator diagnostics (ours): Stein's estimate of gamma beside the oracle gamma at the same states.

``EstimatorObserver`` computes, at every step and on the run's own states (corrected or not), the gamma a
``SteinCorrector`` would estimate there ("stein_estimate" in the trace) and the gamma an ``OracleCorrector``
knows ("oracle_gamma"), both unclipped and with the same reading and statistics, so a user sees where and
how far the estimate departs from what it estimates. It changes neither the samples nor the counted NFE:
its step evaluations run with the counter paused, and it returns numbers only. Defaults are the paper's
estimator (Hutchinson, 5 probes, batch statistics) under the data reading.

With the same probe seed and settings, "stein_estimate" equals a SteinCorrector's "gamma" at the same state
(same per-seed probes), and "oracle_gamma" an OracleCorrector's.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .correctors.base import StepContext
from .correctors.oracle import OracleCorrector
from .correctors.stein import SteinCorrector
from .observers import Observer
from .solvers.base import StepOutput

__all__ = ["EstimatorObserver"]


class EstimatorObserver(Observer):
    """Stein's estimate and the oracle gamma at each step's state (module docstring).

    Args:
        reference: the oracle's truth, "posterior" (needs ``data``) or "trajectory".
        data: the data law of the "posterior" oracle (a ``GaussianMixture`` or a preset name).
        target: "data" (default) or "state", for both numbers.
        statistics, group_size: pooling of both numbers, as in ``SteinCorrector``.
        divergence, num_probes, probe_seed: Stein's estimator (the paper's: "hutchinson", 5 probes).
        substeps: Heun substeps per interval of the "trajectory" reference.

    NFE: none counted (a step re-evaluation for the autograd estimators, and the trajectory reference).
    """

    def __init__(self, reference: str = "posterior", data=None, target: str = "data", statistics: str = "batch",
                 group_size: int = 16, divergence: str = "hutchinson", num_probes: int = 5, probe_seed: int = 0,
                 substeps: int = 32):
        self.stein = SteinCorrector(target=target, statistics=statistics, group_size=group_size,
                                    divergence=divergence, num_probes=num_probes, probe_seed=probe_seed)
        self.oracle = OracleCorrector(reference=reference, data=data, target=target, statistics=statistics,
                                      group_size=group_size, substeps=substeps)

    def __repr__(self) -> str:
        return f"EstimatorObserver(stein={self.stein!r}, oracle={self.oracle!r})"

    def observe(self, x: Tensor, output: StepOutput, context: StepContext) -> dict:
        paused = context.counter.paused() if context.counter is not None else contextlib.nullcontext()
        with paused:
            oracle = self.oracle.gamma(x, output, context)
            if self.stein.requires_grad:  # a fresh graph of the step at x (the loop's may be used or absent)
                with torch.enable_grad():
                    xg = x.detach().requires_grad_(True)
                    _, info = self.stein.correct(xg, context.step_fn(xg), context)
            else:
                _, info = self.stein.correct(x.detach(), output, context)
        return {"stein_estimate": info["gamma"], "oracle_gamma": float(oracle.mean())}
