"""Stand-ins that the app tests name through Hydra's _target_ (PYTHONPATH includes the repository)."""

import torch
from pytorch_lightning.loggers import Logger

from steindiff.core.denoiser import Denoiser, DenoiserSpec
from steindiff.core.mixture import GaussianMixture, mixture_preset
from steindiff.datasets import digits_images


class NaNBelow(GaussianMixture):
    """The ring2d mixture, except that it returns NaN for sigma below ``bad_sigma``."""

    bad_sigma = 1.0

    def denoise(self, x, sigma, labels):
        out = super().denoise(x, sigma, labels)
        return torch.where((sigma < self.bad_sigma)[:, None], torch.full_like(out, float("nan")), out)


def nan_ring(name="ring2d", **knobs):
    base = mixture_preset(name, **knobs)
    model = NaNBelow(base.weights, base.means, base.stds)
    return model


class BrokenWandbLogger(Logger):
    """A W&B logger whose run cannot start (unreachable or misconfigured W&B)."""

    def __init__(self, **kwargs):
        super().__init__()

    @property
    def experiment(self):
        raise ConnectionError("W&B is unreachable (simulated)")

    @property
    def name(self):
        return "broken"

    @property
    def version(self):
        return "0"

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        pass


class DigitsGaussian(Denoiser):
    """An exact denoiser for a diagonal Gaussian fitted to the 8x8 digits (an image-shaped stand-in)."""

    def __init__(self):
        images = digits_images("train").double()
        super().__init__(DenoiserSpec(shape=tuple(images.shape[1:])))
        self.register_buffer("mu", images.mean(0))
        self.register_buffer("std", images.std(0).clamp(min=0.05))

    def denoise(self, x, sigma, labels):
        s = sigma.reshape(-1, 1, 1, 1).to(x.dtype)
        var = self.std.to(x.dtype) ** 2
        return self.mu.to(x.dtype) + var / (var + s**2) * (x - self.mu.to(x.dtype))


class WrongShapeBelow(GaussianMixture):
    """The ring2d mixture, except that it drops the last coordinate for sigma below 1 (a broken network)."""

    def forward(self, x, sigma, labels=None):
        out = super().forward(x, sigma, labels)
        return out[:, :1] if float(torch.as_tensor(sigma).max()) < 1.0 else out


def wrong_shape_ring(name="ring2d", **knobs):
    base = mixture_preset(name, **knobs)
    return WrongShapeBelow(base.weights, base.means, base.stds)
