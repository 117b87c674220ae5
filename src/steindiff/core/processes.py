"""Noise processes: the forward coupling x_t = alpha(t) * x_star + sigma(t) * eps.

Every process here is Gaussian, so each one is the same probability-flow ODE seen in other
coordinates. steindiff writes its solvers once, in the EDM ("VE-equivalent") coordinates

    x_hat = x / alpha(t),     sigma_hat = sigma(t) / alpha(t) = exp(-lambda(t)),

in which the PF-ODE reads d x_hat / d sigma_hat = (x_hat - D(x_hat; sigma_hat)) / sigma_hat for
every process. A process only decides (a) how a time t maps to sigma_hat (for time-based grids and
for networks that take t as input), and (b) the native scale alpha of the state.

Throughout steindiff, a bare ``sigma`` means sigma_hat (EDM's sigma). ``lambda`` is
log(alpha / sigma) = -log(sigma_hat), half the log signal-to-noise ratio.

Processes:
- ``VEProcess`` (EDM/VE): alpha = 1, sigma = t.
- ``VPLinearProcess``: continuous VP with linear beta(t) (beta_min=0.1, beta_max=20, t in [eps, 1]).
- ``VPCosineProcess``: the cosine schedule of Nichol & Dhariwal (s = 0.008).
- ``VPDiscreteProcess``: DDPM's discrete betas; log alpha is interpolated piecewise linearly in the
  (continuous) timestep index tau in [0, N - 1], which is what a discrete network takes as input.

All VP processes share alpha^2 + sigma^2 = 1, hence alpha = 1 / sqrt(1 + sigma_hat^2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "NoiseProcess",
    "VEProcess",
    "VPLinearProcess",
    "VPCosineProcess",
    "VPDiscreteProcess",
    "make_process",
    "PROCESSES",
]


def _as_tensor(t) -> Tensor:
    """Process maps are evaluated in float64 (callers cast the result to their dtype)."""
    return torch.as_tensor(t).to(torch.float64)


class NoiseProcess:
    """Base class: x_t = alpha(t) x_star + sigma(t) eps, with alpha the signal scale and sigma the
    native noise scale; ``sigma_hat(t) = sigma / alpha`` is the EDM noise level the solvers use.
    Subclasses define ``log_alpha(t)`` and ``t_of_log_alpha`` (VP: alpha^2 + sigma^2 = 1) or override.

    Args:
        none (subclasses take their schedule parameters).
    """

    name = "base"
    #: True when alpha = 1 (variance exploding); False when alpha^2 + sigma^2 = 1.
    variance_exploding = False
    t_min: float = 0.0
    t_max: float = 1.0

    # ---- forward maps -------------------------------------------------------------------
    def log_alpha(self, t) -> Tensor:
        raise NotImplementedError

    def alpha(self, t) -> Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t) -> Tensor:
        """Native noise scale sigma(t) (for VP: sqrt(1 - alpha^2))."""
        la = self.log_alpha(t)
        return torch.sqrt(-torch.expm1(2.0 * la))

    def lambda_(self, t) -> Tensor:
        """lambda(t) = log(alpha / sigma)."""
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(-torch.expm1(2.0 * la))

    def sigma_hat(self, t) -> Tensor:
        """EDM-equivalent noise level sigma / alpha = exp(-lambda)."""
        return torch.exp(-self.lambda_(t))

    # ---- inverses -----------------------------------------------------------------------
    def t_of_log_alpha(self, log_alpha: Tensor) -> Tensor:
        raise NotImplementedError

    def t_of_lambda(self, lam) -> Tensor:
        lam = _as_tensor(lam)
        # alpha^2 = 1 / (1 + exp(-2 lambda))  =>  log alpha = -0.5 * softplus(-2 lambda)
        return self.t_of_log_alpha(-0.5 * torch.nn.functional.softplus(-2.0 * lam))

    def t_of_sigma(self, sigma_hat) -> Tensor:
        """Time at which the EDM-equivalent noise level equals ``sigma_hat``."""
        sigma_hat = _as_tensor(sigma_hat)
        return self.t_of_lambda(-torch.log(sigma_hat))

    # ---- EDM coordinates ----------------------------------------------------------------
    def alpha_of_sigma(self, sigma_hat) -> Tensor:
        """Native alpha at EDM noise level sigma_hat (1 for VE, 1/sqrt(1+sigma^2) for VP)."""
        sigma_hat = _as_tensor(sigma_hat)
        return torch.rsqrt(1.0 + sigma_hat**2)

    def prior_scale(self, sigma_hat) -> Tensor:
        """Std of the initial x_hat: VE starts at sigma*eps, VP at x_T ~ N(0, I), i.e. eps/alpha."""
        sigma_hat = _as_tensor(sigma_hat)
        return torch.sqrt(1.0 + sigma_hat**2)

    @property
    def sigma_min(self) -> float:
        return float(self.sigma_hat(torch.tensor(self.t_min, dtype=torch.float64)))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma_hat(torch.tensor(self.t_max, dtype=torch.float64)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class VEProcess(NoiseProcess):
    """EDM / variance exploding: alpha = 1, sigma = t = sigma_hat (``t`` is sigma itself).

    Args:
        sigma_min: smallest noise level, t_min (> 0).
        sigma_max: largest noise level, t_max (> sigma_min).
    """

    name = "ve"
    variance_exploding = True

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"VEProcess needs 0 < sigma_min < sigma_max, got {sigma_min=}, {sigma_max=}"
            )
        self.t_min, self.t_max = float(sigma_min), float(sigma_max)

    def log_alpha(self, t) -> Tensor:
        return torch.zeros_like(_as_tensor(t))

    def sigma(self, t) -> Tensor:
        return _as_tensor(t).clone()

    def lambda_(self, t) -> Tensor:
        return -torch.log(_as_tensor(t))

    def sigma_hat(self, t) -> Tensor:
        return _as_tensor(t).clone()

    def t_of_lambda(self, lam) -> Tensor:
        return torch.exp(-_as_tensor(lam))

    def t_of_sigma(self, sigma_hat) -> Tensor:
        return _as_tensor(sigma_hat).clone()

    def alpha_of_sigma(self, sigma_hat) -> Tensor:
        return torch.ones_like(_as_tensor(sigma_hat))

    def prior_scale(self, sigma_hat) -> Tensor:
        return _as_tensor(sigma_hat).clone()

    def __repr__(self) -> str:
        return f"VEProcess(sigma_min={self.t_min}, sigma_max={self.t_max})"


class VPLinearProcess(NoiseProcess):
    """Continuous VP with beta(t) = beta_min + t (beta_max - beta_min), t in [t_min, 1].

    log alpha(t) = -beta_min t / 2 - (beta_max - beta_min) t^2 / 4,  sigma(t) = sqrt(1 - alpha^2).

    Args:
        beta_min: beta(0) (>= 0).
        beta_max: beta(1) (> beta_min).
        t_min: smallest time (t_max is 1).
    """

    name = "vp_linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"VPLinearProcess needs 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.t_min, self.t_max = float(t_min), 1.0

    def log_alpha(self, t) -> Tensor:
        t = _as_tensor(t)
        return -0.5 * self.beta_min * t - 0.25 * (self.beta_max - self.beta_min) * t**2

    def t_of_log_alpha(self, log_alpha: Tensor) -> Tensor:
        # solve a t^2 + b t + log_alpha = 0 with a = (bmax - bmin)/4, b = bmin/2 (positive root)
        a = 0.25 * (self.beta_max - self.beta_min)
        b = 0.5 * self.beta_min
        disc = b * b - 4.0 * a * log_alpha
        return (2.0 * -log_alpha) / (b + torch.sqrt(disc))  # stable form of (-b + sqrt)/(2a)

    def __repr__(self) -> str:
        return f"VPLinearProcess(beta_min={self.beta_min}, beta_max={self.beta_max})"


class VPCosineProcess(NoiseProcess):
    """Cosine VP schedule: alpha(t) = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2 s/(1 + s)).

    sigma(t) = sqrt(1 - alpha^2). t_max defaults to 0.9946 (as in DPM-Solver) to keep lambda finite.

    Args:
        s: the schedule's small offset near t = 0 (Nichol & Dhariwal).
        t_min: smallest time.
        t_max: largest time (< 1).
    """

    name = "vp_cosine"

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946):
        self.s = float(s)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self._log_alpha0 = math.log(math.cos(math.pi / 2 * self.s / (1 + self.s)))

    def log_alpha(self, t) -> Tensor:
        t = _as_tensor(t)
        return torch.log(torch.cos(math.pi / 2 * (t + self.s) / (1 + self.s))) - self._log_alpha0

    def t_of_log_alpha(self, log_alpha: Tensor) -> Tensor:
        c = torch.exp(log_alpha + self._log_alpha0).clamp(max=1.0)
        return 2 * (1 + self.s) / math.pi * torch.arccos(c) - self.s

    def __repr__(self) -> str:
        return f"VPCosineProcess(s={self.s})"


class VPDiscreteProcess(NoiseProcess):
    """Discrete-time DDPM process given by betas (default: linear 1e-4 .. 0.02, N = 1000).

    Time is the continuous timestep index tau in [0, N - 1]; log alpha_bar is interpolated
    piecewise linearly between integer indices, so that a discrete network can be queried at the
    trained timesteps exactly (tau integer) or in between. The inverse map is exact.
    alpha(tau)^2 = alpha_bar (DDPM's cumulative product), sigma(tau) = sqrt(1 - alpha_bar).

    Args:
        betas: (N,) betas in (0, 1); default linspace(beta_start, beta_end, num_timesteps).
        num_timesteps: N for the default betas.
        beta_start: first default beta.
        beta_end: last default beta.
        alphas_cumprod: (N,) strictly decreasing alpha_bar; given, it replaces the betas.
    """

    name = "vp_discrete"

    def __init__(self, betas: Tensor | None = None, num_timesteps: int = 1000,
                 beta_start: float = 1e-4, beta_end: float = 0.02, alphas_cumprod: Tensor | None = None):
        if alphas_cumprod is None:
            if betas is None:
                betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
            betas = _as_tensor(betas)
            if betas.ndim != 1 or not bool(((betas > 0) & (betas < 1)).all()):
                raise ValueError("VPDiscreteProcess: betas must be a 1-D tensor with 0 < beta < 1")
            alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod = _as_tensor(alphas_cumprod)
        if alphas_cumprod.ndim != 1 or not bool((alphas_cumprod[1:] < alphas_cumprod[:-1]).all()):
            raise ValueError("VPDiscreteProcess: alphas_cumprod must be 1-D and strictly decreasing")
        self.log_alphas = 0.5 * torch.log(alphas_cumprod)  # (N,), decreasing
        self.num_timesteps = len(alphas_cumprod)
        self.t_min, self.t_max = 0.0, float(self.num_timesteps - 1)

    def log_alpha(self, t) -> Tensor:
        t = _as_tensor(t)
        tc = t.clamp(0.0, self.t_max)
        i0 = tc.floor().long().clamp(max=self.num_timesteps - 2)
        w = tc - i0.to(tc.dtype)
        la = self.log_alphas.to(tc.dtype)
        return la[i0] * (1 - w) + la[i0 + 1] * w

    def t_of_log_alpha(self, log_alpha: Tensor) -> Tensor:
        la = self.log_alphas.to(log_alpha.dtype)
        # la is decreasing: search on its negation (increasing)
        idx = torch.searchsorted(-la, -log_alpha.contiguous().reshape(-1)).reshape(log_alpha.shape)
        i0 = (idx - 1).clamp(0, self.num_timesteps - 2)
        lo, hi = la[i0], la[i0 + 1]
        w = (log_alpha - lo) / (hi - lo)
        return i0.to(log_alpha.dtype) + w

    def __repr__(self) -> str:
        return f"VPDiscreteProcess(num_timesteps={self.num_timesteps})"


PROCESSES = {
    "ve": VEProcess,
    "edm": VEProcess,
    "vp_linear": VPLinearProcess,
    "vp_cosine": VPCosineProcess,
    "vp_discrete": VPDiscreteProcess,
}


def make_process(name: str, **kwargs) -> NoiseProcess:
    """Build a process by name (one of ``PROCESSES``)."""
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; accepted: {', '.join(sorted(PROCESSES))}")
    return PROCESSES[name](**kwargs)
