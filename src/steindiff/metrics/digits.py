"""A digits classifier trained here, used as the feature space of a "digits-FID" (MNIST-FID practice).

The Inception network of FID was trained on ImageNet photographs; for 8x8 handwritten digits its
features mean little. MNIST papers score samples in the penultimate layer of a small classifier
trained on the data set itself; this is the same for scikit-learn's digits:

- ``DigitsClassifier``: a small CNN on 8x8 digits (16x16 inputs are average-pooled to 8x8 first;
  images are quantised to uint8 first, as stored images are),
  whose 64-d penultimate activations are the features and whose 10 logits give an Inception Score.
- ``DigitsFeatures`` / ``DigitsLogits``: the committed classifier (``assets/digits_classifier.safetensors``)
  as feature extractors for ``steindiff.metrics.fid`` and torchmetrics (frozen, eval mode).
- ``digits_fid(fake, real)``: the Frechet distance in that feature space, in one call.

Train it again with ``python -m steindiff.metrics.digits_training`` (``steindiff.metrics.digits_training``;
about 20 s on 2 CPU cores; deterministic on one thread): it trains on the ``train`` split of
``steindiff.datasets``, reports accuracy on the held-out ``test`` split and writes the weights file.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor, nn

from steindiff.errors import CheckpointError
from steindiff.metrics.features import quantize_uint8
from steindiff.metrics.frechet import FrechetDistance

__all__ = ["DIGITS_CLASSIFIER", "DigitsClassifier", "DigitsFeatures", "DigitsLogits", "digits_fid"]

DIGITS_CLASSIFIER = Path(__file__).resolve().parents[1] / "assets" / "digits_classifier.safetensors"


class DigitsClassifier(nn.Module):
    """(N, 1, H, W) digits in [-1, 1] or uint8, H = W a multiple of 8 -> (features (N, 64), logits (N, 10)).

    In eval mode images are first quantised to uint8 the EDM way (as the Inception path does), so a
    generated image and its saved PNG have the same features.

    Args:
        width: channels of the first convolution (the later ones have twice as many).
    """

    num_features = 64

    def __init__(self, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 128), nn.SiLU(),
            nn.Linear(128, self.num_features), nn.SiLU(),
        )
        self.head = nn.Linear(self.num_features, 10)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.ndim != 4 or images.shape[1] != 1 or images.shape[-1] % 8 or images.shape[-2] != images.shape[-1]:
            raise ValueError(f"digits features expect (N, 1, 8k, 8k) images in [-1, 1], got {tuple(images.shape)}")
        if not self.training:  # evaluation sees images as stored: uint8 the EDM way, back to [-1, 1]
            images = quantize_uint8(images).float() / 127.5 - 1.0
        factor = images.shape[-1] // 8
        x = nn.functional.avg_pool2d(images.float(), factor) if factor > 1 else images.float()
        features = self.body(x)
        return features, self.head(features)


def _frozen_classifier(path: str | Path | None) -> DigitsClassifier:
    path = Path(path) if path is not None else DIGITS_CLASSIFIER
    if not path.is_file():
        raise CheckpointError(f"{path}: digits classifier weights not found (train them with "
                              "`python -m steindiff.metrics.digits_training`)")
    try:
        state = load_file(str(path))
        model = DigitsClassifier()
        model.load_state_dict(state, strict=True)
    except Exception as err:
        reason = " ".join(str(err).split())[:160]
        raise CheckpointError(f"{path}: not a digits classifier safetensors file ({reason})") from None
    return model.eval().requires_grad_(False)


class DigitsFeatures(nn.Module):
    """The committed classifier's 64-d penultimate features, as a torchmetrics ``feature`` module.

    Args:
        path: a classifier weights file (None: the committed ``DIGITS_CLASSIFIER``).
    """

    num_features = DigitsClassifier.num_features
    name = "digits"

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.classifier = _frozen_classifier(path)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(images)[0]


class DigitsLogits(DigitsFeatures):
    """The committed classifier's 10 logits (a digits Inception Score: torchmetrics ``InceptionScore``).

    Args:
        path: a classifier weights file (None: the committed ``DIGITS_CLASSIFIER``).
    """

    num_features = 10

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(images)[1]


def digits_fid(fake: Tensor, real: Tensor, path: str | Path | None = None) -> float:
    """Frechet distance between two image sets in the digits classifier's feature space."""
    metric = FrechetDistance(DigitsFeatures(path))
    for batch in fake.split(500):
        metric.update(batch, real=False)
    for batch in real.split(500):
        metric.update(batch, real=True)
    return float(metric.compute())
