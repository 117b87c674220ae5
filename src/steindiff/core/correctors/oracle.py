"""The oracle corrector (ours, not the paper's): the coefficient Stein's estimate targets, computed with
knowledge no sampler has. A control: it bounds what a step-wise gamma can achieve.

The corrected output is SteinCorrector's, x_k - gamma u = (1 - gamma) x_k + gamma T(x_k) in native
coordinates, with T the next state (``target`` "state") or the data prediction ("data"); only gamma's
source differs. Two kinds of truth (``reference``):

- "posterior": the Rao-Blackwellised MSE-optimal coefficient. gamma minimises E|x_k - gamma u - x_star|^2,
  gamma* = E<u, x_k - x_star> / E|u|^2; conditioning on x_k replaces x_star by E[x_star | x_k], so

      gamma* = E<u, x_native - D_true(x)> / E|u|^2,

  the numerator Stein's identity estimates without x_star (see ``stein``), here with D_true the exact
  posterior mean of the known data law (a ``GaussianMixture``, always with its exact, knob-free
  denoiser). D_true is evaluated outside the run's denoiser: no sampler NFE. For Euler with an exact
  denoiser and target "data", u = x - D = x - D_true and gamma* = 1 at every state, on or off the marginal.
- "trajectory": the target is a high-accuracy solution x_ref of the same PF-ODE from the same initial
  state (the batch's state at step 0), integrated alongside the run with ``substeps`` Heun substeps per
  grid interval (EDM rho = 7 spacing inside each interval; the step to sigma = 0 is D(x, sigma)), in
  float64 by the run's own (unscaled, see ``steindiff.core.epsilon_scaling``) denoiser with the NFE
  counter paused. The next state x_next(gamma) is affine in gamma under both readings, so the gamma
  minimising |x_next(gamma) - x_ref(sigma_next)|^2 is <b, x_ref - a> / |b|^2 with a = x_next(0),
  b = x_next(1) - x_next(0). It works on any model (cost: 2 ``substeps`` evaluations per step, uncounted).

``statistics`` pools numerator and denominator as Stein's does: over the batch ("batch"), per sample, or
per seed-aligned group. ``gamma_min`` / ``gamma_max``, ``sigma_window``, ``correct_first`` /
``correct_last`` and non-finite fallbacks (gamma = 1) behave as in ``SteinCorrector``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..epsilon_scaling import unscaled
from ..mixture import GaussianMixture, mixture_preset
from ..solvers.base import StepOutput
from .base import StepContext
from .stein import SteinCorrector
from .stein_statistics import _group_means

__all__ = ["OracleCorrector", "REFERENCES", "reference_step"]

REFERENCES = ("posterior", "trajectory")


def reference_step(denoiser, x: Tensor, sigma: float, sigma_next: float, substeps: int,
                   labels: Tensor | None = None, rho: float = 7.0) -> Tensor:
    """x at ``sigma`` carried to ``sigma_next`` along the PF-ODE dx/dsigma = (x - D(x, sigma)) / sigma with
    ``substeps`` Heun steps (EDM rho spacing inside the interval; a step to sigma = 0 is D(x, sigma))."""
    a, b = sigma ** (1 / rho), sigma_next ** (1 / rho)
    levels = [(a + (b - a) * i / substeps) ** rho for i in range(substeps + 1)]
    levels[0], levels[-1] = sigma, sigma_next
    for s, s_next in zip(levels[:-1], levels[1:]):
        d = denoiser(x, torch.full((len(x),), s, dtype=x.dtype, device=x.device), labels)
        r = s_next / s
        x_euler = r * x + (1 - r) * d
        if s_next == 0:
            x = x_euler
            continue
        d_next = denoiser(x_euler, torch.full((len(x),), s_next, dtype=x.dtype, device=x.device), labels)
        x = r * x + (1 - r) * 0.5 * (d + d_next)  # Heun: the mean of the two slopes, in data-prediction form
    return x


def _exact_law(data) -> GaussianMixture:
    """The known data law: a preset name or a GaussianMixture, always with the exact (knob-free) denoiser."""
    if isinstance(data, str):
        return mixture_preset(data)
    if not isinstance(data, GaussianMixture):
        raise ValueError(f"data must be a GaussianMixture or a mixture preset name, got {type(data).__name__}")
    return data if data.is_exact else data.with_knobs(residual_scale=1.0, temperature=1.0, sigma_scale=1.0)


class OracleCorrector(SteinCorrector):
    """The oracle gamma (module docstring): Stein's objective with the truth known.

    Args:
        reference: "posterior" (needs ``data``) or "trajectory" (any model).
        data: the data law for "posterior": a ``GaussianMixture`` (its knobs are ignored) or a preset name.
        target, statistics, group_size, gamma_min, gamma_max, sigma_window, correct_first, correct_last:
            as in ``SteinCorrector``.
        substeps: Heun substeps per grid interval of the "trajectory" reference.

    NFE: none counted (D_true is not the run's denoiser; the reference runs with the counter paused).
    """

    name = "oracle"
    requires_grad = False  # nothing is differentiated

    def __init__(self, reference: str = "posterior", data=None, target: str = "data", statistics: str = "batch",
                 group_size: int = 16, gamma_min: float | None = None, gamma_max: float | None = None,
                 sigma_window: tuple[float, float] | None = None, correct_first: bool = True,
                 correct_last: bool = True, substeps: int = 32):
        super().__init__(target=target, statistics=statistics, group_size=group_size, gamma_min=gamma_min,
                         gamma_max=gamma_max, sigma_window=sigma_window, correct_first=correct_first,
                         correct_last=correct_last)
        if reference not in REFERENCES:
            raise ValueError(f"unknown reference {reference!r}; accepted: {', '.join(REFERENCES)}")
        if reference == "posterior" and data is None:
            raise ValueError("reference 'posterior' needs the data law (data=a GaussianMixture or preset name); "
                             "on any other model use reference='trajectory'")
        if isinstance(substeps, bool) or int(substeps) != substeps or substeps < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {substeps!r}")
        self.reference, self.substeps = reference, int(substeps)
        self.data = None if data is None else _exact_law(data)
        self._ref: tuple[float, Tensor] | None = None  # (sigma, x_ref) of the trajectory reference

    def __repr__(self) -> str:
        keys = ("reference", "target", "statistics", "group_size", "gamma_min", "gamma_max", "sigma_window",
                "correct_first", "correct_last", "substeps")
        return f"OracleCorrector({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"

    def correct(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        r = context.sigma_next / context.sigma
        info = {"gamma": 1.0, "corrected": 0.0, "inv_one_minus_r": 1.0 / (1.0 - r), "fallback": 0.0,
                "clipped": 0.0}
        x = x.detach()
        x_ref = self._advance_reference(x, context) if self.reference == "trajectory" else None
        if not self.active(context):
            return output.x_next.detach(), info
        if x_ref is None:
            num, den = self._posterior_terms(x, output, context)
        else:
            num, den = self._trajectory_terms(x, output, context, x_ref)
        gamma_rows, s_num, s_den = self._pool(num, den, context)
        gamma_rows, fallback, clipped = self._safeguard(gamma_rows)
        info.update({"gamma": float(gamma_rows.mean()), "gamma_min_row": float(gamma_rows.min()),
                     "gamma_max_row": float(gamma_rows.max()), "corrected": 1.0, "s_num": float(s_num.mean()),
                     "s_uu": float(s_den.mean()), "fallback": float(fallback), "clipped": float(clipped)})
        return self._apply(x, output, gamma_rows, context), info

    def gamma(self, x: Tensor, output: StepOutput, context: StepContext) -> Tensor:
        """(B,) the oracle gamma of each row at this step, unclipped (trajectory: advances the reference)."""
        x = x.detach()
        if self.reference == "trajectory":
            return self._pool(*self._trajectory_terms(x, output, context, self._advance_reference(x, context)),
                              context)[0]
        return self._pool(*self._posterior_terms(x, output, context), context)[0]

    # ---- the two truths -----------------------------------------------------------------
    def _posterior_terms(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, Tensor]:
        """Per row <u, x_native - D_true(x)> and |u|^2."""
        u, x_native = self._residual(x, self._target(output).detach(), context)
        data = self.data.to(x.device)
        with torch.no_grad():
            d_true = data(x.flatten(1), torch.full((len(x),), context.sigma, dtype=x.dtype, device=x.device))
        num = (u.flatten(1) * (x_native.flatten(1) - d_true)).sum(1)
        return num, u.flatten(1).pow(2).sum(1)

    def _trajectory_terms(self, x: Tensor, output: StepOutput, context: StepContext,
                          x_ref: Tensor) -> tuple[Tensor, Tensor]:
        """Per row <b, x_ref - a> and |b|^2 with x_next(gamma) = a + gamma b (float64)."""
        zeros = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        a = self._apply(x, output, zeros, context).double().flatten(1)
        b = self._apply(x, output, zeros + 1, context).double().flatten(1) - a
        return (b * (x_ref.flatten(1) - a)).sum(1), b.pow(2).sum(1)

    def _advance_reference(self, x: Tensor, context: StepContext) -> Tensor:
        """The reference at sigma_next: started from x at step 0, carried one interval per step."""
        if context.index == 0:
            self._ref = (context.sigma, x.double())
        if self._ref is None or not math.isclose(self._ref[0], context.sigma, rel_tol=1e-12) \
                or len(self._ref[1]) != len(x):
            raise ValueError("the trajectory oracle must see every step of a batch from its first")
        if context.counter is None:
            raise ValueError("the trajectory oracle needs the run's denoiser (context.counter)")
        labels = None if context.labels is None else context.labels.double()
        with context.counter.paused(), torch.no_grad():
            x_ref = reference_step(unscaled(context.counter.inner), self._ref[1], context.sigma,
                                   context.sigma_next, self.substeps, labels)
        self._ref = (context.sigma_next, x_ref)
        return x_ref

    def _pool(self, num: Tensor, den: Tensor, context: StepContext) -> tuple[Tensor, Tensor, Tensor]:
        """(gamma per row, numerator and denominator per sample/group/batch) pooled as ``statistics`` says."""
        if self.statistics == "sample":
            return num / den, num, den
        groups = (torch.zeros(len(num), dtype=torch.int64, device=num.device) if self.statistics == "batch"
                  else self._groups(context).to(num.device))
        index, (s_num, s_den) = _group_means(groups, num, den)
        return (s_num / s_den)[index], s_num, s_den
