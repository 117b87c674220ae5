"""Checks on a composed steindiff-sample config: every mistake is one line naming the key,
the value given and what is accepted. Also the run's setting label and .env reading."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


@dataclass
class DiagnosticsConfig:
    lipschitz: bool = False
    lipschitz_iters: int = 8


@dataclass
class DebugConfig:
    throttle_s: float = 0.0  # sleep after each batch (tests use it to interrupt runs mid-way)


@dataclass
class SampleConfig:
    """Schema of conf/sample.yaml: OmegaConf checks the types (nfe=abc is refused), ``validate`` the
    ranges and names. The config groups stay free-form (each is checked by its constructor)."""

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
    shape: list[int] | None = None
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    plots: bool = True
    debug: DebugConfig = field(default_factory=DebugConfig)


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="sample_schema", node=SampleConfig)


register_schema()

DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    pass


def int_at_least(cfg, key: str, low: int, allow_none: bool = False) -> None:
    value = cfg.get(key)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        accepted = f"an integer >= {low}" + (" or null" if allow_none else "")
        raise ConfigError(f"{key}={value!r} is not accepted: expected {accepted}")


def validate(cfg) -> None:
    """Raise ConfigError (one line) on the first invalid value of a composed config."""
    from steindiff.core import FINAL_STEP_POLICIES, PROCESSES, SCHEDULES, parse_seeds

    int_at_least(cfg, "nfe", 1, allow_none=True)
    int_at_least(cfg, "steps", 1, allow_none=True)
    if cfg.get("nfe") is None and cfg.get("steps") is None:
        raise ConfigError("give either nfe (an NFE budget) or steps (a number of steps)")
    int_at_least(cfg, "num_samples", 1)
    int_at_least(cfg, "seed_set", 0)
    int_at_least(cfg, "batch_size", 1)
    if cfg.get("dtype") not in DTYPES:
        raise ConfigError(f"dtype={cfg.get('dtype')!r} is not accepted: expected one of {', '.join(DTYPES)}")
    if cfg.get("process") not in PROCESSES:
        raise ConfigError(f"process={cfg.get('process')!r} is not accepted: expected one of {', '.join(PROCESSES)}")
    if cfg.get("seeds") is not None:
        try:
            parse_seeds(str(cfg.seeds))
        except ValueError as err:
            raise ConfigError(f"seeds={cfg.seeds!r}: {err}") from None
    schedule = cfg.schedule
    if schedule.get("schedule") not in SCHEDULES:
        raise ConfigError(f"schedule.schedule={schedule.get('schedule')!r} is not accepted: "
                          f"expected one of {', '.join(SCHEDULES)}")
    if schedule.get("final_step") not in FINAL_STEP_POLICIES:
        raise ConfigError(f"schedule.final_step={schedule.get('final_step')!r} is not accepted: "
                          f"expected one of {', '.join(FINAL_STEP_POLICIES)}")
    lo, hi = schedule.get("sigma_min", 0.002), schedule.get("sigma_max", 80.0)
    if not (isinstance(lo, int | float) and isinstance(hi, int | float) and 0 < lo < hi):
        raise ConfigError(f"schedule.sigma_min={lo!r}, schedule.sigma_max={hi!r}: expected 0 < sigma_min < sigma_max")
    devices = cfg.trainer.get("devices")
    if isinstance(devices, int) and devices < 1:
        raise ConfigError(f"trainer.devices={devices!r} is not accepted: expected an integer >= 1")
    # constructors of the cheap objects check their own options (one-line ValueErrors)
    from hydra.utils import instantiate

    for group in ("solver", "corrector"):
        if cfg.get(group):
            try:
                instantiate(cfg[group])
            except Exception as err:  # hydra wraps the constructor's error
                cause = err.__cause__ or err
                raise ConfigError(f"{group}: {' '.join(str(cause).split())}") from None
    _check_multirun_ddp(cfg)


def _check_multirun_ddp(cfg) -> None:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        mode = HydraConfig.get().mode
    except Exception:  # not inside a Hydra run (compose API)
        return
    devices = cfg.trainer.get("devices")
    if mode == RunMode.MULTIRUN and "ddp" in str(cfg.trainer.get("strategy")) and devices not in (1, None):
        raise ConfigError("trainer=ddp inside a multirun (-m) is not supported (Lightning's ddp re-runs the "
                          "whole sweep); run each DDP job as a single run")


def label_setting(cfg, hc=None) -> str:
    """'<solver> / <corrector>(overridden corrector keys)' for tables and dashboards."""
    solver = corrector = None
    overrides: list[str] = []
    if hc is not None:
        solver = hc.runtime.choices.get("solver")
        corrector = hc.runtime.choices.get("corrector")
        overrides = list(hc.overrides.task)
    solver = solver or "solver"
    corrector = corrector if cfg.get("corrector") else "none"
    keys = sorted(o.split("=", 1)[0].split(".", 1)[1] + "=" + o.split("=", 1)[1]
                  for o in overrides if o.startswith("corrector.") and "=" in o)
    extra = [o for o in overrides if o.startswith("solver.") and "=" in o]
    label = solver + (f"({', '.join(e.split('.', 1)[1] for e in extra)})" if extra else "")
    return f"{label} / {corrector}" + (f"({', '.join(keys)})" if keys else "")


def load_dotenv(path: Path) -> None:
    """Read KEY=VALUE lines of a .env file into os.environ (existing variables win)."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key, value = key.strip().removeprefix("export "), value.strip().strip("'\"")
        if key and value:
            os.environ.setdefault(key, value)


#: keys that do not change what a run computes: a run folder may be resumed with them changed
RESUMABLE_KEYS = ("logger", "trainer", "plots", "debug")


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_run_folder(cfg, out_dir: Path, seeds: list[int]) -> None:
    """Refuse a folder that holds samples of another configuration; record this one.

    The record (``.steindiff/run.json``: the resolved config and the requested seeds) is written before
    any sample, and ``results.json`` of an earlier attempt is removed, so an interrupted run never
    leaves a results file behind.
    """
    import json

    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=False)
    current = {k: v for k, v in _flatten(container).items() if k.split(".", 1)[0] not in RESUMABLE_KEYS}
    record_path = out_dir / ".steindiff" / "run.json"
    rank = os.environ.get("LOCAL_RANK", "0")
    if record_path.exists():
        saved = json.loads(record_path.read_text())["config"]
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            shown = ", ".join(f"{k} ({saved.get(k)!r} -> {current.get(k)!r})" for k in differing[:6])
            raise ConfigError(f"{out_dir} holds a run with another configuration: {shown}"
                              + (f" and {len(differing) - 6} more" if len(differing) > 6 else "")
                              + "; use a new folder (hydra.run.dir=...)")
    elif (out_dir / "samples").exists() and any((out_dir / "samples").glob("seeds-*.npz")):
        raise ConfigError(f"{out_dir} holds samples but no run record (.steindiff/run.json); refusing to mix")
    if rank == "0":
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_name(".run.json.tmp")
        tmp.write_text(json.dumps({"config": current, "seeds": seeds}, default=str))
        tmp.replace(record_path)
        results = out_dir / "results.json"
        if results.exists():
            results.unlink()


def one_line(err: BaseException) -> str:
    """An error and its cause on one line, without Hydra's search-path, full_key and env-var tails.

    A Hydra "Error in call to target" around a loader's own ValueError is replaced by that error.
    """
    from hydra.errors import InstantiationException

    cause = err.__cause__
    if isinstance(err, InstantiationException) and isinstance(cause, ValueError | FileNotFoundError):
        err, cause = cause, None
    message = " ".join(str(err).split()).split(" Config search path")[0]
    message = message.split(", set env var HYDRA_FULL_ERROR")[0]
    if cause is not None and str(cause):
        message = f"{message}: {' '.join(str(cause).split()).split(' full_key:')[0]}"
    return message


def precheck(prog: str, conf_dir: str, config_name: str, check) -> int | None:
    """Compose the command line once before Hydra runs: a bad override or value is one line and exit 2.

    Returns 2 after printing the error, or None when the config is fine (or multirun/flags are used).
    """
    import sys

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = sys.argv[1:]
    if any(a.startswith("-") for a in argv):  # -m, --help, --cfg ...: Hydra's own handling
        return None
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=argv, return_hydra_config=False)
        check(cfg)
    except (HydraException, OmegaConfBaseException, ConfigError, ValueError) as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    return None
