"""The pure-PyTorch core: processes, schedules, denoisers, solvers, correctors, sampling loop.

No Lightning or Hydra here. A whole run from a Python prompt::

    from steindiff.core import build_sigmas, make_solver, mixture_preset, sample
    data = mixture_preset("ring2d")
    sigmas = build_sigmas("edm", num_steps=6, final_step="zero")
    result = sample(data, sigmas, make_solver("heun"), seeds=range(1000), shape=(2,))
    result.samples, result.nfe, result.trace
"""

from .adaptors import EDMPrecond, VPNetworkDenoiser, draw_labels, one_hot_labels
from .correctors import CORRECTORS, Corrector, NoCorrector, StepContext, make_corrector
from .denoiser import CountingDenoiser, Denoiser, GuidedDenoiser
from .diagnostics import energy_distance
from .gaussian import GaussianData
from .mixture import MIXTURE_PRESETS, GaussianMixture, mixture_preset
from .noise import initial_noise, parse_seeds
from .processes import PROCESSES, NoiseProcess, make_process
from .sampling import SampleResult, integrate, sample
from .schedules import FINAL_STEP_POLICIES, SCHEDULES, build_sigmas
from .solvers import SOLVERS, Solver, SolverState, StepOutput, make_solver, num_steps_for_nfe
from .stein import SteinCorrector, stein_gamma

__all__ = [
    "EDMPrecond", "VPNetworkDenoiser", "draw_labels", "one_hot_labels",
    "CORRECTORS", "Corrector", "NoCorrector", "StepContext", "make_corrector",
    "CountingDenoiser", "Denoiser", "GuidedDenoiser", "energy_distance", "GaussianData",
    "MIXTURE_PRESETS", "GaussianMixture", "mixture_preset", "initial_noise", "parse_seeds",
    "PROCESSES", "NoiseProcess", "make_process", "SampleResult", "integrate", "sample",
    "FINAL_STEP_POLICIES", "SCHEDULES", "build_sigmas",
    "SteinCorrector", "stein_gamma",
    "SOLVERS", "Solver", "SolverState", "StepOutput", "make_solver", "num_steps_for_nfe",
]
