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

Train it again with ``python -m steindiff.metrics.digits`` (about 20 s on 2 CPU cores; deterministic
on one thread): it trains on the ``train`` split of ``steindiff.datasets``, reports accuracy on the
held-out ``test`` split and writes the weights file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["DIGITS_CLASSIFIER", "DigitsClassifier", "DigitsFeatures", "DigitsLogits", "digits_fid", "train_classifier"]

DIGITS_CLASSIFIER = Path(__file__).resolve().parents[1] / "assets" / "digits_classifier.safetensors"


class DigitsClassifier(nn.Module):
    """(N, 1, H, W) digits in [-1, 1] or uint8, H = W a multiple of 8 -> (features (N, 64), logits (N, 10)).

    In eval mode images are first quantised to uint8 the EDM way (as the Inception path does), so a
    generated image and its saved PNG have the same features.
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
            from steindiff.metrics.features import quantize_uint8

            images = quantize_uint8(images).float() / 127.5 - 1.0
        factor = images.shape[-1] // 8
        x = nn.functional.avg_pool2d(images.float(), factor) if factor > 1 else images.float()
        features = self.body(x)
        return features, self.head(features)


def _frozen_classifier(path: str | Path | None) -> DigitsClassifier:
    from steindiff.models.errors import CheckpointError

    path = Path(path) if path is not None else DIGITS_CLASSIFIER
    if not path.is_file():
        raise CheckpointError(f"{path}: digits classifier weights not found (train them with "
                              "`python -m steindiff.metrics.digits`)")
    try:
        from safetensors.torch import load_file

        state = load_file(str(path))
        model = DigitsClassifier()
        model.load_state_dict(state, strict=True)
    except Exception as err:
        reason = " ".join(str(err).split())[:160]
        raise CheckpointError(f"{path}: not a digits classifier safetensors file ({reason})") from None
    return model.eval().requires_grad_(False)


class DigitsFeatures(nn.Module):
    """The committed classifier's 64-d penultimate features, as a torchmetrics ``feature`` module."""

    num_features = DigitsClassifier.num_features
    name = "digits"

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.classifier = _frozen_classifier(path)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(images)[0]


class DigitsLogits(DigitsFeatures):
    """The committed classifier's 10 logits (a digits Inception Score: torchmetrics ``InceptionScore``)."""

    num_features = 10

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(images)[1]


def digits_fid(fake: Tensor, real: Tensor, path: str | Path | None = None) -> float:
    """Frechet distance between two image sets in the digits classifier's feature space."""
    from steindiff.metrics.fid import FrechetDistance

    metric = FrechetDistance(DigitsFeatures(path))
    for batch in fake.split(500):
        metric.update(batch, real=False)
    for batch in real.split(500):
        metric.update(batch, real=True)
    return float(metric.compute())


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts by up to one pixel and a little pixel noise, so generated digits are read robustly."""
    padded = nn.functional.pad(images, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    shifted = padded[..., dy:dy + 8, dx:dx + 8]
    return (shifted + 0.1 * torch.randn(shifted.shape, generator=generator)).clamp(-1.0, 1.0)


def train_classifier(epochs: int = 40, seed: int = 0, batch_size: int = 64) -> tuple[DigitsClassifier, dict]:
    """Train on the digits train split; returns the model and {'test_accuracy', 'train_accuracy', 'seconds'}."""
    from steindiff.datasets import digits_images

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = digits_images("train", 8, with_labels=True)
    test_images, test_labels = digits_images("test", 8, with_labels=True)
    model = DigitsClassifier()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * (len(images) // batch_size + 1))
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for rows in order.split(batch_size):
            logits = model(_augment(images[rows], generator))[1]
            loss = nn.functional.cross_entropy(logits, labels[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        stats = {
            "train_accuracy": float((model(images)[1].argmax(1) == labels).float().mean()),
            "test_accuracy": float((model(test_images)[1].argmax(1) == test_labels).float().mean()),
            "seconds": time.perf_counter() - t0,
        }
    return model, stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the digits classifier of the digits-FID and save its weights")
    parser.add_argument("--out", type=Path, default=DIGITS_CLASSIFIER)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    torch.set_num_threads(1)  # deterministic
    model, stats = train_classifier(args.epochs, args.seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"command": f"python -m steindiff.metrics.digits --epochs {args.epochs} --seed {args.seed}",
            **{k: f"{v:.4f}" for k, v in stats.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=meta)
    print(f"digits classifier: train accuracy {stats['train_accuracy']:.4f}, held-out test accuracy "
          f"{stats['test_accuracy']:.4f} ({stats['seconds']:.0f} s); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
