"""Sigma grids: plain, descending float64 tensors of EDM noise levels, separate from solvers.

Schedules (all between sigma_max and sigma_min):
- "edm":            EDM's polynomial grid, (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
                    sigma_max^(1/rho)))^rho, rho = 7 by default;
- "logsnr":         uniform in lambda = -log(sigma);
- "time_uniform":   uniform in the process's time t (uniform in sigma for the VE process);
- "time_quadratic": uniform in sqrt(t) (DPM-Solver's "time_quadratic");
- "explicit":       a list the user gives.

Final-step policy (how a run of N steps ends), a named option recorded with every result:
- "zero":      N grid points from sigma_max to sigma_min, then 0; N steps, the last to sigma = 0
               (EDM's convention);
- "sigma_min": N + 1 points from sigma_max to sigma_min; the result is the state at sigma_min
               (diff-sampler's convention, no final denoising);
- "denoise":   as "sigma_min", then one more denoiser call D(x, sigma_min) (+1 NFE; DPM-Solver's
               denoise_to_zero).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .processes import NoiseProcess, VEProcess

__all__ = [
    "FINAL_STEP_POLICIES", "SCHEDULES", "edm_sigmas", "logsnr_sigmas", "time_uniform_sigmas",
    "time_quadratic_sigmas", "build_sigmas", "check_sigmas", "num_grid_points",
]

FINAL_STEP_POLICIES = ("zero", "sigma_min", "denoise")
SCHEDULES = ("edm", "logsnr", "time_uniform", "time_quadratic", "explicit")


def _check_range(num: int, sigma_min: float, sigma_max: float) -> None:
    if int(num) != num or num < 1:
        raise ValueError(f"number of grid points must be an integer >= 1, got {num!r}")
    if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def _unit(num: int) -> Tensor:
    """num points from 0 to 1 (just [0] for num = 1, i.e. the grid is [sigma_max])."""
    if num == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.linspace(0.0, 1.0, num, dtype=torch.float64)


def edm_sigmas(num: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    _check_range(num, sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + _unit(num) * (b - a)) ** rho


def logsnr_sigmas(num: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> Tensor:
    _check_range(num, sigma_min, sigma_max)
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    return torch.exp(hi + _unit(num) * (lo - hi))


def time_uniform_sigmas(num: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                        process: NoiseProcess | None = None) -> Tensor:
    _check_range(num, sigma_min, sigma_max)
    process = process or VEProcess()
    t_hi = process.t_of_sigma(torch.tensor(sigma_max, dtype=torch.float64))
    t_lo = process.t_of_sigma(torch.tensor(sigma_min, dtype=torch.float64))
    return process.sigma_hat(t_hi + _unit(num) * (t_lo - t_hi))


def time_quadratic_sigmas(num: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                          process: NoiseProcess | None = None) -> Tensor:
    _check_range(num, sigma_min, sigma_max)
    process = process or VEProcess()
    s_hi = process.t_of_sigma(torch.tensor(sigma_max, dtype=torch.float64)).sqrt()
    s_lo = process.t_of_sigma(torch.tensor(sigma_min, dtype=torch.float64)).sqrt()
    return process.sigma_hat((s_hi + _unit(num) * (s_lo - s_hi)) ** 2)


def num_grid_points(num_steps: int, final_step: str) -> int:
    """Grid points the schedule must supply (before a final 0 is appended)."""
    _check_policy(final_step)
    return num_steps if final_step == "zero" else num_steps + 1


def _check_policy(final_step: str) -> None:
    if final_step not in FINAL_STEP_POLICIES:
        raise ValueError(f"unknown final_step {final_step!r}; accepted: {', '.join(FINAL_STEP_POLICIES)}")


def build_sigmas(schedule: str, num_steps: int, final_step: str = "zero", *, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, rho: float = 7.0, process: NoiseProcess | None = None,
                 sigmas: Sequence[float] | None = None) -> Tensor:
    """The grid of a run with ``num_steps`` steps: length num_steps + 1, descending.

    With final_step "zero" the last entry is 0. ``schedule="explicit"`` takes ``sigmas`` as given
    (num_steps is then implied and checked when it is not None).
    """
    _check_policy(final_step)
    if schedule == "explicit":
        if sigmas is None:
            raise ValueError("schedule 'explicit' needs a list of sigmas")
        grid = torch.as_tensor(list(sigmas), dtype=torch.float64)
        check_sigmas(grid, final_step)
        if num_steps is not None and len(grid) - 1 != num_steps:
            raise ValueError(f"explicit sigmas give {len(grid) - 1} steps but num_steps={num_steps}")
        return grid
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    n = num_grid_points(num_steps, final_step)
    if schedule == "edm":
        grid = edm_sigmas(n, sigma_min, sigma_max, rho)
    elif schedule == "logsnr":
        grid = logsnr_sigmas(n, sigma_min, sigma_max)
    elif schedule == "time_uniform":
        grid = time_uniform_sigmas(n, sigma_min, sigma_max, process)
    elif schedule == "time_quadratic":
        grid = time_quadratic_sigmas(n, sigma_min, sigma_max, process)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; accepted: {', '.join(SCHEDULES)}")
    if final_step == "zero":
        grid = torch.cat([grid, grid.new_zeros(1)])
    check_sigmas(grid, final_step)
    return grid


def check_sigmas(sigmas: Tensor, final_step: str) -> None:
    """Raise a one-line ValueError unless ``sigmas`` is a valid grid for ``final_step``."""
    _check_policy(final_step)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"a sigma grid needs at least 2 entries, got shape {tuple(sigmas.shape)}")
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError("sigma grid has non-finite entries")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError(f"sigma grid must be strictly decreasing, got {sigmas.tolist()}")
    last = float(sigmas[-1])
    if final_step == "zero" and last != 0.0:
        raise ValueError(f"final_step 'zero' needs a grid ending at 0, it ends at {last}")
    if final_step != "zero" and last <= 0.0:
        raise ValueError(f"final_step {final_step!r} needs a grid ending at sigma_min > 0, it ends at {last}")
    if bool((sigmas[:-1] <= 0).any()):
        raise ValueError("sigma grid entries before the last must be > 0")
