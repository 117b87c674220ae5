"""The schema of the steindiff-sample config and its cheap value checks (no Hydra runtime needed).

OmegaConf checks the types against ``SampleConfig`` (``nfe=abc`` is refused at composition);
``check_values`` the ranges and names of the plain keys. The config groups stay free-form: each is
checked by the constructor it names when ``build_run`` builds it.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore

from steindiff.errors import ConfigError

__all__ = ["ACCELERATORS", "MAX_SEED", "RESUMABLE_KEYS", "SampleConfig", "check_devices", "check_devices_present",
           "check_group_statistics", "check_known_keys", "check_limits", "check_values", "count_seeds", "int_at_least",
           "register_schema"]

#: keys that do not change what a run computes: a run folder may be resumed with them changed
RESUMABLE_KEYS = ("logger", "trainer", "plots", "debug", "run_name", "run_group", "num_threads", "limits")
#: the largest seed: torch.Generator.manual_seed takes a signed 64-bit integer
MAX_SEED = 2**63 - 1


@dataclass
class DiagnosticsConfig:
    """``diagnostics.*``: the per-step observers a run records."""

    lipschitz: bool = False  # record the step map's local Lipschitz constant per step (an observer)
    lipschitz_iters: int = 8
    # ours: Stein's estimate beside the oracle gamma at each step's state (EstimatorObserver)
    estimator: bool = False
    estimator_reference: str = "posterior"  # posterior (the mixture denoisers) | trajectory (any model)
    estimator_target: str = "data"
    estimator_statistics: str = "batch"
    estimator_probes: int = 5
    # ours: Stein estimator variants read instead of the single estimate, "stein_estimate[name]" each (null: off):
    # corrector options [stein,stein_renoised], {name: option} or {name: {corrector: option, key: value}}
    estimator_correctors: Any = None


@dataclass
class LimitsConfig:
    """``limits.*``: upper bounds that keep a typo (``nfe=1000000``, ``seeds=0-999999999``) from running for hours
    and filling the disk; raise them on the command line to go beyond."""

    max_nfe: int = 10_000  # nfe and steps at most this
    max_samples: int = 1_000_000  # samples (num_samples, or seeds given) per run: 20 x an FID-50k run


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
    epsilon_scaling: float | None = None  # ours: Ning et al. 2023, eps / lambda at every evaluation (null: off)
    baseline: bool = False  # ours: also sample the same seeds uncorrected (baseline/) and print both results
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    plots: bool = True
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    run_name: Any = None
    run_group: Any = None
    debug: DebugConfig = field(default_factory=DebugConfig)


def register_schema() -> None:
    """Make ``sample_schema`` (named in sample.yaml's defaults) known to Hydra; idempotent."""
    ConfigStore.instance().store(name="sample_schema", node=SampleConfig)


def int_at_least(cfg, key: str, low: int, allow_none: bool = False, prefix: str = "") -> None:
    """A one-line ConfigError unless ``cfg[key]`` is an integer >= low (or None where allowed); ``prefix`` names
    the node in the message (``diagnostics.``)."""
    value = cfg.get(key)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        accepted = f"an integer >= {low}" + (" or null" if allow_none else "")
        raise ConfigError(f"{prefix}{key}={value!r} is not accepted: expected {accepted}")


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
    check themselves; ``steindiff.cli.checks`` builds them before the run folder is claimed)."""
    check_known_keys(cfg)
    int_at_least(cfg, "nfe", 1, allow_none=True)
    int_at_least(cfg, "steps", 1, allow_none=True)
    if cfg.get("nfe") is None and cfg.get("steps") is None:
        raise ConfigError("give either nfe (an NFE budget) or steps (a number of steps)")
    int_at_least(cfg, "num_samples", 1)
    int_at_least(cfg, "seed_set", 0)
    int_at_least(cfg, "batch_size", 1)
    int_at_least(cfg, "num_threads", 1, allow_none=True)
    int_at_least(cfg.diagnostics, "lipschitz_iters", 1, prefix="diagnostics.")
    _check_epsilon_scaling(cfg.get("epsilon_scaling"))
    check_limits(cfg)
    if cfg.get("shape") is not None and (not list(cfg.shape) or min(int(s) for s in cfg.shape) < 1):
        raise ConfigError(f"shape={list(cfg.shape)} is not accepted: expected positive sizes, e.g. [2] or [1,8,8]")
    check_group_statistics(cfg)
    from steindiff.core.processes import PROCESSES  # start-up: imports torch (1.2 s); --help never needs it

    if cfg.get("process") not in PROCESSES:
        raise ConfigError(f"process={cfg.get('process')!r} is not accepted: expected one of {', '.join(PROCESSES)}")
    check_devices(cfg.get("trainer"))


def check_limits(cfg) -> None:
    """``nfe``/``steps`` at most ``limits.max_nfe``; the run's samples (num_samples, or the seeds given, counted
    without listing them) at most ``limits.max_samples``; every seed in [0, 2**63 - 1]."""
    limits = cfg.get("limits") or {}
    for key in ("max_nfe", "max_samples"):
        int_at_least(limits, key, 1, prefix="limits.")
    max_nfe, max_samples = limits.get("max_nfe", LimitsConfig.max_nfe), limits.get("max_samples",
                                                                                    LimitsConfig.max_samples)
    for key in ("nfe", "steps"):
        if cfg.get(key) is not None and cfg.get(key) > max_nfe:
            raise ConfigError(f"{key}={cfg.get(key)} is not accepted: more than limits.max_nfe={max_nfe} (a run "
                              f"that long writes a trace of every step); give limits.max_nfe={cfg.get(key)} to run it")
    if cfg.get("seeds") is None:
        count, given = cfg.num_samples, f"num_samples={cfg.num_samples}"
        top = (cfg.seed_set + 1) * cfg.num_samples - 1
        if top > MAX_SEED:
            raise ConfigError(f"seed_set={cfg.seed_set} with num_samples={cfg.num_samples} gives seeds up to {top}, "
                              f"beyond the largest seed 2**63 - 1: give a smaller seed_set")
    else:
        count, given = count_seeds(str(cfg.seeds)), f"seeds={cfg.seeds}"
    if count is not None and count > max_samples:
        raise ConfigError(f"{given} is not accepted: {count} samples, more than limits.max_samples={max_samples}; "
                          f"split it into runs (seed_set=0, 1, ... or seeds ranges), or give "
                          f"limits.max_samples={count}")


def count_seeds(spec: str) -> int | None:
    """How many seeds ``seeds=<spec>`` ('0-99,200') gives, without listing them; None where ``spec`` is
    malformed (``parse_seeds`` then says how). A seed beyond 2**63 - 1 is a ConfigError."""
    count = 0
    for part in spec.split(","):
        match = _SEED_RANGE.match(part)
        if not match:
            return None
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if max(low, high) > MAX_SEED:
            raise ConfigError(f"seeds={spec} is not accepted: seed {max(low, high)} is beyond the largest seed "
                              f"2**63 - 1 (torch generators take signed 64-bit seeds)")
        count += max(high - low + 1, 0)
    return count


_SEED_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")  # steindiff.core.rng's, without importing torch


def check_group_statistics(cfg) -> None:
    """``corrector.statistics=group`` pools statistics over groups of ``group_size`` consecutive seeds; a batch
    that splits a group would change samples with the batch size, so batch_size must hold whole groups."""
    corrector = cfg.get("corrector") or {}
    if corrector.get("statistics") != "group":
        return
    group = corrector.get("group_size")
    if isinstance(group, int) and group >= 1 and cfg.batch_size % group:
        multiple = max(cfg.batch_size // group, 1) * group
        raise ConfigError(f"batch_size={cfg.batch_size} is not accepted with corrector.statistics=group: it splits "
                          f"groups of corrector.group_size={group} (samples would depend on the batch size); give "
                          f"a multiple of {group}, e.g. batch_size={multiple}")


#: the accelerators the apps accept (Lightning's names)
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def check_devices(trainer) -> None:
    """``trainer.accelerator`` known and present on this machine; ``trainer.devices`` a count, -1, "auto", or a
    list of device indices; ``trainer.num_nodes`` >= 1."""
    if not trainer:
        return
    accelerator, devices = str(trainer.get("accelerator", "auto")), trainer.get("devices", "auto")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator={accelerator!r} is not accepted: expected one of "
                          f"{', '.join(ACCELERATORS)}")
    if not _devices_ok(devices, cpu=accelerator == "cpu"):
        accepted = ("a number of processes >= 1 or auto" if accelerator == "cpu" else
                    "a number of devices >= 1, -1 (all), auto, or a list of device indices such as [0,1]")
        raise ConfigError(f"trainer.devices={devices!r} is not accepted with trainer.accelerator={accelerator}: "
                          f"expected {accepted}")
    int_at_least(trainer, "num_nodes", 1, allow_none=True, prefix="trainer.")


def check_devices_present(trainer) -> None:
    """The accelerator ``trainer`` names is on this machine, with as many devices as asked (the app checks this
    before it starts; ``build_run`` does not: a config may be built on a machine other than the one it runs on)."""
    if not trainer:
        return
    import torch  # start-up: the app imports it for the run anyway

    accelerator, devices = str(trainer.get("accelerator", "auto")), trainer.get("devices", "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} needs a CUDA GPU, and torch sees none on this machine: "
                          "give trainer=cpu (or trainer.accelerator=auto)")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps needs Apple's MPS, not available here: give trainer=cpu")
    count = int(devices) if isinstance(devices, int) or str(devices).isdigit() else None
    if accelerator in ("gpu", "cuda") and count is not None and count > torch.cuda.device_count():
        raise ConfigError(f"trainer.devices={devices} is not accepted: this machine has "
                          f"{torch.cuda.device_count()} GPUs")


def _devices_ok(devices, cpu: bool) -> bool:
    """Lightning's accepted ``devices``: on CPU a count or auto; elsewhere also -1 and device indices."""
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or (devices == -1 and not cpu)
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto" or (text.isdigit() and int(text) >= 1):
            return True
        return not cpu and (text == "-1" or bool(re.fullmatch(r"(\d+\s*,\s*)+\d*", text)))
    if cpu:
        return False
    try:
        return len(devices) > 0 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    except TypeError:
        return False


def _check_epsilon_scaling(value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not math.isfinite(value) or value <= 0):
        raise ConfigError(f"epsilon_scaling={value!r} is not accepted: expected null (off) or a number > 0, "
                          "e.g. 1.005")


register_schema()
