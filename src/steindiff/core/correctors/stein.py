"""The SteinDiff corrector (Li & Zeng, ICML 2026, Theorem 4.7 and Algorithm 1).

At step k the solver proposes T(x_k); the residual is u = x_k - T(x_k) and the corrected output is
x_k - gamma u = (1 - gamma) x_k + gamma T(x_k) (gamma = 1: the uncorrected solver). gamma minimises
E|x_k - gamma u - x_star|^2; with x_k = alpha x_star + sigma eps, Gaussian Stein's identity
E<v(x), eps> = sigma E[div v] removes the unknown x_star:

    gamma = [ (1 - 1/alpha) E<u, x_k> + (sigma^2 / alpha) E[div u] ] / E|u|^2,    div u = d - div T,

in the process's native coordinates (alpha = 1, sigma = EDM sigma for VE; the sampling loop works
in EDM coordinates and this module converts). Expectations are sample means (``stein_statistics``).

Switches for what the paper leaves open (defaults marked; "paper" = the paper's choice):

- ``target``: "state" (paper, literal: T = the solver's next state) or "data" (ours: T = the
  solver's data prediction; the step then proceeds as x_next = r x + (1 - r) D_corrected).
  With an exact denoiser on the true marginal, "data" gives gamma = 1 and "state" gives
  gamma = 1 / (1 - r) (a jump to the posterior mean); see ../shared/method.md.
- ``statistics``: "batch" (paper: one gamma per step from the whole batch; couples samples, so
  results depend on batch size and device count), "sample" (one gamma per sample), "group"
  (one gamma per fixed group of ``group_size`` consecutive seeds, seed // group_size: independent
  of batch size and device count whenever batches hold whole groups).
- ``subset``: statistics from the first ``subset`` rows of each batch (or group) only; every row is
  still corrected. The step is re-evaluated on those rows with autograd (one extra denoiser call on
  ``subset`` rows per step) instead of differentiating the whole batch.
- ``subset_moments`` (ours): "subset" (default: E<u, x>, E|u|^2 and E[div u] all from the subset rows)
  or "all" (E<u, x> and E|u|^2 from every row, which the step has computed anyway; only E[div u], the
  costly term, from the subset). Measured on the digits U-Net and the mixture, "all" cuts the error of
  a small subset's gamma 10-100x (benchmarks/stein_moonshot.py): |u|^2 varies much more from row to
  row than div u does.
- ``gamma_min`` (paper: a lower clip, value unpublished), ``gamma_max`` (ours), ``sigma_window``
  (ours: outside [lo, hi] gamma = 1), ``correct_first`` / ``correct_last`` (whether the first and
  last steps are corrected).
- ``divergence``: "hutchinson" (paper, Gaussian probes, ``num_probes`` = 5 in the paper),
  "rademacher", "jvp", "finite_difference" (step ``fd_eps`` * sigma), "exact"
  (``steindiff.core.divergence``).

Options of issue 16 (all "ours"; each default is the behaviour before they existed):

- ``history``: "hold" (the paper's: a multistep solver's history, its earlier data predictions D_j, is held
  constant when differentiating), "flow" or "flow_heun" (ours: each history entry a differentiable function of
  x_k through the back-flow); see ``stein_history``.
- ``exact_terms``: take out of the Hutchinson estimate the terms whose divergence is known. Target "state":
  T = r x + (1 - r) P with P the step's data prediction (every solver satisfies this), so div T = r d +
  (1 - r) div P and only div P is estimated with probes. Target "data": T = P has no known term (the
  option changes nothing; a denoiser exposing an exact skip term would be needed).
- ``probes``: the probe kind of the stochastic estimators: "gaussian" (the paper's), "rademacher" or
  "orthogonal" (ours: each sample's probes orthogonalised and rescaled to norm sqrt(d); still per-seed).
  None (default): the divergence's own kind (Gaussian; Rademacher for divergence "rademacher").
- ``shrinkage``: gamma shrunk toward 1 by its own standard error, gamma <- 1 + (gamma - 1) max(0, 1 -
  se^2 / (gamma - 1)^2), with se the delta-method standard error of the ratio of means over the rows of
  the batch (statistics "batch") or of each group ("group"); with ``subset``, the subset rows. The
  step's info records the mean "gamma_se" (and "gamma_unshrunk"). Not for statistics "sample".
- ``smoothing``: s in [0, 1): exponential smoothing of gamma across the corrected steps of one batch's run,
  gamma_k <- s gamma_{k-1} + (1 - s) gamma_k (per row, before the clip), restarted at step index 0 and
  whenever the step index does not increase or the batch size changes (one instance serves many batches).

Non-finite or degenerate statistics (E|u|^2 = 0, NaN, Inf) fall back to gamma = 1 for that step
(or sample/group) and are counted in the trace; they never crash or poison the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..divergence import (
    PROBE_KINDS,
    exact_divergence,
    finite_difference_divergence,
    jvp_divergence,
    make_probes,
    seeded_probes,
    vjp_divergence,
)
from ..solvers.base import StepOutput, transport
from .base import Corrector, StepContext
from .stein_history import HISTORIES, check_history, flow_output
from .stein_statistics import ratio_standard_error, shrink_gamma, stein_gamma

__all__ = ["SteinCorrector", "stein_gamma", "shrink_gamma", "ratio_standard_error", "TARGETS", "STATISTICS",
           "SUBSET_MOMENTS", "HISTORIES"]

TARGETS = ("state", "data")
STATISTICS = ("batch", "sample", "group")
SUBSET_MOMENTS = ("subset", "all")
_AUTOGRAD = ("hutchinson", "rademacher", "exact")
_ESTIMATORS = _AUTOGRAD + ("jvp", "finite_difference")


def _check_issue16_options(divergence: str, statistics: str, history: str, exact_terms, probes, shrinkage,
                           smoothing) -> None:
    """One-line ValueErrors for the options of issue 16 (``history``, ``exact_terms``, ``probes``, ``shrinkage``,
    ``smoothing``)."""
    check_history(history, divergence, _AUTOGRAD)
    if not isinstance(exact_terms, bool):
        raise ValueError(f"exact_terms must be true or false, got {exact_terms!r}")
    if probes is not None and probes not in PROBE_KINDS:
        raise ValueError(f"unknown probes {probes!r}; accepted: {', '.join(PROBE_KINDS)}")
    if divergence == "rademacher" and probes not in (None, "rademacher"):
        raise ValueError(f"divergence 'rademacher' uses Rademacher probes, not {probes!r}")
    if not isinstance(shrinkage, bool):
        raise ValueError(f"shrinkage must be true or false, got {shrinkage!r}")
    if shrinkage and statistics == "sample":
        raise ValueError("shrinkage needs statistics 'batch' or 'group' (a standard error over rows), not 'sample'")
    if isinstance(smoothing, bool) or not isinstance(smoothing, int | float) or not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")


class SteinCorrector(Corrector):
    """The SteinDiff corrector: x_next from (1 - gamma) x + gamma T(x), gamma from Stein's identity.

    Args:
        target: "state" (the paper's: T is the next state) or "data" (ours: T is the data prediction).
        statistics: "batch" (the paper's), "sample" or "group" (seed-aligned groups of ``group_size``).
        group_size: seeds per group for statistics "group".
        subset: statistics from the first ``subset`` rows of each batch or group (None: all rows).
        subset_moments: with ``subset``, where E<u, x> and E|u|^2 come from: "subset" or "all" rows (ours).
        divergence: "hutchinson" (the paper's), "rademacher", "jvp", "finite_difference" or "exact".
        num_probes: probes of the stochastic estimators (the paper: 5).
        fd_eps: finite-difference step, relative to sigma.
        gamma_min, gamma_max: clip of gamma (None: no clip); the paper clips from below only.
        sigma_window: (lo, hi): correct only where lo <= sigma <= hi (None: everywhere).
        correct_first, correct_last: whether the first and the last step are corrected.
        probe_seed: salt of the per-seed probes.
        history: "hold" (the paper's), "flow" or "flow_heun" (ours): see ``stein_history``.
        exact_terms: estimate with probes only the part of div T not known exactly (ours; target "state").
        probes: None (the divergence's own kind), "gaussian" (the paper's), "rademacher" or "orthogonal" (ours).
        shrinkage: shrink gamma toward 1 by its delta-method standard error (ours; batch or group statistics).
        smoothing: exponential smoothing weight of gamma across a batch's steps, in [0, 1) (ours; 0: none).
        batched_vjp: the Hutchinson VJPs of all probes in one batched backward call (torch's vmap) instead
            of one call per probe; the same numbers to float rounding. Off by default: on CPU the loop was
            measured at the floor's time and memory, the batched call at up to 1.4x its time and 1.8x its
            memory (vmap falls back to a loop for convolution and group-norm backward, then concatenates;
            benchmarks/stein_floor.py).

    NFE: none extra with the autograd estimators on all rows (the step's own evaluation carries the
    graph; the backward passes are the cost); ``subset`` adds one call on the subset rows per step,
    "jvp" and "finite_difference" add ``num_probes`` step evaluations per step, counted by the loop;
    ``history="flow"`` adds one call per history entry the step uses, "flow_heun" two (``stein_history``).
    """

    name = "stein"

    def __init__(self, target: str = "data", statistics: str = "batch", group_size: int = 16,
                 subset: int | None = None, divergence: str = "hutchinson", num_probes: int = 5,
                 fd_eps: float = 1e-3, gamma_min: float | None = None, gamma_max: float | None = None,
                 sigma_window: tuple[float, float] | None = None, correct_first: bool = True,
                 correct_last: bool = True, probe_seed: int = 0, batched_vjp: bool = False,
                 subset_moments: str = "subset", history: str = "hold", exact_terms: bool = False,
                 probes: str | None = None, shrinkage: bool = False, smoothing: float = 0.0):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; accepted: {', '.join(TARGETS)}")
        if statistics not in STATISTICS:
            raise ValueError(f"unknown statistics {statistics!r}; accepted: {', '.join(STATISTICS)}")
        if divergence not in _ESTIMATORS:
            raise ValueError(f"unknown divergence {divergence!r}; accepted: {', '.join(_ESTIMATORS)}")
        if int(num_probes) != num_probes or num_probes < 1:
            raise ValueError(f"num_probes must be an integer >= 1, got {num_probes!r}")
        if int(group_size) != group_size or group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
        if subset is not None and (int(subset) != subset or subset < 1):
            raise ValueError(f"subset must be None or an integer >= 1, got {subset!r}")
        if subset is not None and statistics == "sample":
            raise ValueError("subset statistics need statistics 'batch' or 'group', not 'sample'")
        if subset_moments not in SUBSET_MOMENTS:
            raise ValueError(f"unknown subset_moments {subset_moments!r}; accepted: {', '.join(SUBSET_MOMENTS)}")
        if gamma_min is not None and gamma_max is not None and gamma_min > gamma_max:
            raise ValueError(f"gamma_min ({gamma_min}) must not exceed gamma_max ({gamma_max})")
        if sigma_window is not None:
            lo, hi = sigma_window
            if not 0 <= lo <= hi:
                raise ValueError(f"sigma_window must be (lo, hi) with 0 <= lo <= hi, got {sigma_window!r}")
        if fd_eps <= 0:
            raise ValueError(f"fd_eps must be > 0, got {fd_eps}")
        _check_issue16_options(divergence, statistics, history, exact_terms, probes, shrinkage, smoothing)
        self.target, self.statistics, self.group_size = target, statistics, int(group_size)
        self.subset = None if subset is None else int(subset)
        self.divergence, self.num_probes, self.fd_eps = divergence, int(num_probes), float(fd_eps)
        self.gamma_min, self.gamma_max = gamma_min, gamma_max
        self.sigma_window = None if sigma_window is None else (float(sigma_window[0]), float(sigma_window[1]))
        self.correct_first, self.correct_last = bool(correct_first), bool(correct_last)
        self.probe_seed = int(probe_seed)
        self.batched_vjp = bool(batched_vjp)
        self.subset_moments = subset_moments
        self.history, self.exact_terms, self.probes = history, exact_terms, probes
        self.shrinkage, self.smoothing = shrinkage, float(smoothing)
        self._smoothed: tuple[int, Tensor] | None = None  # (step index, smoothed gamma per row) of the batch

    @property
    def requires_grad(self) -> bool:  # differentiate the loop's own step (no extra NFE)
        return self.divergence in _AUTOGRAD and self.subset is None

    def __repr__(self) -> str:
        return f"SteinCorrector({', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))})"

    # ---- which steps --------------------------------------------------------------------
    def differentiates(self, context: StepContext) -> bool:  # no graph for the steps left uncorrected
        return self.requires_grad and self.active(context)

    def active(self, context: StepContext) -> bool:
        if context.index == 0 and not self.correct_first:
            return False
        if context.index == context.num_steps - 1 and not self.correct_last:
            return False
        if self.sigma_window is not None:
            lo, hi = self.sigma_window
            return lo <= context.sigma <= hi
        return True

    # ---- pieces -------------------------------------------------------------------------
    def _target(self, out: StepOutput) -> Tensor:
        return out.x_next if self.target == "state" else out.data_prediction

    def _probed(self, out: StepOutput) -> Tensor:
        """What the probes differentiate: T, or with ``exact_terms`` and target "state" its unknown part P."""
        return out.data_prediction if self.exact_terms and self.target == "state" else self._target(out)

    def _known_part(self, div: Tensor, err: Tensor, x: Tensor, context: StepContext) -> tuple[Tensor, Tensor]:
        """div T from the probed div P (``exact_terms``, target "state"): r d + (1 - r) div P."""
        if not (self.exact_terms and self.target == "state"):
            return div, err
        r = context.sigma_next / context.sigma
        return r * x[0].numel() + (1 - r) * div, (1 - r) * err

    def _probes(self, x: Tensor, context: StepContext) -> Tensor:
        kind = self.probes or ("rademacher" if self.divergence == "rademacher" else "gaussian")
        if context.seeds is None:  # one generator for the batch
            g = torch.Generator().manual_seed(self.probe_seed * 1_000_003 + context.index)
            return make_probes(self.num_probes, x, kind, g)
        # per-seed probes: independent of batch size, position and device count
        return seeded_probes(context.seeds, context.index, self.num_probes, x.shape[1:], kind, self.probe_seed,
                             dtype=x.dtype, device=x.device)

    def _divergence_of_target(self, x: Tensor, out: StepOutput, context: StepContext,
                              rows: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(x_rows, T(x_rows), div_x T, standard error) for the rows used in the statistics."""
        if rows is not None:  # re-evaluate the step on the subset, with autograd
            x_rows = x.detach()[rows]
            sub_context = StepContext(**{**vars(context), "seeds": None if context.seeds is None
                                         else context.seeds[rows]})
            with torch.enable_grad():
                x_rows = x_rows.requires_grad_(True)
                out_rows = context.step_fn(x_rows, rows)
                if self.history != "hold":
                    out_rows = flow_output(x_rows, out_rows, context, rows, self.history)
            t_rows, p_rows = self._target(out_rows), self._probed(out_rows)
            probes = self._probes(x_rows, sub_context)
            div, err = self._estimate(x_rows, p_rows, probes, lambda z: self._probed(context.step_fn(z, rows)),
                                      context.sigma)
            return x_rows, t_rows, *self._known_part(div, err, x_rows, context)
        if self.history != "hold":
            with torch.enable_grad():
                out = flow_output(x, out, context, None, self.history)
        t, p = self._target(out), self._probed(out)
        probes = self._probes(x, context)
        div, err = self._estimate(x, p, probes, lambda z: self._probed(context.step_fn(z)), context.sigma)
        return x, t, *self._known_part(div, err, x, context)

    def _estimate(self, x: Tensor, t: Tensor, probes: Tensor, f, sigma: float) -> tuple[Tensor, Tensor]:
        if self.divergence in ("hutchinson", "rademacher"):
            with torch.enable_grad():
                return vjp_divergence(t, x, probes, batched=self.batched_vjp)
        if self.divergence == "exact":
            with torch.enable_grad():
                return exact_divergence(t, x)
        if self.divergence == "jvp":
            return jvp_divergence(f, x, probes)
        return finite_difference_divergence(f, x, t, probes, eps=self.fd_eps * sigma)

    # ---- the correction -----------------------------------------------------------------
    def correct(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        r = context.sigma_next / context.sigma
        info = {"gamma": 1.0, "corrected": 0.0, "inv_one_minus_r": 1.0 / (1.0 - r), "fallback": 0.0,
                "clipped": 0.0}
        if context.index == 0:
            self._smoothed = None  # a new batch: smoothing restarts
        if not self.active(context):
            return output.x_next.detach(), info
        rows = None
        if self.subset is not None:
            rows = self._subset_rows(x, context)
        x_s, t_s, div_t, div_err = self._divergence_of_target(x, output, context, rows)
        every_row = None
        if rows is not None and self.subset_moments == "all":  # ours: E<u, x>, E|u|^2 from every row
            every_row = (x.detach(), self._target(output).detach())
        gamma_rows, stats = self._gamma(x_s.detach(), t_s.detach(), div_t, context, rows, len(x), every_row)
        extra = {}
        if self.shrinkage or self.smoothing:
            gamma_rows, extra = self._shrink_and_smooth(gamma_rows, stats, context)
        gamma_rows, fallback, clipped = self._safeguard(gamma_rows)
        fallback += extra.pop("fallback", 0)
        x_next = self._apply(x.detach(), output, gamma_rows, context)
        info.update({
            "gamma": float(gamma_rows.mean()), "gamma_min_row": float(gamma_rows.min()),
            "gamma_max_row": float(gamma_rows.max()), "corrected": 1.0,
            "s_xu": float(stats["s_xu"].mean()), "s_uu": float(stats["s_uu"].mean()),
            "s_div": float(stats["s_div"].mean()), "probe_spread": float(div_err.mean()),
            "fallback": float(fallback), "clipped": float(clipped), **extra,
        })
        return x_next, info

    def _shrink_and_smooth(self, gamma: Tensor, stats: dict, context: StepContext) -> tuple[Tensor, dict]:
        """Shrinkage toward 1 by the standard error, then smoothing across steps (both ours; before the clip)."""
        extra = {}
        if self.shrinkage:
            extra["gamma_unshrunk"] = float(gamma.mean())
            extra["gamma_se"] = float(stats["se_rows"].mean())
            gamma = shrink_gamma(gamma, stats["se_rows"])
        if self.smoothing:
            bad = ~torch.isfinite(gamma)
            extra["fallback"] = int(bad.sum())  # non-finite rows fall back to 1 before they are smoothed
            gamma = torch.where(bad, torch.ones_like(gamma), gamma)
            extra["gamma_unsmoothed"] = float(gamma.mean())
            previous = self._smoothed
            if (previous is not None and context.index > 0 and previous[0] < context.index
                    and previous[1].shape == gamma.shape):
                gamma = self.smoothing * previous[1].to(gamma) + (1 - self.smoothing) * gamma
            self._smoothed = (context.index, gamma.detach().clone())
        return gamma, extra

    def _subset_rows(self, x: Tensor, context: StepContext) -> Tensor:
        if self.statistics == "batch":
            return torch.arange(min(self.subset, len(x)), device=x.device)
        groups = self._groups(context).to(x.device)
        keep = []
        for g in torch.unique(groups).tolist():
            keep.append(torch.nonzero(groups == g).flatten()[: self.subset])
        return torch.cat(keep)

    def _groups(self, context: StepContext) -> Tensor:
        if context.seeds is None:
            raise ValueError("statistics 'group' needs the seeds of the batch (use steindiff.core.sample)")
        return context.seeds // self.group_size

    def _residual(self, x: Tensor, t: Tensor, context: StepContext) -> tuple[Tensor, Tensor]:
        """(u, x) in the process's native coordinates."""
        x_native = context.alpha * x
        t_native = context.alpha_next * t if self.target == "state" else t
        return x_native - t_native, x_native

    def _gamma(self, x: Tensor, t: Tensor, div_t: Tensor, context: StepContext, rows: Tensor | None,
               batch: int, every_row: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, dict]:
        alpha = context.alpha
        u, x_native = self._residual(x, t, context)
        div_native = (context.alpha_next / alpha) * div_t if self.target == "state" else div_t / alpha
        div_u = x[0].numel() - div_native
        sigma_native = alpha * context.sigma
        if self.statistics == "sample":
            stats = stein_gamma(u, x_native, div_u, alpha, sigma_native, None)
            return stats["gamma"], stats
        all_groups = (torch.zeros(batch, dtype=torch.int64, device=x.device) if self.statistics == "batch"
                      else self._groups(context).to(x.device))  # (batch,)
        groups = all_groups if rows is None else all_groups[rows]
        moments = None if every_row is None else (*self._residual(*every_row, context), all_groups)
        stats = stein_gamma(u, x_native, div_u, alpha, sigma_native, groups, moments)
        if self.shrinkage:  # ours: the ratio's delta-method standard error over the rows used
            num_rows = (1.0 - 1.0 / alpha) * (u * x_native).flatten(1).sum(1) + (sigma_native**2 / alpha) * div_u
            stats["se"] = ratio_standard_error(num_rows, u.flatten(1).pow(2).sum(1), groups, stats["gamma"])
        if self.statistics == "batch":
            if "se" in stats:
                stats["se_rows"] = stats["se"][0].expand(batch).clone()
            return stats["gamma"][0].expand(batch).clone(), stats
        used = torch.unique(groups)
        # each row of the batch gets its group's gamma (every group has statistics rows)
        position = torch.searchsorted(used, all_groups)
        if "se" in stats:
            stats["se_rows"] = stats["se"][position]
        return stats["gamma"][position], stats

    def _safeguard(self, gamma: Tensor) -> tuple[Tensor, int, int]:
        bad = ~torch.isfinite(gamma)
        fallback = int(bad.sum())
        gamma = torch.where(bad, torch.ones_like(gamma), gamma)
        clipped = 0
        if self.gamma_min is not None:
            clipped += int((gamma < self.gamma_min).sum())
            gamma = gamma.clamp_min(self.gamma_min)
        if self.gamma_max is not None:
            clipped += int((gamma > self.gamma_max).sum())
            gamma = gamma.clamp_max(self.gamma_max)
        return gamma, fallback, clipped

    def _apply(self, x: Tensor, output: StepOutput, gamma: Tensor, context: StepContext) -> Tensor:
        g = gamma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        x_native = context.alpha * x
        if self.target == "state":
            t_native = context.alpha_next * output.x_next.detach()
            corrected = (1 - g) * x_native + g * t_native
            return corrected / context.alpha_next if context.alpha_next > 0 else corrected
        d_corrected = (1 - g) * x_native + g * output.data_prediction.detach()
        return transport(x, context.sigma, context.sigma_next, d_corrected)

