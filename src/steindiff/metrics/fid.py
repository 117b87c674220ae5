"""Frechet distances (FID, FD-DINOv2, digits-FID) with reference statistics, as torchmetrics.

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

``image_metrics(...)`` builds the metric collection of the sampling app's ``metrics=fid`` and
``metrics=digits_fid`` groups.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

__all__ = [
    "ClassifierScore",
    "FrechetDistance",
    "KernelDistance",
    "ReferenceStats",
    "feature_extractor",
    "frechet_distance",
    "image_metrics",
    "load_reference",
    "reference_images",
    "polynomial_mmd",
    "save_reference",
]


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
    """(mu (d,), sigma (d, d), n) of a feature set, float64."""

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
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, mu=stats.mu.numpy(), sigma=stats.sigma.numpy(), n=np.int64(stats.n), features=stats.features)
    tmp.replace(path)
    return path


def load_reference(path: str | Path, num_features: int | None = None) -> ReferenceStats:
    """Read reference statistics (npz with mu, sigma; EDM's files or ``steindiff-stats``'s).

    Raises ``CheckpointError`` (one line naming the file) when the file is missing, truncated, not an
    npz, lacks mu or sigma, has inconsistent shapes, or has another feature dimension than ``num_features``.
    """
    from steindiff.models.errors import CheckpointError

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
        if reference is not None:
            self.set_reference(reference)

    def set_reference(self, reference: ReferenceStats | str | Path) -> None:
        if not isinstance(reference, ReferenceStats):
            reference = load_reference(reference, int(self.feature.num_features))
        elif reference.num_features != int(self.feature.num_features):
            from steindiff.models.errors import CheckpointError

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
        mu_f, sigma_f = self._stats("fake")
        if self.reference is not None and int(self.real_n) == 0:
            mu_r, sigma_r = self.reference.mu.to(mu_f.device), self.reference.sigma.to(mu_f.device)
        else:
            mu_r, sigma_r = self._stats("real")
        return torch.tensor(frechet_distance(mu_r, sigma_r, mu_f, sigma_f), dtype=torch.float64)


def feature_extractor(features: str = "inception", weights: str | Path | None = None, **kwargs) -> nn.Module:
    """A feature network by name: inception (FID), digits (digits-FID), or torchscript (user weights)."""
    if features == "inception":
        from steindiff.metrics.features import InceptionFeatures

        return InceptionFeatures(weights)
    if features == "digits":
        from steindiff.metrics.digits import DigitsFeatures

        return DigitsFeatures(weights)
    if features == "torchscript":
        from steindiff.metrics.features import TorchScriptFeatures

        if weights is None:
            raise ValueError("features=torchscript needs weights=<path to a TorchScript feature network>")
        return TorchScriptFeatures(weights, **kwargs)
    raise ValueError(f"features={features!r} is not accepted: expected inception, digits or torchscript")


REFERENCE_DATA = ("digits_train", "digits_test")


def reference_images(name: str, size: int = 8) -> Tensor:
    """A bundled real image set by name: digits_train, digits_test (digits at ``size``, 8 or 16)."""
    from steindiff.datasets import digits_images

    if name not in REFERENCE_DATA:
        raise ValueError(f"reference_data={name!r} is not accepted: expected one of {', '.join(REFERENCE_DATA)}")
    return digits_images(name.split("_")[1], size)


def _reference_stats(images: Tensor, feature: nn.Module) -> ReferenceStats:
    metric = FrechetDistance(feature)
    for batch in images.split(500):
        metric.update(batch, real=True)
    return metric.statistics("real")


def image_metrics(features: str = "inception", weights: str | None = None, reference: str | None = None,
                  reference_data: str | None = None, reference_size: int = 8, kid: bool = False,
                  kid_subset_size: int = 1000, inception_score: bool = False,
                  feature_kwargs: dict | None = None) -> MetricCollection:
    """The metrics of an image run: ``fid`` (always), ``kid`` and ``inception_score`` (optional).

    ``reference``: an npz of reference statistics (steindiff-stats); or ``reference_data``: a bundled
    data set whose statistics are computed at start (digits_train, digits_test, at ``reference_size``:
    the generated images' size, 8 or 16). KID needs real features,
    so it is available with ``reference_data`` only. The Inception Score needs class logits: the digits
    classifier has them, the offline Inception file does not.
    """
    if (reference is None) == (reference_data is None):
        raise ValueError("give exactly one of metrics.reference (an npz from steindiff-stats) or "
                         "metrics.reference_data (digits_train or digits_test)")
    if kid and reference_data is None:
        raise ValueError("kid=true needs real images: use metrics.reference_data instead of metrics.reference")
    if inception_score and features != "digits":
        raise ValueError("inception_score=true needs a classifier with logits: only features=digits has one "
                         "(the offline Inception file stops at pool3)")
    feature = feature_extractor(features, weights, **(feature_kwargs or {}))
    real = reference_images(reference_data, reference_size) if reference_data else None  # loaded once
    stats = _reference_stats(real, feature) if real is not None else reference
    metrics = {"fid": FrechetDistance(feature, stats)}
    if kid:
        metrics["kid"] = KernelDistance(feature, real, subset_size=kid_subset_size)
    if inception_score:
        from steindiff.metrics.digits import DigitsLogits

        metrics["inception_score"] = ClassifierScore(DigitsLogits(weights))
    return MetricCollection(metrics, compute_groups=False)


class ClassifierScore(Metric):
    """Inception Score with one split, exp(E_x KL(p(y|x) || p(y))), from a classifier's logits.

    Sum states only (sum of p(y|x), sum of sum_y p log p, count), so DDP gives exactly the
    single-process number. = exp(E_x sum_y p(y|x) log p(y|x) - sum_y p(y) log p(y)), p(y) = E_x p(y|x).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, classifier: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier.eval().requires_grad_(False)
        k = int(classifier.num_features)
        self.add_state("prob_sum", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("neg_entropy_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, images: Tensor) -> None:
        with torch.no_grad():
            log_p = torch.log_softmax(self.classifier(images).double(), dim=1)
        self.prob_sum += log_p.exp().sum(0)
        self.neg_entropy_sum += (log_p.exp() * log_p).sum()
        self.n += log_p.shape[0]

    def compute(self) -> Tensor:
        n = int(self.n)
        if n < 1:
            raise RuntimeError("Inception Score needs at least one image")
        marginal = self.prob_sum / n
        return (self.neg_entropy_sum / n - (marginal * marginal.clamp(min=1e-300).log()).sum()).exp()


class KernelDistance(Metric):
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3.

    Real features are computed once from ``real_images`` and kept as a buffer (not a state: never
    summed across ranks); generated features are a ``cat`` state. ``compute`` averages the MMD over
    ``num_subsets`` subsets of ``subset_size`` (fixed seed, so the number is reproducible).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, feature: nn.Module, real_images: Tensor, subset_size: int = 100, num_subsets: int = 50,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.feature = feature.eval().requires_grad_(False)
        with torch.no_grad():
            self.real_features = torch.cat([self.feature(b).double() for b in real_images.split(500)])
        self.subset_size, self.num_subsets, self.seed = int(subset_size), int(num_subsets), int(seed)
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, images: Tensor) -> None:
        with torch.no_grad():
            self.fake_features.append(self.feature(images).double().flatten())

    def compute(self) -> Tensor:
        from torchmetrics.utilities import dim_zero_cat

        real = self.real_features
        fake = dim_zero_cat(self.fake_features).to(real.device).reshape(-1, real.shape[1])
        m = min(self.subset_size, len(real), len(fake))
        if m < 2:
            raise RuntimeError(f"KID needs at least 2 generated and 2 real images, got {len(fake)} and {len(real)}")
        generator = torch.Generator().manual_seed(self.seed)
        values = []
        for _ in range(self.num_subsets):
            x = real[torch.randperm(len(real), generator=generator)[:m].to(real.device)]
            y = fake[torch.randperm(len(fake), generator=generator)[:m].to(fake.device)]
            values.append(polynomial_mmd(x, y))
        return torch.stack(values).mean()


def polynomial_mmd(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 between feature sets x, y (m, d) with the kernel (a.b / d + 1)^3."""
    d, m = x.shape[1], x.shape[0]
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off_diagonal = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return off_diagonal - 2 * k_xy.mean()
