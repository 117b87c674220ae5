"""A calibrated coefficient schedule (ours, not the paper's): one gamma per step, fitted once.

``steindiff-calibrate`` (``steindiff.calibrate``) runs the trajectory oracle (``OracleCorrector`` with
``reference="trajectory"``: the gamma per step that best follows a high-accuracy solution of the same PF-ODE from
the same noise; it uses the model only, no data) on a set of calibration seeds, and writes the pooled gamma of
each step to a small JSON file with the sigma grid and the solver it was fitted for. ``CalibratedCorrector`` reads
the file and applies that gamma exactly as ``ConstantCorrector`` applies a per-step list (it is one): no NFE, no
statistics, no coupling between samples at sampling time. A step whose gamma is exactly 1 returns the solver's
candidate unchanged, so an all-ones file is bit-identical to no correction.

A schedule is only meaningful on the grid and solver it was fitted for: a run whose sigma grid differs (length,
or any value by more than ``RTOL`` relative) or whose solver differs is refused in one line naming both.

The file (JSON, ``FORMAT`` / ``VERSION``)::

    {"format": "steindiff-calibration", "version": 1,
     "gamma": [..N..],              # the per-step gamma the run applies (pooled over the calibration seeds)
     "gamma_se": [..N..],           # its standard error over the seeds (delta method of the pooled ratio)
     "gamma_quartiles": [[q1, median, q3], ..N..],   # of the per-sample gamma <b, x_ref - a> / |b|^2
     "sigmas": [..N+1..], "final_step": "zero", "target": "data",
     "solver": {"name": "dpmpp_2m", "repr": "DPMSolverPP(...)"},
     ... provenance: schedule, nfe, denoiser (config, checkpoint path and sha256), process, dtype, oracle settings,
     seeds, seconds, steindiff_version, command}

Only ``gamma``, ``sigmas``, ``final_step``, ``target`` and ``solver`` are read back; the rest is the record of how
it was made.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor

from ..schedules import SigmaGrid
from ..solvers.base import Solver, StepOutput
from .base import StepContext
from .constant import ConstantCorrector
from .stein import TARGETS

__all__ = ["CalibratedCorrector", "CalibrationFileError", "FORMAT", "VERSION", "RTOL", "CALIBRATION_DIR",
           "read_schedule", "write_schedule", "resolve_schedule_path", "solver_identity"]

FORMAT = "steindiff-calibration"
VERSION = 1
#: sigma values of the run and the file agree when within this relative difference
RTOL = 1e-6
#: committed schedules, named by file name (``corrector.path=digits_unet-dpmpp_2m-edm-nfe6.json``)
CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "assets" / "calibration"


def resolve_schedule_path(path) -> Path:
    """An absolute path as given; a relative one from the working directory, else from ``CALIBRATION_DIR``."""
    p = Path(os.fspath(path)).expanduser()
    if p.is_absolute() or p.exists():
        return p
    asset = CALIBRATION_DIR / p
    return asset if asset.exists() else p


def solver_identity(solver) -> dict:
    """{"name", "repr"} of a Solver (its repr lists every option), or of a mapping holding these keys."""
    if isinstance(solver, Solver):
        return {"name": solver.name, "repr": repr(solver)}
    if isinstance(solver, Mapping) and "repr" in solver:
        return {"name": str(solver.get("name", "")), "repr": str(solver["repr"])}
    raise ValueError(f"solver must be a steindiff Solver or a {{name, repr}} mapping, got {type(solver).__name__}")


class CalibrationFileError(ValueError):
    """A calibration file that is missing, unreadable or malformed: one line naming the file."""


def _fail(path, what: str) -> CalibrationFileError:
    return CalibrationFileError(" ".join(f"{path}: {what}".split()))


def _floats(record: dict, key: str, path, length: int | None = None) -> list[float]:
    values = record.get(key)
    if not isinstance(values, list) or not values or any(
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in values):
        raise _fail(path, f"{key} must be a non-empty list of finite numbers")
    if length is not None and len(values) != length:
        raise _fail(path, f"{key} has {len(values)} values, expected {length}")
    return [float(v) for v in values]


def read_schedule(path) -> dict:
    """The calibration record of a file, checked: ``gamma`` (N), ``sigmas`` (N + 1), ``final_step``, ``target``,
    ``solver``. A missing, unreadable or malformed file is a one-line ``CalibrationFileError`` (a ValueError)."""
    resolved = resolve_schedule_path(path)
    if not resolved.is_file():
        raise CalibrationFileError(f"{path}: calibration file not found (looked in the working directory and in "
                                f"the package's calibration folder; make one with steindiff-calibrate)")
    try:
        record = json.loads(resolved.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"not a readable calibration JSON file ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        given = record.get("format") if isinstance(record, dict) else None
        raise _fail(path, f"not a calibration file (format={given!r}; expected {FORMAT!r}, as written by "
                          "steindiff-calibrate)")
    if record.get("version") != VERSION:
        raise _fail(path, f"calibration format version {record.get('version')!r}, this steindiff reads {VERSION}")
    gamma = _floats(record, "gamma", path)
    sigmas = _floats(record, "sigmas", path, len(gamma) + 1)
    try:
        SigmaGrid(sigmas, record.get("final_step", "zero"))
    except ValueError as err:
        raise _fail(path, f"sigmas: {err}") from None
    if record.get("target") not in TARGETS:
        raise _fail(path, f"target {record.get('target')!r} is not one of {', '.join(TARGETS)}")
    try:
        solver_identity(record.get("solver"))
    except ValueError:
        raise _fail(path, "solver must be {name, repr} as written by steindiff-calibrate") from None
    return {**record, "gamma": gamma, "sigmas": sigmas, "path": str(resolved)}


def write_schedule(path, record: dict) -> Path:
    """Write a calibration record (``format`` and ``version`` added) as JSON, one key a line; returns the path.
    The file is written under a temporary name first and renamed (never half-written)."""
    path = Path(path)
    record = {"format": FORMAT, "version": VERSION, **{k: v for k, v in record.items() if k != "path"}}
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items()) + "\n}\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _grid_text(sigmas: Sequence[float]) -> str:
    return "[" + ", ".join(f"{s:.6g}" for s in sigmas) + "]"


class CalibratedCorrector(ConstantCorrector):
    """The per-step gamma of a calibration file, applied as ``ConstantCorrector`` applies a per-step list.

    Args:
        path: the calibration JSON (a relative path from the working directory, else from the package's
            ``assets/calibration`` folder, so committed schedules are named by file name).
        solver: the run's solver (a ``Solver``, or {name, repr}); refused in one line when it differs from the
            file's. None: not checked here (``check_run`` checks it with the grid).

    The grid is checked in ``check_steps`` (its length, before the run), ``check_run`` (every value, given the
    grid) and at every step (the step's sigma and sigma_next against the file's, 1e-6 relative).
    NFE: none of its own.
    """

    name = "calibrated"

    def __init__(self, path, solver=None):
        self.schedule = read_schedule(path)
        self.path = str(path)
        super().__init__(gamma=self.schedule["gamma"], target=self.schedule["target"])
        self.per_step = True  # a one-step file is still one value per step
        self.sigmas = self.schedule["sigmas"]
        self.final_step = self.schedule.get("final_step", "zero")
        self.solver = solver_identity(self.schedule["solver"])
        if solver is not None:
            self.check_solver(solver)

    def __repr__(self) -> str:
        return f"CalibratedCorrector(path={self.path!r}, steps={len(self.gammas)}, solver={self.solver['name']!r})"

    # ---- what a run must share with the file ----------------------------------------------------
    def check_solver(self, solver) -> None:
        """A one-line ValueError naming both when the run's solver is not the file's."""
        given = solver_identity(solver)
        if given["repr"] != self.solver["repr"]:
            raise ValueError(f"{self.path} was calibrated for the solver {self.solver['repr']}, this run's solver is "
                             f"{given['repr']}: calibrate this solver (steindiff-calibrate) or use the file's")

    def check_steps(self, num_steps: int) -> None:
        """A one-line ValueError naming both when the run's grid has another number of steps than the file's."""
        if num_steps != len(self.gammas):
            raise ValueError(f"{self.path} was calibrated on a grid of {len(self.gammas)} steps "
                             f"{_grid_text(self.sigmas)}, this run's grid has {num_steps} steps: use the file's "
                             f"nfe/steps, schedule and solver, or calibrate this grid (steindiff-calibrate)")

    def check_grid(self, sigmas: Sequence[float], final_step: str | None = None) -> None:
        """A one-line ValueError naming both grids when the run's sigmas differ from the file's (length, or a value
        by more than ``RTOL`` relative) or its final-step policy does."""
        sigmas = [float(s) for s in sigmas]
        self.check_steps(len(sigmas) - 1)
        differs = [i for i, (a, b) in enumerate(zip(sigmas, self.sigmas)) if not _close(a, b)]
        if differs or (final_step is not None and final_step != self.final_step):
            raise ValueError(f"{self.path} was calibrated on the sigma grid {_grid_text(self.sigmas)} "
                             f"(final_step {self.final_step}), this run's grid is {_grid_text(sigmas)} "
                             f"(final_step {final_step or '?'}): use the file's schedule, nfe and denoiser, or "
                             f"calibrate this grid (steindiff-calibrate)")

    def check_run(self, grid: SigmaGrid, solver) -> None:
        """Both checks before a run: the grid (values and final-step policy) and the solver."""
        self.check_grid(grid.tolist(), grid.final_step)
        self.check_solver(solver)

    def correct(self, x: Tensor, output: StepOutput, context: StepContext) -> tuple[Tensor, dict]:
        self.check_steps(context.num_steps)
        i = context.index
        if not (_close(context.sigma, self.sigmas[i]) and _close(context.sigma_next, self.sigmas[i + 1])):
            raise ValueError(f"{self.path} was calibrated on the sigma grid {_grid_text(self.sigmas)}, this run's "
                             f"step {i} goes {context.sigma:.6g} -> {context.sigma_next:.6g} (file: "
                             f"{self.sigmas[i]:.6g} -> {self.sigmas[i + 1]:.6g}): use the file's schedule, nfe and "
                             f"denoiser, or calibrate this grid (steindiff-calibrate)")
        return super().correct(x, output, context)


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= RTOL * max(abs(a), abs(b))
