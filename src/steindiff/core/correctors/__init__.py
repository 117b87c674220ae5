"""Correctors: plug-ins that act on each solver step without the solver knowing (``base``), and the
SteinDiff corrector (``stein``), its re-noised variant (``renoised``, ours), and controls of ours: the oracle gamma
(``oracle``), a constant gamma (``constant``) and a calibrated schedule (``calibrated``). A config file picks one
by its ``_target_``."""

from .base import Corrector, NoCorrector, StepContext
from .calibrated import CalibratedCorrector
from .constant import ConstantCorrector
from .oracle import REFERENCES, OracleCorrector
from .renoised import NUMERATORS, RENOISE_FROM, RenoisedSteinCorrector
from .stein import HISTORIES, STATISTICS, TARGETS, SteinCorrector, stein_gamma

__all__ = ["StepContext", "Corrector", "NoCorrector", "SteinCorrector", "stein_gamma", "TARGETS", "STATISTICS",
           "HISTORIES", "OracleCorrector", "REFERENCES", "ConstantCorrector", "CalibratedCorrector",
           "RenoisedSteinCorrector", "RENOISE_FROM", "NUMERATORS"]
