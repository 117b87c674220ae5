"""torchmetrics metrics of generated samples (DDP-safe: states sync across processes).

``steindiff.metrics.mixture`` scores samples against the exact Gaussian-mixture test-bed;
``steindiff.metrics.trajectory`` measures discretisation error against a high-accuracy solution;
``steindiff.metrics.fid`` (with ``frechet``, ``features``, ``digits``) gives FID-style image metrics.
Imports go one way: frechet, features <- digits <- fid; digits <- digits_training (the script).
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
from steindiff.metrics.trajectory import TrajectoryError, reference_solution, trajectory_metrics

__all__ = [
    "EnergyDistance",
    "MixtureNLL",
    "ModeCoverage",
    "OffManifoldFraction",
    "SlicedWasserstein",
    "mixture_metrics",
    "sliced_wasserstein",
    "TrajectoryError",
    "reference_solution",
    "trajectory_metrics",
]
