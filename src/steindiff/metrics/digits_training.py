"""Train the digits classifier of the digits-FID (``steindiff.metrics.digits``) and save its weights.

    python -m steindiff.metrics.digits_training [--out FILE] [--force] [--epochs 40] [--seed 0]

About 20 s on 2 CPU cores, deterministic on one thread: trains ``DigitsClassifier`` on the ``train``
split of ``steindiff.datasets`` (with small random shifts and pixel noise), reports accuracy on the
held-out ``test`` split and writes the weights (safetensors, with the command and accuracies in the
metadata) to ``--out`` (``digits_classifier.safetensors`` in the working folder). A file git tracks (the
committed weights in the package) is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from steindiff.datasets import digits_images
from steindiff.io import atomic_write_bytes
from steindiff.metrics.digits import DigitsClassifier
from steindiff.tracked import tracked_files

__all__ = ["main", "train_classifier"]

PROG = "python -m steindiff.metrics.digits_training"


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts by up to one pixel and a little pixel noise, so generated digits are read robustly."""
    padded = nn.functional.pad(images, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    shifted = padded[..., dy:dy + 8, dx:dx + 8]
    return (shifted + 0.1 * torch.randn(shifted.shape, generator=generator)).clamp(-1.0, 1.0)


def train_classifier(epochs: int = 40, seed: int = 0, batch_size: int = 64) -> tuple[DigitsClassifier, dict]:
    """Train on the digits train split; returns the model and {'test_accuracy', 'train_accuracy', 'seconds'}."""
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


def _refusal(args) -> str | None:
    """What stops the script before it trains: a bad --epochs, or an --out that git tracks without --force."""
    if args.epochs < 1:
        return f"--epochs {args.epochs} is not accepted: expected an integer >= 1"
    tracked = tracked_files(args.out)
    if tracked and not args.force:
        return (f"--out {args.out} is tracked by git ({tracked[0]}): give another --out, or add --force to replace "
                "the committed file")
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the digits classifier of the digits-FID and save its weights")
    parser.add_argument("--out", type=Path, default=Path("digits_classifier.safetensors"),
                        help="where to write the weights (default: the working folder)")
    parser.add_argument("--force", action="store_true",
                        help="replace --out even when git tracks it (the committed weights in the package)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    refusal = _refusal(args)
    if refusal:
        print(f"{PROG}: error: {refusal}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # deterministic
    model, stats = train_classifier(args.epochs, args.seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"command": f"python -m steindiff.metrics.digits_training --epochs {args.epochs} --seed {args.seed}",
            **{k: f"{v:.4f}" for k, v in stats.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, safetensors_bytes(state, metadata=meta))
    print(f"digits classifier: train accuracy {stats['train_accuracy']:.4f}, held-out test accuracy "
          f"{stats['test_accuracy']:.4f} ({stats['seconds']:.0f} s); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
