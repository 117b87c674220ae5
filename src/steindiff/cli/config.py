"""What the sampling app derives from the Hydra runtime: the setting label, the run's dashboard name
and group (OmegaConf resolvers), and the refusal of DDP inside a multirun.

The config's schema and value checks live in ``steindiff.config`` (no Hydra runtime needed).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from steindiff.config import RESUMABLE_KEYS
from steindiff.errors import ConfigError

__all__ = ["check_multirun_ddp", "label_setting", "log_file", "register_resolvers", "run_group", "run_name"]


def check_multirun_ddp(cfg) -> None:
    """Refuse Lightning's ddp inside a Hydra multirun (it re-runs the whole sweep)."""
    if not HydraConfig.initialized():
        return
    devices = cfg.trainer.get("devices")
    if HydraConfig.get().mode == RunMode.MULTIRUN and "ddp" in str(cfg.trainer.get("strategy")) \
            and devices not in (1, None):
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
    solver = solver or _class_name(cfg.get("solver")) or "solver"  # no Hydra runtime (compose API): the class
    corrector = (corrector or _class_name(cfg.corrector)) if cfg.get("corrector") else "none"
    keys = sorted(o.split("=", 1)[0].split(".", 1)[1] + "=" + o.split("=", 1)[1]
                  for o in overrides if o.startswith("corrector.") and "=" in o)
    extra = [o for o in overrides if o.startswith("solver.") and "=" in o]
    label = solver + (f"({', '.join(e.split('.', 1)[1] for e in extra)})" if extra else "")
    return f"{label} / {corrector}" + (f"({', '.join(keys)})" if keys else "")


def _class_name(node) -> str | None:
    target = node.get("_target_") if node else None
    return str(target).rsplit(".", 1)[-1] if target else None


def run_name(cfg, hc=None) -> str:
    """The run's dashboard name: setting, the other overrides that change what it computes, NFE (or steps) and
    seed set, e.g. ``dpmpp_2m · stein(gamma_min=0.5) · schedule=logsnr · NFE 8 · seeds 0-999``. Safe as a
    W&B name and as a file name (no path separators)."""
    return _safe(" · ".join([*_setting_parts(cfg, hc), _seed_label(cfg)]))


def run_group(cfg, hc=None) -> str:
    """The run's dashboard group: in a multirun the sweep (its folder: ``<date>_<time>`` in the default layout,
    else the folder's name); a single run is grouped with the runs of its setting that differ only in seeds
    (its name without the seed set), never by a clock time."""
    if hc is not None and hc.mode == RunMode.MULTIRUN:
        folder = Path(hc.sweep.dir)
        dated = _DATE.fullmatch(folder.parent.name) is not None
        return _safe(f"{folder.parent.name}_{folder.name}" if dated else folder.name)
    return _safe(" · ".join(_setting_parts(cfg, hc)))


#: overrides the run name does not repeat: said by the setting label, the NFE or the seed set, or not changing
#: what a run computes (steindiff.config.RESUMABLE_KEYS)
_NAMED_KEYS = ("solver", "corrector", "nfe", "steps", "seed_set", "seeds", "num_samples", "hydra", *RESUMABLE_KEYS)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f]')
_MAX_NAME = 128  # W&B display names and file names stay readable below this


def _setting_parts(cfg, hc) -> list[str]:
    """[solver, corrector(overrides), the other overrides, NFE or steps]."""
    solver, _, corrector = label_setting(cfg, hc).partition(" / ")
    others = [_short(o) for o in (hc.overrides.task if hc is not None else ())
              if "=" in o and o.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0] not in _NAMED_KEYS]
    budget = f"{cfg.steps} steps" if cfg.get("steps") is not None else f"NFE {cfg.get('nfe')}"
    return [solver, corrector, *([", ".join(others)] if others else []), budget]


def _short(override: str) -> str:
    """``key=value`` with a path value shortened to its file name."""
    key, value = override.lstrip("+~").split("=", 1)
    return f"{key}={Path(value).name}" if "/" in value else f"{key}={value}"


def _seed_label(cfg) -> str:
    if cfg.get("seeds"):
        return f"seeds {cfg.seeds}"
    first = int(cfg.get("seed_set", 0)) * int(cfg.num_samples)
    return f"seeds {first}-{first + int(cfg.num_samples) - 1}"


def _safe(name: str) -> str:
    name = _UNSAFE.sub("_", name)
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "…"


def _hydra():
    return HydraConfig.get() if HydraConfig.initialized() else None


def _setting(*, _root_) -> str:
    return label_setting(_root_, _hydra())


def _sweep_name() -> str | None:
    return Path(HydraConfig.get().sweep.dir).name if HydraConfig.initialized() else None


def log_file(name: str) -> str:
    """The log file of this process: ``<name>.log`` for rank 0, ``<name>_rank<r>.log`` for the other ranks of a
    DDP launch (Lightning renames their Hydra job, which would otherwise name the file after its launcher)."""
    rank = int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)
    return f"{name}.log" if rank == 0 else f"{name}_rank{rank}.log"


def register_resolvers() -> None:
    """``${steindiff_run_name:}`` and ``${steindiff_run_group:}`` (``run_name``, ``run_group``): sample.yaml names
    and groups its dashboard runs with them; ``${steindiff_log_file:sample}`` names each rank's log file
    (``log_file``). ``${steindiff_setting:}`` (the setting label) and ``${steindiff_sweep:}`` (the sweep folder's
    name) stay for configs written before. Idempotent."""
    OmegaConf.register_new_resolver("steindiff_log_file", log_file, replace=True)
    OmegaConf.register_new_resolver("steindiff_run_name", lambda *, _root_: run_name(_root_, _hydra()), replace=True)
    OmegaConf.register_new_resolver("steindiff_run_group", lambda *, _root_: run_group(_root_, _hydra()),
                                    replace=True)
    OmegaConf.register_new_resolver("steindiff_setting", _setting, replace=True)
    OmegaConf.register_new_resolver("steindiff_sweep", _sweep_name, replace=True)


register_resolvers()
