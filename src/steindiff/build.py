"""``build_run(cfg)``: a composed config becomes the objects of one run, and nothing else happens.

    from steindiff.build import build_run, compose_sample_config
    run = build_run(compose_sample_config(["solver=heun", "nfe=10", "corrector=stein"]))
    result = run.sample()            # steindiff.core.sample with everything the config says
    run.grid, run.solver, run.corrector, run.metrics, run.seeds

No Lightning and no file writing: the app (``steindiff-sample``), the tests, the notebooks and the
benchmarks all build their runs here, so a config means the same thing everywhere. Each piece is
built once, from its config group's ``_target_`` (the one plugin mechanism), and checked as it is
built; the first mistake is a one-line ``ConfigError`` (a ``ValueError``) naming the key.

What the denoiser declares (``DenoiserSpec``) is used, never probed: its process replaces
``cfg.process`` (a network trained on a process brings its prior and time map), its trained sigma
range narrows the schedule (reported in ``Run.notes``), its sample shape is the run's unless
``cfg.shape`` gives one (which must then agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from steindiff import controls
from steindiff.config import check_values, register_schema
from steindiff.core import (
    Corrector,
    LipschitzObserver,
    Observer,
    SampleResult,
    Schedule,
    SigmaGrid,
    Solver,
    make_process,
    num_steps_for_nfe,
    parse_seeds,
    sample,
    spec_of,
)
from steindiff.core.dtypes import parse_dtype
from steindiff.errors import ConfigError
from steindiff.instantiation import built as _built

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

__all__ = ["Run", "build_run", "build_metrics", "compose_sample_config", "run_seeds"]


@dataclass
class Run:
    """The composed objects of one sampling run.

    Args:
        denoiser: the denoiser (its ``spec`` declares shape, classes, process, trained range).
        grid: the sigma grid with its final-step policy.
        solver, corrector: the PF-ODE solver and the per-step corrector ("none" is a corrector).
        observers: per-step diagnostics (the Lipschitz probe); they change neither samples nor NFE.
        metrics: a torchmetrics MetricCollection, updated as ``update(samples, seeds=...)``, or None.
        decoder: latent -> pixel stage before the metrics, or None.
        seeds: one seed per sample; shape: the shape of one sample.
        process: the noise process the sampler starts from and converts with.
        dtype: the sampling dtype; batch_size: seeds per batch.
        nfe_budget: the NFE budget asked for (None when steps were given).
        notes: what building changed and a user should hear (a clipped schedule).
    """

    denoiser: torch.nn.Module
    grid: SigmaGrid
    solver: Solver
    corrector: Corrector
    observers: list[Observer]
    metrics: MetricCollection | None
    decoder: torch.nn.Module | None
    seeds: list[int]
    shape: tuple[int, ...]
    process: object
    dtype: torch.dtype
    batch_size: int
    nfe_budget: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def expected_nfe(self) -> int:
        """The NFE per trajectory that the solver's formula gives for this grid."""
        return self.solver.nfe(self.grid.num_steps, self.grid.final_step)

    def sample(self, seeds: Sequence[int] | None = None, progress: bool = False, **kwargs) -> SampleResult:
        """``steindiff.core.sample`` of this run (all its seeds unless others are given); ``kwargs`` (device,
        observers, ...) go to ``sample`` and override the run's own."""
        options = {"batch_size": self.batch_size, "process": self.process, "dtype": self.dtype,
                   "observers": self.observers, **kwargs}
        return sample(self.denoiser, self.grid, self.solver, self.corrector, seeds=self.seeds if seeds is None
                      else seeds, shape=self.shape, progress=progress, **options)


def compose_sample_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The steindiff-sample config of the packaged config files with command-line ``overrides``.

    The Hydra runtime is absent (``${hydra:...}`` keys stay unresolved): enough for ``build_run``.
    """
    register_schema()
    with initialize_config_module(config_module="steindiff.conf.sample", version_base="1.3"):
        return compose(config_name="sample", overrides=list(overrides))


def run_seeds(cfg) -> list[int]:
    """The run's seeds: ``seeds`` when given, else seed_set * num_samples .. (seed_set + 1) * num_samples - 1."""
    if cfg.seeds is not None:
        try:
            return parse_seeds(str(cfg.seeds))
        except ValueError as err:
            raise ConfigError(f"seeds={cfg.seeds!r}: {err}") from None
    return list(range(cfg.seed_set * cfg.num_samples, (cfg.seed_set + 1) * cfg.num_samples))


def _schedule(cfg, spec, notes: list[str]) -> Schedule:
    schedule = _built("schedule", cfg.schedule)
    if not isinstance(schedule, Schedule):
        raise ConfigError(f"schedule: {cfg.schedule.get('_target_')} does not build a steindiff Schedule")
    schedule, changed = schedule.clipped(spec.sigma_min, spec.sigma_max)
    if changed:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in changed.items())
        notes.append(f"schedule clipped to the denoiser's trained range: {shown}")
    return schedule


def _grid(cfg, solver: Solver, schedule: Schedule, process) -> SigmaGrid:
    try:
        steps = cfg.steps if cfg.steps is not None else num_steps_for_nfe(solver, cfg.nfe, schedule.final_step)
        return schedule.grid(steps, process)
    except ValueError as err:
        raise ConfigError(f"schedule: {err}") from None


def _shape(cfg, spec) -> tuple[int, ...]:
    """The sample shape: ``shape`` in the config (checked against the denoiser's), else the declared one."""
    if cfg.shape is None:
        if spec.shape is None:
            raise ConfigError("shape=null but the denoiser does not declare its sample shape: give shape=[C,H,W] "
                              "(images) or shape=[d]")
        return spec.shape
    shape = tuple(int(s) for s in cfg.shape)
    if not shape or min(shape) < 1:
        raise ConfigError(f"shape={list(cfg.shape)} is not accepted: expected positive sizes, e.g. [2] or [1,8,8]")
    if spec.shape is not None and shape != spec.shape:
        raise ConfigError(f"shape={list(shape)} does not fit the denoiser, which declares {list(spec.shape)}")
    return shape


def build_metrics(cfg: DictConfig, denoiser):
    """The run's metrics (a torchmetrics ``MetricCollection``), or None without a metrics config.

    A metrics config with a ``denoiser`` key (the trajectory error) gets the run's own denoiser object, not a
    second copy built from the interpolated config.
    """
    if not cfg.get("metrics") or "_target_" not in cfg.metrics:  # metrics=none (an experiment may still set keys
        return None                                                # of its own metrics, e.g. metrics.data)
    from torchmetrics import Metric, MetricCollection  # start-up: 2-3 s; runs without metrics never pay it

    denoiser = controls.unscaled(denoiser)  # the trajectory reference follows the model's ODE, not epsilon scaling's
    metrics = _built("metrics", cfg.metrics, **({"denoiser": denoiser} if "denoiser" in cfg.metrics else {}))
    if isinstance(metrics, Metric):
        metrics = MetricCollection({type(metrics).__name__.lower(): metrics})
    if not isinstance(metrics, MetricCollection):
        raise ConfigError(f"metrics: {cfg.metrics.get('_target_')} builds {type(metrics).__name__}, expected a "
                          "torchmetrics Metric or MetricCollection")
    return metrics


def build_run(cfg: DictConfig, metrics: bool = True) -> Run:
    """The run a composed steindiff-sample config describes (see the module docstring).

    ``metrics=False`` leaves ``run.metrics`` None (the app builds them with ``build_metrics`` while its first
    batch samples).
    """
    check_values(cfg)
    denoiser = controls.scaled_denoiser(cfg, _built("denoiser", cfg.denoiser))  # epsilon_scaling (ours)
    spec, notes = spec_of(denoiser), []
    process = spec.process or make_process(cfg.process)
    solver = _built("solver", cfg.solver)
    schedule = _schedule(cfg, spec, notes)
    grid = _grid(cfg, solver, schedule, process)
    corrector = _built("corrector", cfg.corrector, **controls.corrector_kwargs(cfg))  # the oracle's data law
    controls.check_steps(corrector, grid.num_steps, grid, solver)
    observers = [LipschitzObserver(iters=cfg.diagnostics.lipschitz_iters)] if cfg.diagnostics.lipschitz else []
    observers += controls.estimator_observers(cfg)
    return Run(denoiser=denoiser, grid=grid, solver=solver, corrector=corrector, observers=observers,
               metrics=build_metrics(cfg, denoiser) if metrics else None,
               decoder=_built("decoder", cfg.decoder) if cfg.get("decoder") else None,
               seeds=run_seeds(cfg), shape=_shape(cfg, spec), process=process,
               dtype=parse_dtype(cfg.dtype, "dtype", ("float32", "float64")), batch_size=cfg.batch_size,
               nfe_budget=None if cfg.steps is not None else cfg.nfe, notes=notes)

