"""The pure-PyTorch core: processes, schedules, denoisers, solvers, correctors, sampling loop.

No Lightning or Hydra here. A whole run from a Python prompt::

    from steindiff.core import Schedule, SteinCorrector, make_solver, mixture_preset, sample
    data = mixture_preset("ring2d")
    grid = Schedule("edm", final_step="zero").grid(num_steps=6)
    result = sample(data, grid, make_solver("heun"), SteinCorrector(), seeds=range(1000), shape=(2,))
    result.samples, result.nfe, result.trace
"""

from .adaptors import EDMPrecond, VPNetworkDenoiser, draw_labels, one_hot_labels
from .correctors import (
    ConstantCorrector,
    Corrector,
    NoCorrector,
    OracleCorrector,
    SteinCorrector,
    StepContext,
    stein_gamma,
)
from .denoiser import CountingDenoiser, Denoiser, DenoiserSpec, GuidedDenoiser, spec_of
from .diagnostics import energy_distance
from .epsilon_scaling import EpsilonScaled, epsilon_scaled
from .estimator_observer import EstimatorObserver
from .gaussian import GaussianData
from .mixture import MIXTURE_PRESETS, GaussianMixture, mixture_preset
from .observers import LipschitzObserver, Observer
from .processes import PROCESSES, NoiseProcess, make_process
from .rng import initial_noise, parse_seeds
from .sampling import SampleResult, integrate, sample, seed_batches
from .schedules import FINAL_STEP_POLICIES, SCHEDULES, Schedule, SigmaGrid, as_grid, build_sigmas
from .solvers import SOLVERS, Solver, SolverState, StepOutput, make_solver, num_steps_for_nfe

__all__ = [
    "EDMPrecond", "VPNetworkDenoiser", "draw_labels", "one_hot_labels",
    "Corrector", "NoCorrector", "StepContext", "LipschitzObserver", "Observer",
    "CountingDenoiser", "Denoiser", "DenoiserSpec", "spec_of", "GuidedDenoiser", "energy_distance", "GaussianData",
    "MIXTURE_PRESETS", "GaussianMixture", "mixture_preset", "initial_noise", "parse_seeds",
    "PROCESSES", "NoiseProcess", "make_process", "SampleResult", "integrate", "sample", "seed_batches",
    "FINAL_STEP_POLICIES", "SCHEDULES", "Schedule", "SigmaGrid", "as_grid", "build_sigmas",
    "SteinCorrector", "stein_gamma", "OracleCorrector", "ConstantCorrector", "EpsilonScaled", "epsilon_scaled",
    "EstimatorObserver",
    "SOLVERS", "Solver", "SolverState", "StepOutput", "make_solver", "num_steps_for_nfe",
]
