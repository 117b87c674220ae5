"""The re-noised Stein estimate (ours, not the paper's; issue 16).

Gaussian Stein's identity, E<v(x), x - alpha x_star> = sigma^2 E[div v(x)], needs x = alpha x_star + sigma eps
with eps independent of x_star. The sampler's states at small sigma are far from that (a few large steps put them
off the forward marginal), and there the paper's estimate departs from the gamma it estimates
(../shared/findings.md). This corrector computes the Stein statistics on states that satisfy the identity by
construction: around an anchor a (D(x, sigma) by default, or the step's data prediction) it draws

    x~ = alpha (a + sigma eps~)   (native coordinates; in the loop's EDM coordinates x~ = a + sigma eps~),

evaluates the same step at x~ (``context.step_fn``, the solver history held constant) and puts (u(x~), x~,
div u(x~)) into Theorem 4.7's formula with the same reading (``target``), statistics and clip switches as
``SteinCorrector``. The gamma so found is applied to the actual state's output: x - gamma u(x) (SteinCorrector's
``_apply``). The loop's own step needs no graph.

What it estimates, exactly. Given the anchor, eps~ is independent of it, so the conditional identity
E<v(x~), x~ - alpha a> = sigma^2 E[div v(x~)] holds for every anchor, and the estimate is consistent for

    gamma~ = E<u(x~), x~_native - a> / E|u(x~)|^2,

the MSE-optimal coefficient for recovering the anchor from its re-noised copy. It is the oracle's gamma at the
actual state only where the two coincide. In particular the anchors are posterior means, which are not draws of
the data law (their spread is smaller by E Var(x_star | x)), so x~ is NOT on the forward marginal even with an
exact denoiser: for one Gaussian N(m, s^2) per coordinate, Euler, data reading and an on-marginal x,
gamma~ = (s^2 + sigma^2)^2 / (s^4 + s^2 sigma^2 + sigma^4) (4/3 at sigma = s) where the oracle is exactly 1
(tests/test_renoised.py). gamma~ = 1 when the anchors are data draws and the denoiser is exact. gamma~ depends on
the actual state x only through its anchor: it carries the on-marginal part of the step's error (a higher-order
step's discretisation, a miscalibrated denoiser, both relative to the anchors' law), never the displacement of x
itself off the marginal, which is what the oracle measures at x. Where the anchors leave the data's support (the
last steps of a broken trajectory), gamma~ collapses toward 0 as Stein's estimate does.

Because the anchor is known, the numerator can also be taken directly, <u(x~), x~_native - a> (``numerator``
"direct", ours): the same expectation with no divergence and no backward pass; Stein's form ("stein", default,
the issue's specification) differs from it in variance only.

Options (ours): ``renoise_from`` "denoiser" (default: D(x, sigma), the posterior mean at x: taken from the solver's
history where the step stored it (DPM-Solver++, UniPC, iPNDM) or from a one-call step without history (Euler,
Heun's last step), else one counted denoiser call per corrected step (Heun's two-call steps)) or "data_prediction"
(the StepOutput's data prediction, the estimate the data reading corrects and the step transports with; never an
extra call). The default is D(x, sigma) because the anchor stands in for x_star: the posterior mean is the best
estimate of it and does not depend on the solver, whereas a higher-order step's data prediction is an
extrapolation that leaves the data's support where the step breaks down (Heun at NFE 5 on aniso32: the re-noised
gamma of its middle step is 1.90 with D(x) and 0.51 with the data prediction, the oracle's 1.99). The measured
evidence is mixed elsewhere (DPM-Solver++(2M): the data prediction's per-step error is lower in most cells;
benchmarks/results/stein_renoised.md). ``renoise_draws`` re-noised copies per sample (default 1); ``renoise_seed``
salts eps~ (per seed, step and draw, like the probes, with a different salt).

NFE: each draw evaluates the step once at x~, counted by the loop's counter: ``renoise_draws`` x the step's NFE
per corrected step (Euler 1, Heun 2, DPM-Solver++ 1), plus ``num_probes`` step evaluations per draw for "jvp" and
"finite_difference", plus one call per corrected step for ``renoise_from`` "denoiser" where neither the history
nor a one-call step gives D(x, sigma) (Heun's two-call steps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..divergence import make_probes, seeded_probes
from ..solvers.base import StepOutput
from .base import StepContext
from .stein import SteinCorrector

__all__ = ["RenoisedSteinCorrector", "RENOISE_FROM", "NUMERATORS"]

RENOISE_FROM = ("data_prediction", "denoiser")
NUMERATORS = ("stein", "direct")
_AUTOGRAD = ("hutchinson", "rademacher", "exact")
_NOISE_SALT = 1_000_000  # eps~ salt = _NOISE_SALT + renoise_seed; the probes' salt is probe_seed (small)
_PROBE_DRAW_SALT = 7_919  # the probes of draw k use salt probe_seed + k * _PROBE_DRAW_SALT


class RenoisedSteinCorrector(SteinCorrector):
    """Stein's gamma from re-noised copies x~ = a + sigma eps~ of the anchor, applied to the actual step.

    Args:
        renoise_draws: re-noised copies per sample (each costs the step's NFE).
        renoise_from: the anchor a, "denoiser" (default: D(x, sigma)) or "data_prediction" (the step's).
        renoise_seed: salt of eps~.
        numerator: "stein" (default: sigma^2 E[div u] from ``divergence``) or "direct" (<u, x~ - a>, ours).
        **stein_options: SteinCorrector's (target, statistics, group_size, divergence, num_probes, fd_eps,
            gamma_min, gamma_max, sigma_window, correct_first, correct_last, probe_seed, ...); ``subset`` is not
            supported.

    NFE: ``renoise_draws`` x the step's NFE per corrected step, counted (module docstring).
    """

    name = "stein_renoised"
    requires_grad = False  # the loop's own step is never differentiated

    def __init__(self, renoise_draws: int = 1, renoise_from: str = "denoiser", renoise_seed: int = 0,
                 numerator: str = "stein", **stein_options):
        if stein_options.get("subset") is not None:
            raise ValueError("subset is not supported by the re-noised estimate (use renoise_draws)")
        super().__init__(**stein_options)
        if isinstance(renoise_draws, bool) or int(renoise_draws) != renoise_draws or renoise_draws < 1:
            raise ValueError(f"renoise_draws must be an integer >= 1, got {renoise_draws!r}")
        if renoise_from not in RENOISE_FROM:
            raise ValueError(f"unknown renoise_from {renoise_from!r}; accepted: {', '.join(RENOISE_FROM)}")
        if numerator not in NUMERATORS:
            raise ValueError(f"unknown numerator {numerator!r}; accepted: {', '.join(NUMERATORS)}")
        if isinstance(renoise_seed, bool) or int(renoise_seed) != renoise_seed or renoise_seed < 0:
            raise ValueError(f"renoise_seed must be an integer >= 0, got {renoise_seed!r}")
        self.renoise_draws, self.renoise_from = int(renoise_draws), renoise_from
        self.renoise_seed, self.numerator = int(renoise_seed), numerator

    def __repr__(self) -> str:
        return f"RenoisedSteinCorrector({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    # ---- pieces -------------------------------------------------------------------------
    def anchor(self, x: Tensor, output: StepOutput, context: StepContext) -> Tensor:
        """(B, ...) the anchor a in EDM (= data) coordinates."""
        if self.renoise_from == "data_prediction":
            return output.data_prediction.detach()
        history = output.state.history
        if history and abs(history[-1][0] - context.sigma) <= 1e-12 * context.sigma:
            return history[-1][1].detach()  # the solver stored D(x, sigma) of this step (multistep solvers)
        if output.nfe == 1 and not history:  # a one-call step without history: its data prediction is D(x, sigma)
            return output.data_prediction.detach()  # (Euler, Heun's last step; tests/test_renoised.py checks all)
        if context.counter is None:
            raise ValueError("renoise_from 'denoiser' needs the run's denoiser (context.counter)")
        with torch.no_grad():  # one counted denoiser call
            return context.counter(x, torch.full((len(x),), context.sigma, dtype=x.dtype, device=x.device),
                                   context.labels).detach()

    def renoise_noise(self, x: Tensor, context: StepContext) -> Tensor:
        """(renoise_draws, B, ...) eps~; row b depends only on (seed b, step, draw, renoise_seed) given the seeds."""
        salt = _NOISE_SALT + self.renoise_seed
        if context.seeds is None:
            g = torch.Generator().manual_seed(salt * 1_000_003 + context.index)
            return make_probes(self.renoise_draws, x, "gaussian", g)
        return seeded_probes(context.seeds, context.index, self.renoise_draws, x.shape[1:], "gaussian", salt,
                             dtype=x.dtype, device=x.device)

    def _draw_probes(self, x: Tensor, context: StepContext, draw: int) -> Tensor:
        kind = "rademacher" if self.divergence == "rademacher" else "gaussian"
        salt = self.probe_seed + draw * _PROBE_DRAW_SALT
        if context.seeds is None:
            g = torch.Generator().manual_seed(salt * 1_000_003 + context.index)
            return make_probes(self.num_probes, x, kind, g)
        return seeded_probes(context.seeds, context.index, self.num_probes, x.shape[1:], kind, salt,
                             dtype=x.dtype, device=x.device)

    def _draw_terms(self, x_t: Tensor, anchor: Tensor, context: StepContext,
                    draw: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per row of one draw: (numerator, |u|^2, div u, divergence standard error) at x~ = x_t (native)."""
        def target_at(z: Tensor) -> Tensor:
            return self._target(context.step_fn(z))

        alpha, d = context.alpha, x_t[0].numel()
        zeros = torch.zeros(len(x_t), dtype=x_t.dtype, device=x_t.device)
        if self.numerator == "direct":
            with torch.no_grad():
                t = target_at(x_t)
            u, x_native = self._residual(x_t, t.detach(), context)
            num = (u * (x_native - anchor)).flatten(1).sum(1)
            return num, u.flatten(1).pow(2).sum(1), zeros, zeros  # no divergence: s_div reads 0
        if self.divergence in _AUTOGRAD:
            with torch.enable_grad():
                x_g = x_t.detach().requires_grad_(True)
                t = target_at(x_g)
        else:
            x_g = x_t.detach()
            with torch.no_grad():
                t = target_at(x_g)
        probes = self._draw_probes(x_g, context, draw)
        div_t, div_err = self._estimate(x_g, t, probes, target_at, context.sigma)
        u, x_native = self._residual(x_t.detach(), t.detach(), context)
        div_native = (context.alpha_next / alpha) * div_t if self.target == "state" else div_t / alpha
        div_u = d - div_native.detach()
        sigma_native = alpha * context.sigma
        num = (1.0 - 1.0 / alpha) * (u * x_native).flatten(1).sum(1) + (sigma_native**2 / alpha) * div_u
        return num, u.flatten(1).pow(2).sum(1), div_u, div_err.detach()

    def _row_groups(self, x: Tensor, context: StepContext) -> Tensor:
        """(B,) the group id of each actual row under ``statistics``."""
        if self.statistics == "batch":
            return torch.zeros(len(x), dtype=torch.int64, device=x.device)
        if self.statistics == "sample":
            return torch.arange(len(x), device=x.device)
        return self._groups(context).to(x.device)

    def renoised_gamma(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        """(B,) the unclipped re-noised gamma of each actual row, and the pooled statistics."""
        x = x.detach()
        anchor = self.anchor(x, output, context)
        noise = self.renoise_noise(x, context)
        terms = [self._draw_terms(anchor + context.sigma * noise[k], anchor, context, k)
                 for k in range(self.renoise_draws)]
        num, den, div_u, div_err = (torch.cat(parts) for parts in zip(*terms))
        inverse = torch.unique(self._row_groups(x, context), return_inverse=True)[1]
        rows = inverse.repeat(self.renoise_draws)
        n = int(inverse.max()) + 1
        s_num = torch.zeros(n, dtype=num.dtype, device=num.device).index_add_(0, rows, num)
        s_den = torch.zeros(n, dtype=den.dtype, device=den.device).index_add_(0, rows, den)
        gamma = (s_num / s_den)[inverse]
        stats = {"s_num": float(num.mean()), "s_uu": float(den.mean()), "s_div": float(div_u.mean()),
                 "probe_spread": float(div_err.mean())}
        return gamma, stats

    # ---- the correction -----------------------------------------------------------------
    def correct(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        r = context.sigma_next / context.sigma
        info = {"gamma": 1.0, "corrected": 0.0, "inv_one_minus_r": 1.0 / (1.0 - r), "fallback": 0.0,
                "clipped": 0.0}
        if not self.active(context):
            return output.x_next.detach(), info
        gamma_rows, stats = self.renoised_gamma(x, output, context)
        gamma_rows, fallback, clipped = self._safeguard(gamma_rows)
        x_next = self._apply(x.detach(), output, gamma_rows, context)
        info.update({"gamma": float(gamma_rows.mean()), "gamma_min_row": float(gamma_rows.min()),
                     "gamma_max_row": float(gamma_rows.max()), "corrected": 1.0, "s_num": stats["s_num"],
                     "s_uu": stats["s_uu"], "s_div": stats["s_div"], "probe_spread": stats["probe_spread"],
                     "fallback": float(fallback), "clipped": float(clipped),
                     "renoise_draws": float(self.renoise_draws)})
        return x_next, info
