"""The Frechet distance between feature sets, as a torchmetrics metric, and reference statistics files.

``FrechetDistance(feature)`` keeps sum states of the features of generated ("fake") and, optionally,
real images (float64 sum, sum of outer products, count; ``dist_reduce_fx="sum"``, so under DDP every
rank adds its own images and ``compute`` on every rank gives the same number as one process on the
union). The real side can instead come from reference statistics ``(mu, sigma, n)`` computed once
(``steindiff-stats``) and saved as npz with EDM's layout (``mu``, ``sigma``; plus ``n`` and the
feature name here): a run then needs no real images. Reference statistics are plain buffers, not
states, so they are not summed across ranks.

FD = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r^1/2 S_f S_r^1/2)^1/2), covariances unbiased (n - 1),
computed in float64 with symmetric eigendecompositions (S_r^1/2 S_f S_r^1/2 is symmetric PSD and has
the eigenvalues of S_r S_f).

This module knows no feature network (any ``nn.Module`` with ``num_features`` will do), so the
feature spaces (``features``, ``digits``) and the metric collections (``fid``) build on it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from steindiff.errors import CheckpointError
from steindiff.io import atomic_open

__all__ = ["SAMPLES_PER_FEATURE", "FrechetDistance", "ReferenceStats", "frechet_distance", "load_reference",
           "sample_size_notes", "save_reference"]

#: a Frechet distance from fewer images per side than this many per feature dimension gets a note: 5 x 2048 =
#: 10,240 for Inception, the "at least 10,000" FID's authors ask for (TTUR README); below 1 per dimension the
#: covariance is singular. Measured for the digits features (d = 64): n train digits drawn at random against
#: all 1500 score 62 at n = 64, 10.4 at n = 320, 1.0 at n = 1000 (0 in the limit).
SAMPLES_PER_FEATURE = 5


def sample_size_notes(counts: dict[str, int], num_features: int) -> list[str]:
    """Notes for the sides ({"generated": n, "reference": n}) with too few images for ``num_features``."""
    notes, enough = [], SAMPLES_PER_FEATURE * num_features
    for side, n in counts.items():
        if n < num_features:
            notes.append(f"computed from {n} {side} samples, fewer than the {num_features} feature dimensions: the "
                         f"covariance is singular and the value mostly measures the sample size (meaningful from "
                         f"{enough} = {SAMPLES_PER_FEATURE} x {num_features})")
        elif n < enough:
            notes.append(f"computed from {n} {side} samples, fewer than {enough} = {SAMPLES_PER_FEATURE} x "
                         f"{num_features} feature dimensions: biased upward by sampling error; compare only runs "
                         "with equal sample counts")
    return notes


def _sqrtm_psd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root1 = _sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * cross)


class ReferenceStats:
    """(mu (d,), sigma (d, d), n) of a feature set, float64.

    Args:
        mu: (d,) feature mean.
        sigma: (d, d) feature covariance (unbiased).
        n: the number of images the statistics were computed from.
        features: the feature network's name (e.g. "inception", "digits"); "" when unknown.
    """

    def __init__(self, mu, sigma, n: int, features: str = ""):
        self.mu = torch.as_tensor(np.asarray(mu), dtype=torch.float64)
        self.sigma = torch.as_tensor(np.asarray(sigma), dtype=torch.float64)
        self.n, self.features = int(n), str(features)

    @property
    def num_features(self) -> int:
        return int(self.mu.shape[0])


def save_reference(path: str | Path, stats: ReferenceStats) -> Path:
    """Write npz (mu, sigma as EDM's reference files; n, features) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.savez(f, mu=stats.mu.numpy(), sigma=stats.sigma.numpy(), n=np.int64(stats.n), features=stats.features)
    return path


def load_reference(path: str | Path, num_features: int | None = None) -> ReferenceStats:
    """Read reference statistics (npz with mu, sigma; EDM's files or ``steindiff-stats``'s).

    Raises ``CheckpointError`` (one line naming the file) when the file is missing, truncated, not an
    npz, lacks mu or sigma, has inconsistent shapes, or has another feature dimension than ``num_features``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: reference statistics not found (make them with steindiff-stats)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise CheckpointError(f"{path}: reference statistics need arrays mu and sigma, found "
                                      f"{', '.join(sorted(data.files)) or 'none'}")
            mu, sigma = data["mu"], data["sigma"]
            n = int(data["n"]) if "n" in data else 50000  # EDM's reference files hold 50,000 images
            features = str(data["features"]) if "features" in data else ""
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())[:120]
        raise CheckpointError(f"{path}: not a readable npz of reference statistics (truncated or another "
                              f"format: {reason})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise CheckpointError(f"{path}: mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}")
    if num_features is not None and mu.shape[0] != num_features:
        raise CheckpointError(f"{path}: reference statistics have {mu.shape[0]} features but the feature "
                              f"extractor gives {num_features}{f' ({features} statistics)' if features else ''}")
    return ReferenceStats(mu, sigma, n, features)


class FrechetDistance(Metric):
    """Frechet distance of generated images to real images or to reference statistics.

    ``update(images, real=False)``: images (N, C, H, W) in [-1, 1] (or uint8) go through ``feature``.

    Args:
        feature: the feature network, (N, C, H, W) images -> (N, d); it declares ``num_features`` = d.
        reference: reference statistics of the real side (a ``ReferenceStats`` or an npz path); None
            when real images are given with ``update(images, real=True)``.
        **kwargs: torchmetrics ``Metric`` options (e.g. ``sync_on_compute``).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, feature: nn.Module, reference: ReferenceStats | str | Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.feature = feature.eval().requires_grad_(False)
        d = int(feature.num_features)
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.reference = None
        self.notes: list[str] = []  # set by compute: too few images for the feature dimension
        if reference is not None:
            self.set_reference(reference)

    def set_reference(self, reference: ReferenceStats | str | Path) -> None:
        if not isinstance(reference, ReferenceStats):
            reference = load_reference(reference, int(self.feature.num_features))
        elif reference.num_features != int(self.feature.num_features):
            raise CheckpointError(f"reference statistics have {reference.num_features} features but the feature "
                                  f"extractor gives {int(self.feature.num_features)}")
        self.reference = reference

    def update(self, images: Tensor, real: bool = False) -> None:
        with torch.no_grad():
            features = self.feature(images).double()
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + features.T @ features)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + features.shape[0])

    def _stats(self, side: str) -> tuple[Tensor, Tensor]:
        n = int(getattr(self, f"{side}_n"))
        if n < 2:
            raise RuntimeError(f"Frechet distance needs at least 2 {side} images, got {n}")
        mu = getattr(self, f"{side}_sum") / n
        sigma = (getattr(self, f"{side}_outer") - n * torch.outer(mu, mu)) / (n - 1)
        return mu, sigma

    def statistics(self, side: str = "fake") -> ReferenceStats:
        """The accumulated (mu, sigma, n) of one side (what ``steindiff-stats`` saves)."""
        mu, sigma = self._stats(side)
        return ReferenceStats(mu, sigma, int(getattr(self, f"{side}_n")), getattr(self.feature, "name", ""))

    def compute(self) -> Tensor:
        """The distance; ``self.notes`` then says when either side had too few images (``sample_size_notes``)."""
        mu_f, sigma_f = self._stats("fake")
        if self.reference is not None and int(self.real_n) == 0:
            mu_r, sigma_r = self.reference.mu.to(mu_f.device), self.reference.sigma.to(mu_f.device)
            n_real = self.reference.n
        else:
            mu_r, sigma_r = self._stats("real")
            n_real = int(self.real_n)
        self.notes = sample_size_notes({"generated": int(self.fake_n), "reference": n_real}, mu_f.shape[0])
        return torch.tensor(frechet_distance(mu_r, sigma_r, mu_f, sigma_f), dtype=torch.float64)
