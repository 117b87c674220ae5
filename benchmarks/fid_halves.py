"""FID between two disjoint halves of a real image set: the project's path against numpy/scipy.

    python benchmarks/fid_halves.py            # ~2-4 min on 2 CPU cores (Inception at ~5 images/s)

Image sets: 500 random 32x32 crops of scikit-image's bundled photographs (Inception features: uint8
the EDM way, TF1 bilinear to 299, the offline TorchScript Inception), and the 1,797 digits
(digits-classifier features; 8x8 and upscaled 16x16). Each set is split into two disjoint halves
(even / odd rows). For each, the table gives the FID from ``steindiff.metrics.fid.FrechetDistance``
(float64 sum states, eigh-based matrix square root) and from a direct numpy/scipy computation on the
very same features (np.cov, scipy.linalg.sqrtm), and their difference. Also: FID as Gaussian noise is
added to the second half. Writes benchmarks/results/fid_halves.{md,json}.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from steindiff.datasets import digits_images, image_patches
from steindiff.metrics.digits import DigitsFeatures
from steindiff.metrics.features import InceptionFeatures
from steindiff.metrics.fid import FrechetDistance

OUT = Path(__file__).parent / "results"


def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def features_of(feature, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([feature(b).double() for b in images.split(50)]).numpy()


def project_fid(feature, first: torch.Tensor, second: torch.Tensor) -> float:
    metric = FrechetDistance(feature)
    for b in first.split(50):
        metric.update(b, real=True)
    for b in second.split(50):
        metric.update(b)
    return float(metric.compute())


def main() -> None:
    sets = [
        ("500 crops 32x32 (skimage)", "inception", image_patches(500, 32, seed=0)),
        ("1797 digits 8x8", "digits", digits_images("all", 8)),
        ("1797 digits 16x16 (upscaled)", "digits", digits_images("all", 16)),
    ]
    extractors = {"inception": InceptionFeatures(), "digits": DigitsFeatures()}
    rows, noise_rows = [], []
    for name, kind, images in sets:
        feature = extractors[kind]
        first, second = images[0::2], images[1::2]
        t0 = time.perf_counter()
        ours = project_fid(feature, first, second)
        seconds = time.perf_counter() - t0
        reference = numpy_fid(features_of(feature, first), features_of(feature, second))
        rows.append({"set": name, "features": kind, "n": [len(first), len(second)], "fid_project": ours,
                     "fid_numpy_scipy": reference, "abs_difference": abs(ours - reference), "seconds": seconds})
        print(f"{name:30s} {kind:9s} project {ours:12.6f}  numpy/scipy {reference:12.6f}  "
              f"|diff| {abs(ours - reference):.2e}  ({seconds:.0f} s)")
        if kind == "digits":
            for std in (0.0, 0.1, 0.2, 0.4):
                noisy = (second + std * torch.randn(second.shape, generator=torch.Generator().manual_seed(0)))
                noise_rows.append({"set": name, "noise_std": std,
                                   "fid": project_fid(feature, first, noisy.clamp(-1, 1))})
    OUT.mkdir(exist_ok=True)
    (OUT / "fid_halves.json").write_text(json.dumps({"halves": rows, "noise": noise_rows}, indent=1))
    lines = ["# FID between two disjoint halves of a real image set", "",
             "`python benchmarks/fid_halves.py` (halves = even / odd rows; same features for both columns)", "",
             "| image set | features | n | FID, steindiff | FID, numpy/scipy | abs. difference |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['features']} | {r['n'][0]} + {r['n'][1]} | {r['fid_project']:.6f} | "
                     f"{r['fid_numpy_scipy']:.6f} | {r['abs_difference']:.1e} |")
    lines += ["", "Digits-FID as Gaussian noise (std in [-1, 1] units, then clipped) is added to the second half:", "",
              "| image set | noise std | digits-FID |", "|---|---|---|"]
    lines += [f"| {r['set']} | {r['noise_std']} | {r['fid']:.3f} |" for r in noise_rows]
    (OUT / "fid_halves.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
