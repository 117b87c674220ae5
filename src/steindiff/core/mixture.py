"""An exact, analytic Gaussian-mixture test-bed: a denoiser with known posterior mean, divergence and score.

Data distribution: p_0(x) = sum_k w_k N(x; mu_k, diag(s_k^2)) in d dimensions (s_k isotropic or diagonal).
At EDM noise level sigma the noisy marginal of x = x_star + sigma * eps is again a mixture,

    p_sigma(x) = sum_k w_k N_k(x),   N_k = N(x; mu_k, diag(v_k)),   v_k = s_k^2 + sigma^2,

and with responsibilities r_k = w_k N_k(x) / p_sigma(x) and g_k = grad log N_k = -(x - mu_k) / v_k:

    score      grad log p_sigma(x) = gbar = sum_k r_k g_k,
    denoiser   D(x; sigma) = E[x_star | x] = sum_k r_k m_k,   m_k = mu_k + (s_k^2 / v_k)(x - mu_k) = x + sigma^2 g_k,
               i.e. D = x + sigma^2 gbar (Tweedie; computed in this form so that D(x; 0) = x exactly),
    divergence tr dD/dx = sum_k r_k sum_i c_ki + sigma^2 sum_k r_k |g_k - gbar|^2,   c_k = s_k^2 / v_k.

Imperfection knobs (all 1 = exact) model a learned denoiser that is wrong in controlled ways:

- ``residual_scale`` s:  D' = x - s (x - D)  (over/under-shooting the denoising residual);
- ``temperature`` tau:   r_k ∝ (w_k N_k)^(1/tau); tau < 1 sharpens the posterior (larger Lipschitz constant);
- ``sigma_scale`` c:     the denoiser evaluates itself at c * sigma (a miscalibrated noise level).

With the knobs, D' = x + s (c sigma)^2 gbar_tau and, since dr_k/dx = (r_k / tau)(g_k - gbar)^T,

    tr dD'/dx = d - s (d - [sum_k r_k sum_i c_ki + ((c sigma)^2 / tau) sum_k r_k |g_k - gbar|^2])
              = d + s (c sigma)^2 [(1/tau) sum_k r_k |g_k - gbar|^2 - sum_k r_k sum_i 1/v_ki],

all quantities evaluated at noise level c * sigma with tempered responsibilities. ``score`` and
``log_prob`` always describe the true (knob-free) noisy marginal.

All per-sample quantities use broadcasting and elementwise reductions (no matmuls), so each row of the
result is bit-identical whatever the batch size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steindiff.core.denoiser import Denoiser, DenoiserSpec, as_sigma_batch

__all__ = ["MIXTURE_PRESETS", "GaussianMixture", "mixture_preset"]

_KNOBS = ("residual_scale", "temperature", "sigma_scale")


class GaussianMixture(Denoiser):
    """Gaussian mixture sum_k w_k N(mu_k, diag(s_k^2)) with its exact (or knob-modified) denoiser.

    Args:
        weights: (K,) positive mixture weights (normalised internally).
        means: (K, d) component means.
        stds: (K,) isotropic or (K, d) diagonal component standard deviations, all > 0.
        residual_scale: s in D' = x - s (x - D), 1 = exact (module docstring).
        temperature: tau > 0, responsibilities r_k ∝ (w_k N_k)^(1/tau), 1 = exact.
        sigma_scale: c > 0, the denoiser evaluates itself at c * sigma, 1 = exact.
    """

    def __init__(self, weights, means, stds, *, residual_scale: float = 1.0, temperature: float = 1.0,
                 sigma_scale: float = 1.0):
        mu = torch.as_tensor(means, dtype=torch.float64).detach().clone()
        super().__init__(DenoiserSpec(shape=(mu.shape[-1],) if mu.ndim == 2 and mu.shape[-1] > 0 else None))
        w = torch.as_tensor(weights, dtype=torch.float64).detach().clone()
        mu = torch.as_tensor(means, dtype=torch.float64).detach().clone()
        s = torch.as_tensor(stds, dtype=torch.float64).detach().clone()
        if w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"weights must be a non-empty 1-D tensor, got shape {tuple(w.shape)}")
        if not bool(torch.all(torch.isfinite(w) & (w > 0))):
            raise ValueError("weights must be finite and positive")
        if mu.ndim != 2 or mu.shape[0] != w.shape[0] or mu.shape[1] == 0:
            raise ValueError(f"means must have shape (K={w.shape[0]}, d), got {tuple(mu.shape)}")
        if not bool(torch.all(torch.isfinite(mu))):
            raise ValueError("means must be finite")
        if s.ndim == 1 and s.shape[0] == w.shape[0]:
            s = s[:, None].expand(mu.shape).clone()
        elif s.shape != mu.shape:
            raise ValueError(f"stds must have shape (K,) or (K, d) = {tuple(mu.shape)}, got {tuple(s.shape)}")
        if not bool(torch.all(torch.isfinite(s) & (s > 0))):
            raise ValueError("stds must be finite and positive")
        self.register_buffer("weights", w / w.sum())
        self.register_buffer("means", mu)
        self.register_buffer("stds", s)
        self.residual_scale, self.temperature, self.sigma_scale = _check_knobs(
            residual_scale, temperature, sigma_scale
        )

    # ---- structure --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def is_exact(self) -> bool:
        return self.residual_scale == 1.0 and self.temperature == 1.0 and self.sigma_scale == 1.0

    @property
    def knobs(self) -> dict:
        return {k: getattr(self, k) for k in _KNOBS}

    def with_knobs(self, **knobs) -> GaussianMixture:
        """A copy (same mixture, same device) with the given knobs changed."""
        unknown = set(knobs) - set(_KNOBS)
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; accepted: {list(_KNOBS)}")
        new = GaussianMixture(self.weights, self.means, self.stds, **{**self.knobs, **knobs})
        return new.to(self.means.device)

    def component_std(self, sigma=0.0) -> Tensor:
        """(K, d) standard deviations sqrt(s_k^2 + sigma^2) of the components of p_sigma (sigma a float)."""
        return torch.sqrt(self.stds**2 + float(sigma) ** 2)

    def mean(self) -> Tensor:
        """(d,) mean sum_k w_k mu_k of the data distribution."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> Tensor:
        """(d, d) covariance sum_k w_k (diag(s_k^2) + mu_k mu_k^T) - mean mean^T of the data distribution."""
        m = self.mean()
        second = torch.diag((self.weights[:, None] * self.stds**2).sum(0))
        second = second + torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second - torch.outer(m, m)

    def extra_repr(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.knobs.items())
        return f"K={self.num_components}, d={self.dim}, {knobs}"

    # ---- core computation -------------------------------------------------------------------
    def _stats(self, x: Tensor, sigma: Tensor, temperature: float):
        """Per-component (B, K) log w_k N_k, (B, K) tempered r_k, (B, K, d) g_k and (B, K, d) v_k."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        mu = self.means.to(x.dtype)[None]
        var = (self.stds.to(x.dtype) ** 2)[None] + (sigma**2)[:, None, None]
        diff = x[:, None, :] - mu
        log_n = -0.5 * ((diff**2 / var).sum(-1) + torch.log(var).sum(-1) + self.dim * math.log(2 * math.pi))
        logits = torch.log(self.weights.to(x.dtype))[None] + log_n
        r = torch.softmax(logits / temperature, dim=1)
        return logits, r, -diff / var, var

    def _gbar(self, r: Tensor, g: Tensor) -> Tensor:
        return (r[:, :, None] * g).sum(1)

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        """D'(x; sigma) = x + s (c sigma)^2 sum_k r_k g_k (the exact posterior mean when s = tau = c = 1)."""
        sig = as_sigma_batch(sigma, x) * self.sigma_scale
        _, r, g, _ = self._stats(x, sig, self.temperature)
        return x + (self.residual_scale * sig**2)[:, None] * self._gbar(r, g)

    def divergence(self, x: Tensor, sigma) -> Tensor:
        """(B,) exact trace of the Jacobian dD'/dx of the knob-modified denoiser (module docstring)."""
        sig = as_sigma_batch(sigma, x) * self.sigma_scale
        _, r, g, var = self._stats(x, sig, self.temperature)
        gbar = self._gbar(r, g)
        spread = (r * ((g - gbar[:, None, :]) ** 2).sum(-1)).sum(1)
        inv_var = (r * (1.0 / var).sum(-1)).sum(1)
        # sum_k r_k sum_i c_ki = d - sigma^2 sum_k r_k sum_i 1/v_ki; written so that sigma = 0 gives d exactly
        return self.dim + self.residual_scale * sig**2 * (spread / self.temperature - inv_var)

    def responsibilities(self, x: Tensor, sigma) -> Tensor:
        """(B, K) responsibilities as the (knob-modified) denoiser uses them: tempered, at c * sigma."""
        sig = as_sigma_batch(sigma, x) * self.sigma_scale
        return self._stats(x, sig, self.temperature)[1]

    def score(self, x: Tensor, sigma) -> Tensor:
        """(B, d) grad_x log p_sigma(x) = sum_k r_k g_k of the true noisy marginal (knobs ignored)."""
        _, r, g, _ = self._stats(x, as_sigma_batch(sigma, x), 1.0)
        return self._gbar(r, g)

    def log_prob(self, x: Tensor, sigma=0.0) -> Tensor:
        """(B,) log p_sigma(x) = logsumexp_k (log w_k + log N_k(x)); sigma = 0 gives the data density."""
        return torch.logsumexp(self._stats(x, as_sigma_batch(sigma, x), 1.0)[0], dim=1)

    # ---- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
               return_components: bool = False):
        """n exact samples x_star = mu_k + s_k * z (k ~ w, z ~ N(0, I)); optionally also the (n,) indices k."""
        dev = self.means.device
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=dev)
        x = (self.means[k] + self.stds[k] * z).to(dtype)
        return (x, k) if return_components else x

    def noisy_sample(self, n: int, sigma, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float64):
        """(x_star, x) with x_star ~ p_0 and x = x_star + sigma * eps ~ p_sigma (sigma float or (n,))."""
        x_star = self.sample(n, generator=generator, dtype=dtype)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=x_star.device).to(dtype)
        return x_star, x_star + as_sigma_batch(sigma, x_star)[:, None] * eps


def _check_knobs(residual_scale, temperature, sigma_scale):
    s, tau, c = float(residual_scale), float(temperature), float(sigma_scale)
    if not math.isfinite(s):
        raise ValueError(f"residual_scale must be finite, got {s}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"temperature must be finite and > 0, got {tau}")
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"sigma_scale must be finite and > 0, got {c}")
    return s, tau, c


# ---- presets ----------------------------------------------------------------------------------
def _gaussian2d(**knobs) -> GaussianMixture:
    """A single anisotropic Gaussian N((0.5, -0.5), diag(1.0^2, 0.3^2)) in 2-D."""
    return GaussianMixture([1.0], [[0.5, -0.5]], [[1.0, 0.3]], **knobs)


def _ring2d(**knobs) -> GaussianMixture:
    """8 equal-weight isotropic modes (std 0.1) equally spaced on the circle of radius 2 in 2-D."""
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return GaussianMixture(torch.ones(8), means, torch.full((8,), 0.1), **knobs)


def _aniso32(**knobs) -> GaussianMixture:
    """6 components in 32-D, unequal weights, means ~ N(0, I), diagonal stds log-uniform in [0.02, 0.5]."""
    gen = torch.Generator().manual_seed(20240611)
    means = torch.randn(6, 32, generator=gen, dtype=torch.float64)
    u = torch.rand(6, 32, generator=gen, dtype=torch.float64)
    stds = torch.exp(math.log(0.02) + u * (math.log(0.5) - math.log(0.02)))
    weights = [0.30, 0.22, 0.16, 0.13, 0.11, 0.08]
    return GaussianMixture(weights, means, stds, **knobs)


MIXTURE_PRESETS = {"gaussian2d": _gaussian2d, "ring2d": _ring2d, "aniso32": _aniso32}


def mixture_preset(name: str, **knobs) -> GaussianMixture:
    """Build a preset mixture by name (``MIXTURE_PRESETS``), passing imperfection knobs through."""
    if name not in MIXTURE_PRESETS:
        raise ValueError(f"unknown mixture preset {name!r}; accepted: {sorted(MIXTURE_PRESETS)}")
    return MIXTURE_PRESETS[name](**knobs)
