"""steindiff-stats: compute reference statistics (mu, sigma, n) of an image set once, save them as npz.

    steindiff-stats --data digits_train --size 16 --features digits --out refs/digits16_train.npz
    steindiff-stats --data patches --num 500 --size 32 --out refs/patches32.npz        # Inception
    steindiff-stats --data folder:/path/to/images --out refs/mine.npz                # png/jpg files
    steindiff-stats --data run:runs/2026-11-26/10-00-00 --out refs/run.npz           # a run's samples
    steindiff-stats --data digits_test --features torchscript --weights dinov2.pt --out refs/dino.npz

The file holds mu and sigma as EDM's reference files do (plus n and the feature name); pass it to a
run with ``metrics=fid metrics.reference=refs/...npz``. Two files can be compared directly:
``steindiff-stats --compare a.npz b.npz`` prints their Frechet distance.
Errors (unknown data, unreadable files, wrong weights) are one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from steindiff.errors import CheckpointError

_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _folder_images(folder: Path):
    """Yield (N, C, H, W) uint8 batches of the images in a folder (sorted, all of one size; grey -> C = 1)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _EXTENSIONS)
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(_EXTENSIONS)})")
    for start in range(0, len(files), 100):
        opened = [Image.open(p) for p in files[start:start + 100]]
        mode = "L" if all(im.mode in ("L", "1") for im in opened) else "RGB"  # grey stays one channel
        batch = np.stack([np.asarray(im.convert(mode)) for im in opened])
        yield torch.from_numpy(batch[..., None] if mode == "L" else batch).permute(0, 3, 1, 2)


def image_batches(data: str, num: int, size: int, seed: int):
    """The image set named on the command line, as a list of batches (float in [-1, 1] or uint8)."""
    from steindiff.datasets import image_patches  # start-up: scikit-image and scikit-learn, about 2 s
    from steindiff.metrics.fid import REFERENCE_DATA, reference_images  # start-up: torchmetrics, about 1.3 s

    if data in REFERENCE_DATA:
        return list(reference_images(data, size).split(100))
    if data == "patches":
        return list(image_patches(num, size, seed).split(100))
    if data.startswith("folder:"):
        folder = Path(data[len("folder:"):])
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder")
        return list(_folder_images(folder))
    if data.startswith("run:"):
        from steindiff.shards import load_samples  # start-up: numpy

        folder = Path(data[len("run:"):])
        if not (folder / "samples").is_dir():
            raise ValueError(f"{folder}: not a run folder (no samples/)")
        _, samples = load_samples(folder)
        if samples.ndim != 4:
            raise ValueError(f"{folder}: samples have shape {samples.shape}, not images (N, C, H, W)")
        return list(torch.from_numpy(samples).float().split(100))
    raise ValueError(f"--data {data!r} is not accepted: expected {', '.join(REFERENCE_DATA)}, patches, "
                     "folder:<path> or run:<path>")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="steindiff-stats", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="digits_train, digits_test, patches, folder:<path> or run:<path>")
    parser.add_argument("--features", default="inception", help="inception (FID), digits, or torchscript")
    parser.add_argument("--weights", default=None, help="feature network file (inception: optional)")
    parser.add_argument("--size", type=int, default=8, help="digits: 8 or 16; patches: crop size")
    parser.add_argument("--num", type=int, default=500, help="patches: number of crops")
    parser.add_argument("--seed", type=int, default=0, help="patches: crop seed")
    parser.add_argument("--out", type=Path, help="npz file to write")
    parser.add_argument("--compare", nargs=2, metavar="NPZ", help="print the Frechet distance of two stats files")
    args = parser.parse_args(argv)
    from steindiff.metrics.fid import (  # start-up: torchmetrics, about 1.3 s; --help needs none of it
        FrechetDistance,
        feature_extractor,
        frechet_distance,
        load_reference,
        save_reference,
    )

    try:
        if args.compare:
            a, b = (load_reference(p) for p in args.compare)
            if a.num_features != b.num_features:
                raise CheckpointError(f"{args.compare[1]}: {b.num_features} features, {args.compare[0]} has "
                                      f"{a.num_features}")
            print(f"{frechet_distance(a.mu, a.sigma, b.mu, b.sigma):.6f}")
            return 0
        if not args.data or not args.out:
            raise ValueError("give --data and --out (or --compare A.npz B.npz)")
        feature = feature_extractor(args.features, args.weights)
        batches = image_batches(args.data, args.num, args.size, args.seed)
        metric = FrechetDistance(feature)
        for batch in tqdm(batches, desc=f"{args.features} features", unit="batch", file=sys.stderr):
            metric.update(batch, real=True)
        stats = metric.statistics("real")
        save_reference(args.out, stats)
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # CheckpointError is a ValueError
        print(f"steindiff-stats: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"{args.data}: {stats.n} images, {stats.num_features} {args.features} features; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
