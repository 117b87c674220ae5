"""Correctors: plug-ins that act on each solver step without the solver knowing (``base``), and the
SteinDiff corrector (``stein``), and two controls of ours: the oracle gamma (``oracle``) and a constant gamma
(``constant``). A config file picks one by its ``_target_``."""

from .base import Corrector, NoCorrector, StepContext
from .constant import ConstantCorrector
from .oracle import REFERENCES, OracleCorrector
from .stein import STATISTICS, TARGETS, SteinCorrector, stein_gamma

__all__ = ["StepContext", "Corrector", "NoCorrector", "SteinCorrector", "stein_gamma", "TARGETS", "STATISTICS",
           "OracleCorrector", "REFERENCES", "ConstantCorrector"]
