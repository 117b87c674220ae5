"""The denoiser contract and the NFE-counting wrapper.

A denoiser is a callable ``D(x, sigma, labels=None) -> data prediction`` in EDM coordinates:

- ``x``: (B, *shape) noisy input x_hat = x_star + sigma * eps (see ``processes``);
- ``sigma``: (B,) EDM noise level per sample (a Python float or 0-d tensor is broadcast);
- ``labels``: None, or (B, num_classes) one-hot / soft class labels for conditional models
  (all-zero rows mean "unconditional", as in EDM and classifier-free guidance);
- returns (B, *shape), the estimate of E[x_star | x], same dtype as ``x``.

Every denoiser declares what the sampler needs to know about it in a ``DenoiserSpec`` given at
construction (``denoiser.spec``): the shape of one sample, the number of classes (0: unconditional;
the sampler then draws no labels), the noise process it was trained on (None: any, in EDM
coordinates) and the trained sigma range (None: unbounded). The platform reads the spec; it never
probes a denoiser for loose attributes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["DenoiserSpec", "spec_of", "Denoiser", "CountingDenoiser", "DenoiserOutputError", "GuidedDenoiser",
           "as_sigma_batch"]


def as_sigma_batch(sigma, x: Tensor) -> Tensor:
    """Broadcast ``sigma`` (float, 0-d or (B,)) to a (B,) tensor of x's dtype and device."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma


@dataclass(frozen=True)
class DenoiserSpec:
    """What a denoiser declares about itself.

    Args:
        shape: the shape of one sample, e.g. (2,) or (1, 8, 8); None when any shape is accepted
            (the run must then give one).
        num_classes: number of classes of a conditional model; 0 for an unconditional one.
        process: the ``NoiseProcess`` the network was trained on (its prior and time map are the
            sampler's); None when the denoiser works in EDM coordinates with any process.
        sigma_min, sigma_max: the trained range of EDM noise levels; None where unbounded.
    """

    shape: tuple[int, ...] | None = None
    num_classes: int = 0
    process: object | None = None
    sigma_min: float | None = None
    sigma_max: float | None = None

    def __post_init__(self):
        if self.shape is not None:
            shape = tuple(int(s) for s in self.shape)
            if not shape or min(shape) < 1:
                raise ValueError(f"a sample shape needs positive sizes, got {self.shape!r}")
            object.__setattr__(self, "shape", shape)
        if isinstance(self.num_classes, bool) or int(self.num_classes) != self.num_classes or self.num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {self.num_classes!r}")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else float(value))


def spec_of(denoiser) -> DenoiserSpec:
    """The spec a denoiser declares; a plain callable (no ``Denoiser``) declares nothing."""
    if isinstance(denoiser, Denoiser | CountingDenoiser):
        return denoiser.spec
    return DenoiserSpec()


class Denoiser(nn.Module):
    """Base class for denoisers: subclasses implement ``denoise(x, sigma, labels)``.

    ``forward`` broadcasts sigma to (B,) and checks the output shape, so every subclass obeys the
    contract in the module docstring.

    Args:
        spec: what the denoiser declares (sample shape, classes, process, trained sigma range).
    """

    def __init__(self, spec: DenoiserSpec | None = None):
        super().__init__()
        self.spec = spec if spec is not None else DenoiserSpec()

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, sigma, labels: Tensor | None = None) -> Tensor:
        sigma = as_sigma_batch(sigma, x)
        out = self.denoise(x, sigma, labels)
        if out.shape != x.shape:
            raise ValueError(
                f"{type(self).__name__} returned shape {tuple(out.shape)} for input {tuple(x.shape)}"
            )
        return out


class CountingDenoiser(nn.Module):
    """Wraps a denoiser and counts its calls: the measured number of function evaluations (NFE).

    One call on a batch counts as one evaluation (the NFE of each trajectory in that batch).

    Args:
        denoiser: the wrapped denoiser; its spec is this wrapper's spec.
    """

    def __init__(self, denoiser):
        super().__init__()
        self.inner = denoiser
        self.calls = 0

    @property
    def spec(self) -> DenoiserSpec:
        return spec_of(self.inner)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def reset(self) -> None:
        self.calls = 0

    @contextlib.contextmanager
    def paused(self):
        """Calls inside this block are not counted (diagnostics that are not part of sampling)."""
        self._paused = getattr(self, "_paused", 0) + 1
        try:
            yield self
        finally:
            self._paused -= 1

    def forward(self, x: Tensor, sigma, labels: Tensor | None = None) -> Tensor:
        if not getattr(self, "_paused", 0):
            self.calls += 1
        out = self.inner(x, sigma, labels)
        if getattr(out, "shape", None) != x.shape:
            shown = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
            raise DenoiserOutputError(f"the denoiser {type(self.inner).__name__} returned {shown} for input "
                                      f"{tuple(x.shape)}")
        return out


class DenoiserOutputError(ValueError):
    """A denoiser returned something of the wrong shape (the sampling loop adds the step and sigma)."""


class GuidedDenoiser(Denoiser):
    """Classifier-free guidance: D_w = D(x, sigma, 0) + w * (D(x, sigma, y) - D(x, sigma, 0)).

    ``scale`` w = 1 is the plain conditional model (one network call); any other value costs two
    network calls per denoiser evaluation, which still counts as one NFE (the usual convention).

    Args:
        denoiser: a class-conditional denoiser; its spec is this one's.
        scale: the guidance weight w.
    """

    def __init__(self, denoiser, scale: float = 1.0):
        super().__init__(spec_of(denoiser))
        self.inner = denoiser
        self.scale = float(scale)
        if self.num_classes == 0 and self.scale != 1.0:
            raise ValueError("classifier-free guidance needs a class-conditional denoiser (num_classes > 0)")

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        if labels is None or self.scale == 1.0:
            return self.inner(x, sigma, labels)
        null = torch.zeros_like(labels)
        both = self.inner(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([null, labels]))
        uncond, cond = both.chunk(2)
        return uncond + self.scale * (cond - uncond)
