"""Correctors: plug-ins that act on each solver step without the solver knowing (``base``), and the
SteinDiff corrector (``stein``). A config file picks one by its ``_target_``."""

from .base import Corrector, NoCorrector, StepContext
from .stein import STATISTICS, TARGETS, SteinCorrector, stein_gamma

__all__ = ["StepContext", "Corrector", "NoCorrector", "SteinCorrector", "stein_gamma", "TARGETS", "STATISTICS"]
