"""Epsilon scaling (Ning et al. 2023, "Elucidating the exposure bias in diffusion models"): a training-free
rescaling baseline, ours to compare with SteinDiff, not the paper's.

The noise prediction eps = (x - D) / sigma is divided by a constant lambda at EVERY denoiser evaluation:

    D'(x; sigma) = x - (x - D(x; sigma)) / lambda = (1 - 1/lambda) x + (1/lambda) D(x; sigma).

The same in every process (in VP coordinates eps = (x - alpha D) / sigma_native is the same number). With
the corrector's data reading and alpha = 1 (VE), this is a constant gamma = 1/lambda applied to every
evaluation, the solver's history and Heun's second evaluation included, whereas ``ConstantCorrector``
rescales only the step's data prediction. lambda = 1 (or None) is no scaling: ``epsilon_scaled`` then
returns the denoiser itself, so the samples are bit-identical. NFE unchanged (one inner call per call).
"""

from __future__ import annotations

import math

from torch import Tensor

from .denoiser import Denoiser, spec_of

__all__ = ["EpsilonScaled", "epsilon_scaled", "unscaled"]


class EpsilonScaled(Denoiser):
    """D' = x - (x - D) / scale around a denoiser D (its spec is D's).

    Args:
        denoiser: the wrapped denoiser.
        scale: lambda > 0 (Ning et al. use values slightly above 1, e.g. 1.005).
    """

    def __init__(self, denoiser, scale: float):
        super().__init__(spec_of(denoiser))
        if isinstance(scale, bool) or not math.isfinite(float(scale)) or float(scale) <= 0:
            raise ValueError(f"epsilon scaling lambda must be a finite number > 0, got {scale!r}")
        self.inner, self.scale = denoiser, float(scale)

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        return x - (x - self.inner(x, sigma, labels)) / self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def epsilon_scaled(denoiser, scale: float | None):
    """``denoiser`` with its noise prediction divided by ``scale``; the denoiser itself when scale is None or 1."""
    if scale is None or float(scale) == 1.0:
        return denoiser
    return EpsilonScaled(denoiser, scale)


def unscaled(denoiser):
    """The model under any epsilon scaling (the ODE a reference solution should follow)."""
    while isinstance(denoiser, EpsilonScaled):
        denoiser = denoiser.inner
    return denoiser
