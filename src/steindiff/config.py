"""The schema of the steindiff-sample config and its cheap value checks (no Hydra runtime needed).

OmegaConf checks the types against ``SampleConfig`` (``nfe=abc`` is refused at composition);
``check_values`` the ranges and names of the plain keys. The config groups stay free-form: each is
checked by the constructor it names when ``build_run`` builds it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore

from steindiff.errors import ConfigError

__all__ = ["SampleConfig", "register_schema", "check_known_keys", "check_values", "int_at_least",
           "RESUMABLE_KEYS"]

#: keys that do not change what a run computes: a run folder may be resumed with them changed
RESUMABLE_KEYS = ("logger", "trainer", "plots", "debug", "run_name", "run_group", "num_threads")


@dataclass
class DiagnosticsConfig:
    """``diagnostics.*``: the per-step observers a run records."""

    lipschitz: bool = False  # record the step map's local Lipschitz constant per step (an observer)
    lipschitz_iters: int = 8


@dataclass
class DebugConfig:
    """``debug.*``: testing aids."""

    throttle_s: float = 0.0  # sleep after each batch (tests use it to interrupt runs mid-way)
    prefetch: bool = True  # sample the first batch while the app starts (same results; false to compare)


@dataclass
class SampleConfig:
    """Schema of conf/sample/sample.yaml (the groups are free-form; the plain keys are typed)."""

    denoiser: Any = None
    schedule: Any = None
    solver: Any = None
    corrector: Any = None
    metrics: Any = None
    decoder: Any = None
    logger: Any = None
    trainer: Any = None
    nfe: int | None = 8
    steps: int | None = None
    process: str = "ve"
    num_samples: int = 1000
    seed_set: int = 0
    seeds: str | None = None
    batch_size: int = 500
    dtype: str = "float32"
    num_threads: int | None = 1
    shape: list[int] | None = None
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    plots: bool = True
    run_name: Any = None
    run_group: Any = None
    debug: DebugConfig = field(default_factory=DebugConfig)


def register_schema() -> None:
    """Make ``sample_schema`` (named in sample.yaml's defaults) known to Hydra; idempotent."""
    ConfigStore.instance().store(name="sample_schema", node=SampleConfig)


def int_at_least(cfg, key: str, low: int, allow_none: bool = False) -> None:
    """A one-line ConfigError unless ``cfg[key]`` is an integer >= low (or None where allowed)."""
    value = cfg.get(key)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        accepted = f"an integer >= {low}" + (" or null" if allow_none else "")
        raise ConfigError(f"{key}={value!r} is not accepted: expected {accepted}")


def check_known_keys(cfg) -> None:
    """A one-line ConfigError for a top-level key the schema does not have (``+seed=42`` composes, and nothing
    would read it); the app refuses it earlier, with the override, in ``steindiff.cli.app.precheck``."""
    accepted = [f.name for f in fields(SampleConfig)]
    unknown = [key for key in cfg.keys() if key not in accepted and key != "hydra"]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), accepted, n=1, cutoff=0.6)
        raise ConfigError(f"{unknown[0]} is not a key of the steindiff-sample config"
                          + (f" (did you mean {close[0]}?)" if close else "")
                          + f"; accepted top-level keys: {', '.join(sorted(accepted))}")


def check_values(cfg) -> None:
    """Raise a one-line ConfigError on the first unknown top-level key or plain key out of range (the groups
    check themselves)."""
    check_known_keys(cfg)
    int_at_least(cfg, "nfe", 1, allow_none=True)
    int_at_least(cfg, "steps", 1, allow_none=True)
    if cfg.get("nfe") is None and cfg.get("steps") is None:
        raise ConfigError("give either nfe (an NFE budget) or steps (a number of steps)")
    int_at_least(cfg, "num_samples", 1)
    int_at_least(cfg, "seed_set", 0)
    int_at_least(cfg, "batch_size", 1)
    int_at_least(cfg, "num_threads", 1, allow_none=True)
    int_at_least(cfg.diagnostics, "lipschitz_iters", 1)
    from steindiff.core.processes import PROCESSES  # start-up: imports torch (1.2 s); --help never needs it

    if cfg.get("process") not in PROCESSES:
        raise ConfigError(f"process={cfg.get('process')!r} is not accepted: expected one of {', '.join(PROCESSES)}")
    devices = cfg.trainer.get("devices") if cfg.get("trainer") else None
    if isinstance(devices, int) and devices < 1:
        raise ConfigError(f"trainer.devices={devices!r} is not accepted: expected an integer >= 1")


register_schema()
