"""torchmetrics metrics of generated samples (DDP-safe: states sync across processes).

``steindiff.metrics.mixture`` scores samples against the exact Gaussian-mixture test-bed.
"""

from steindiff.metrics.mixture import (
    EnergyDistance,
    MixtureNLL,
    ModeCoverage,
    OffManifoldFraction,
    SlicedWasserstein,
    mixture_metrics,
    sliced_wasserstein,
)

__all__ = [
    "EnergyDistance",
    "MixtureNLL",
    "ModeCoverage",
    "OffManifoldFraction",
    "SlicedWasserstein",
    "mixture_metrics",
    "sliced_wasserstein",
]
