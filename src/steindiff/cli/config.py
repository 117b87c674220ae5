"""What the sampling app derives from the Hydra runtime: the setting label, the run's dashboard name
and group (OmegaConf resolvers), and the refusal of DDP inside a multirun.

The config's schema and value checks live in ``steindiff.config`` (no Hydra runtime needed).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from steindiff.errors import ConfigError

__all__ = ["check_multirun_ddp", "label_setting", "register_resolvers"]


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
    solver = solver or "solver"
    corrector = corrector if cfg.get("corrector") else "none"
    keys = sorted(o.split("=", 1)[0].split(".", 1)[1] + "=" + o.split("=", 1)[1]
                  for o in overrides if o.startswith("corrector.") and "=" in o)
    extra = [o for o in overrides if o.startswith("solver.") and "=" in o]
    label = solver + (f"({', '.join(e.split('.', 1)[1] for e in extra)})" if extra else "")
    return f"{label} / {corrector}" + (f"({', '.join(keys)})" if keys else "")


def _setting(*, _root_) -> str:
    return label_setting(_root_, HydraConfig.get() if HydraConfig.initialized() else None)


def _sweep_name() -> str | None:
    return Path(HydraConfig.get().sweep.dir).name if HydraConfig.initialized() else None


def register_resolvers() -> None:
    """``${steindiff_setting:}`` (the setting label) and ``${steindiff_sweep:}`` (the sweep folder's name):
    sample.yaml names and groups its dashboard runs with them. Idempotent."""
    OmegaConf.register_new_resolver("steindiff_setting", _setting, replace=True)
    OmegaConf.register_new_resolver("steindiff_sweep", _sweep_name, replace=True)


register_resolvers()
