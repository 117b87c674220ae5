"""Image metrics in a feature space: FID, FD-DINOv2, digits-FID, KID and the Inception Score, as torchmetrics.

``feature_extractor(name)`` picks the feature space: inception (FID), digits (digits-FID, the
classifier of ``steindiff.metrics.digits``) or a user's TorchScript network (FD-DINOv2, ...).
``image_metrics(...)`` builds the metric collection of the sampling app's ``metrics=fid`` and
``metrics=digits_fid`` groups: ``fid`` (``FrechetDistance``, see ``steindiff.metrics.frechet``, whose
names are re-exported here), optionally ``kid`` (``KernelDistance``) and ``inception_score``
(``ClassifierScore``), each prefixed with its feature space unless it is Inception's (``digits_fid``).
``FrechetDistance`` and ``KernelDistance`` leave ``notes`` when computed from too few samples (the app
puts them in results.json and prints them).

Imports go one way: frechet and features <- digits <- fid.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

from steindiff.datasets import digits_images
from steindiff.metrics.digits import DigitsFeatures, DigitsLogits
from steindiff.metrics.features import InceptionFeatures, TorchScriptFeatures
from steindiff.metrics.frechet import FrechetDistance, ReferenceStats, frechet_distance, load_reference, save_reference

__all__ = [
    "REFERENCE_DATA",
    "ClassifierScore",
    "FrechetDistance",
    "KernelDistance",
    "ReferenceStats",
    "feature_extractor",
    "frechet_distance",
    "image_metrics",
    "load_reference",
    "metric_prefix",
    "reference_images",
    "polynomial_mmd",
    "save_reference",
]


def feature_extractor(features: str = "inception", weights: str | Path | None = None, **kwargs) -> nn.Module:
    """A feature network by name: inception (FID), digits (digits-FID), or torchscript (user weights)."""
    if features == "inception":
        return InceptionFeatures(weights)
    if features == "digits":
        return DigitsFeatures(weights)
    if features == "torchscript":
        if weights is None:
            raise ValueError("features=torchscript needs weights=<path to a TorchScript feature network>")
        return TorchScriptFeatures(weights, **kwargs)
    raise ValueError(f"features={features!r} is not accepted: expected inception, digits or torchscript")


REFERENCE_DATA = ("digits_train", "digits_test")


def reference_images(name: str, size: int = 8) -> Tensor:
    """A bundled real image set by name: digits_train, digits_test (digits at ``size``, 8 or 16)."""
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
    """The metrics of an image run: ``fid`` (always), ``kid`` and ``inception_score`` (optional), named with their
    feature space (``metric_prefix``: ``digits_fid``, ``digits_kid``, ``digits_inception_score`` for features=digits).
    KID is the raw unbiased MMD^2 (as torchmetrics and torch-fidelity return it; papers often print it x 10^3).

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
    prefix = metric_prefix(feature)
    metrics = {f"{prefix}fid": FrechetDistance(feature, stats)}
    if kid:
        metrics[f"{prefix}kid"] = KernelDistance(feature, real, subset_size=kid_subset_size)
    if inception_score:
        metrics[f"{prefix}inception_score"] = ClassifierScore(DigitsLogits(weights))
    return MetricCollection(metrics, compute_groups=False)


def metric_prefix(feature: nn.Module) -> str:
    """How the metric names say their feature space: "" for Inception (fid, kid: the literature's numbers),
    "<name>_" for any other (digits_fid, digits_kid, digits_inception_score; dinov2_fid for a TorchScript
    network named dinov2): a digits-classifier FID is not comparable with an Inception FID."""
    name = str(getattr(feature, "name", "") or "features")
    return "" if name == "inception" else f"{name}_"


class ClassifierScore(Metric):
    """Inception Score with one split, exp(E_x KL(p(y|x) || p(y))), from a classifier's logits.

    Sum states only (sum of p(y|x), sum of sum_y p log p, count), so DDP gives exactly the
    single-process number. = exp(E_x sum_y p(y|x) log p(y|x) - sum_y p(y) log p(y)), p(y) = E_x p(y|x).

    Args:
        classifier: images -> (N, K) class logits; it declares ``num_features`` = K.
        **kwargs: torchmetrics ``Metric`` options.
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

    Args:
        feature: the feature network, images -> (N, d).
        real_images: (M, C, H, W) real images, featurised once at construction.
        subset_size: images per subset (capped by the numbers of real and generated images).
        num_subsets: the number of random subsets averaged.
        seed: the seed of the subset draws.
        **kwargs: torchmetrics ``Metric`` options.
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
        self.notes: list[str] = []  # set by compute: subsets smaller than subset_size
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, images: Tensor) -> None:
        with torch.no_grad():
            self.fake_features.append(self.feature(images).double().flatten())

    def compute(self) -> Tensor:
        """The KID; ``self.notes`` says when the subsets were smaller than ``subset_size`` (too few images)."""
        real = self.real_features
        fake = dim_zero_cat(self.fake_features).to(real.device).reshape(-1, real.shape[1])
        m = min(self.subset_size, len(real), len(fake))
        if m < 2:
            raise RuntimeError(f"KID needs at least 2 generated and 2 real images, got {len(fake)} and {len(real)}")
        self.notes = [] if m == self.subset_size else [
            f"subsets of {m} samples, not kid_subset_size={self.subset_size}: only {len(fake)} generated and "
            f"{len(real)} reference samples (KID of smaller subsets has the same mean and a larger spread)"]
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

