"""Sigma grids: plain, descending float64 tensors of EDM noise levels, separate from solvers.

Schedules (all between sigma_max and sigma_min):
- "edm":            EDM's polynomial grid, (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
                    sigma_max^(1/rho)))^rho, rho = 7 by default;
- "logsnr":         uniform in lambda = -log(sigma);
- "time_uniform":   uniform in the process's time t (uniform in sigma for the VE process);
- "time_quadratic": uniform in sqrt(t) (DPM-Solver's "time_quadratic");
- "explicit":       a list the user gives.

``SCHEDULES`` is the registry (name -> grid function); ``Schedule`` is a named schedule with its
bounds and final-step policy (what a config file describes); ``Schedule.grid(num_steps, process)``
returns a ``SigmaGrid``: the sigmas together with the final-step policy, validated once, which is
what the sampling loop, the solvers' NFE and the results carry end to end.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .processes import NoiseProcess, VEProcess

__all__ = [
    "FINAL_STEP_POLICIES", "SCHEDULES", "Schedule", "SigmaGrid", "as_grid", "edm_sigmas", "logsnr_sigmas",
    "time_uniform_sigmas",
    "time_quadratic_sigmas", "build_sigmas", "check_sigmas", "num_grid_points",
]

FINAL_STEP_POLICIES = ("zero", "sigma_min", "denoise")


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


def _edm(num, sigma_min, sigma_max, rho, process):
    return edm_sigmas(num, sigma_min, sigma_max, rho)


def _logsnr(num, sigma_min, sigma_max, rho, process):
    return logsnr_sigmas(num, sigma_min, sigma_max)


def _time_uniform(num, sigma_min, sigma_max, rho, process):
    return time_uniform_sigmas(num, sigma_min, sigma_max, process)


def _time_quadratic(num, sigma_min, sigma_max, rho, process):
    return time_quadratic_sigmas(num, sigma_min, sigma_max, process)


#: name -> grid(num_points, sigma_min, sigma_max, rho, process); "explicit" takes a list instead.
SCHEDULES: dict[str, Callable[..., Tensor] | None] = {
    "edm": _edm, "logsnr": _logsnr, "time_uniform": _time_uniform, "time_quadratic": _time_quadratic,
    "explicit": None,
}


@dataclass(frozen=True, eq=False)
class SigmaGrid:
    """The noise levels of a run and the way it ends, validated once on construction.

    Args:
        sigmas: (N + 1,) strictly decreasing EDM noise levels (held as float64): N steps.
        final_step: "zero" (the grid ends at 0), "sigma_min" (ends at sigma_min > 0, no final
            denoising) or "denoise" (ends at sigma_min, then one more denoiser call: +1 NFE).
    """

    sigmas: Tensor
    final_step: str = "zero"

    def __post_init__(self):
        sigmas = torch.as_tensor(self.sigmas, dtype=torch.float64).detach().cpu()
        check_sigmas(sigmas, self.final_step)
        object.__setattr__(self, "sigmas", sigmas)

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def tolist(self) -> list[float]:
        return [float(s) for s in self.sigmas]

    def __repr__(self) -> str:
        return f"SigmaGrid({self.num_steps} steps, {float(self.sigmas[0]):.4g} -> {float(self.sigmas[-1]):.4g}, " \
               f"final_step={self.final_step!r})"


def as_grid(sigmas: SigmaGrid | Tensor | Sequence[float], final_step: str | None = None) -> SigmaGrid:
    """A SigmaGrid from a grid (returned as is) or from sigmas and a policy (default "zero")."""
    if isinstance(sigmas, SigmaGrid):
        if final_step is not None and final_step != sigmas.final_step:
            raise ValueError(f"final_step={final_step!r} contradicts the grid's {sigmas.final_step!r}")
        return sigmas
    return SigmaGrid(torch.as_tensor(sigmas), final_step or "zero")


class Schedule:
    """A named sigma schedule: ``grid(num_steps, process)`` gives the SigmaGrid of a run.

    Args:
        name: a key of ``SCHEDULES``: edm, logsnr, time_uniform, time_quadratic or explicit.
        final_step: the final-step policy (see ``SigmaGrid``).
        sigma_min, sigma_max: the range of the grid, 0 < sigma_min < sigma_max.
        rho: EDM's exponent (edm only), > 0.
        sigmas: the grid of the "explicit" schedule (ending at 0 for final_step "zero").
    """

    def __init__(self, name: str = "edm", final_step: str = "zero", sigma_min: float = 0.002,
                 sigma_max: float = 80.0, rho: float = 7.0, sigmas: Sequence[float] | None = None):
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; accepted: {', '.join(SCHEDULES)}")
        _check_policy(final_step)
        if name == "explicit":
            if sigmas is None:
                raise ValueError("schedule 'explicit' needs a list of sigmas")
            self.explicit = SigmaGrid(torch.as_tensor(list(sigmas), dtype=torch.float64), final_step)
        else:
            _check_range(1, sigma_min, sigma_max)
            if not rho > 0:
                raise ValueError(f"rho must be > 0, got {rho}")
            self.explicit = None
        self.name, self.final_step, self.rho = name, final_step, float(rho)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def grid(self, num_steps: int | None, process: NoiseProcess | None = None) -> SigmaGrid:
        """The grid of a run of ``num_steps`` steps (implied by the list for "explicit")."""
        if self.explicit is not None:
            if num_steps is not None and num_steps != self.explicit.num_steps:
                raise ValueError(f"explicit sigmas give {self.explicit.num_steps} steps but num_steps={num_steps}")
            return self.explicit
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        n = num_grid_points(int(num_steps), self.final_step)
        grid = SCHEDULES[self.name](n, self.sigma_min, self.sigma_max, self.rho, process or VEProcess())
        if self.final_step == "zero":
            grid = torch.cat([grid, grid.new_zeros(1)])
        return SigmaGrid(grid, self.final_step)

    def clipped(self, sigma_min: float | None, sigma_max: float | None) -> tuple[Schedule, dict[str, float]]:
        """This schedule with its range narrowed to [sigma_min, sigma_max] (a denoiser's trained range)
        and the bounds that changed (empty: unchanged)."""
        changed = {}
        if sigma_min is not None and self.explicit is None and self.sigma_min < sigma_min:
            changed["sigma_min"] = float(sigma_min)
        if sigma_max is not None and self.explicit is None and self.sigma_max > sigma_max:
            changed["sigma_max"] = float(sigma_max)
        if not changed:
            return self, {}
        bounds = {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, **changed}
        return Schedule(self.name, self.final_step, rho=self.rho, **bounds), changed

    def __repr__(self) -> str:
        if self.explicit is not None:
            return f"Schedule(explicit, {self.explicit.num_steps} steps, final_step={self.final_step!r})"
        return (f"Schedule({self.name}, sigma {self.sigma_min:g}..{self.sigma_max:g}"
                + (f", rho={self.rho:g}" if self.name == "edm" else "") + f", final_step={self.final_step!r})")


def build_sigmas(schedule: str, num_steps: int | None, final_step: str = "zero", *, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, rho: float = 7.0, process: NoiseProcess | None = None,
                 sigmas: Sequence[float] | None = None) -> Tensor:
    """The sigmas of a run with ``num_steps`` steps: length num_steps + 1, descending (a tensor;
    ``Schedule(...).grid(...)`` gives the same as a SigmaGrid).

    With final_step "zero" the last entry is 0. ``schedule="explicit"`` takes ``sigmas`` as given
    (num_steps is then implied and checked when it is not None).
    """
    spec = Schedule(schedule, final_step, sigma_min, sigma_max, rho, sigmas)
    return spec.grid(num_steps, process).sigmas


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
