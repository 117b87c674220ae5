"""``baseline=true`` (ours): the same seeds sampled uncorrected beside a corrected run, both results printed.

A corrected run (a corrector other than none, or epsilon scaling) with ``baseline=true`` samples its seeds once
more with ``corrector=none`` and no epsilon scaling (everything else the same: denoiser, grid, solver, seeds,
metrics) into ``<run>/baseline/``, a run folder of its own (results.json, samples, plots; files only, no logger),
then prints one line with both results and writes ``comparison.json``. An interrupted run resumes both: rerun the
same command in the same folder. One process only (a DDP launch is refused before the folder is made).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from steindiff.errors import ConfigError
from steindiff.io import atomic_write_text

__all__ = ["baseline_config", "check_baseline", "compare_with_baseline", "BASELINE_DIR"]

BASELINE_DIR = "baseline"
_NONE = "steindiff.core.correctors.NoCorrector"


def is_corrected(cfg) -> bool:
    """Whether the run changes the uncorrected solver: a corrector other than none, or epsilon scaling."""
    corrector = cfg.get("corrector") or {}
    scaling = cfg.get("epsilon_scaling")
    return (bool(corrector) and corrector.get("_target_") != _NONE) or scaling not in (None, 1, 1.0)


def check_baseline(cfg, world_size: int | None) -> None:
    """A one-line ConfigError for ``baseline=true`` on more than one process (run the baseline as its own command)."""
    if cfg.get("baseline") and (world_size or 1) > 1:
        raise ConfigError(f"baseline=true runs in one process, not on {world_size}: give trainer.devices=1, or run "
                          "the uncorrected setting as its own command (corrector=none)")


def baseline_config(cfg):
    """The uncorrected twin of a corrected run's config, or None (``baseline`` off, or nothing to compare)."""
    if not cfg.get("baseline"):
        return None
    if not is_corrected(cfg):
        print("steindiff-sample: baseline=true: this run is uncorrected already (corrector=none, no epsilon scaling); "
              "no baseline run", file=sys.stderr)
        return None
    twin = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(twin):
        twin.corrector = {"_target_": _NONE}
        twin.epsilon_scaling = None
        twin.baseline = False
        twin.logger = None
    return twin


def compare_with_baseline(corrected: dict, uncorrected: dict, out_dir: Path) -> dict:
    """Print both runs' metrics in one line, write ``comparison.json``; returns the comparison."""
    rows = {}
    for name, value in corrected.get("metrics", {}).items():
        base = uncorrected.get("metrics", {}).get(name)
        change = (value - base) / abs(base) if base not in (None, 0) and math.isfinite(base) else None
        rows[name] = {"corrected": value, "uncorrected": base, "relative_change": change}
    comparison = {"corrected": corrected.get("setting"), "uncorrected": uncorrected.get("setting"),
                  "nfe": {"corrected": corrected.get("nfe"), "uncorrected": uncorrected.get("nfe")},
                  "metrics": rows, "baseline_dir": BASELINE_DIR}
    import json  # start-up: cheap, only runs with a baseline reach here

    atomic_write_text(out_dir / "comparison.json", json.dumps(comparison, indent=1, default=str))
    shown = "; ".join(f"{name} {row['corrected']:.4g} vs {row['uncorrected']:.4g}"
                      + (f" ({100 * row['relative_change']:+.0f}%)" if row["relative_change"] is not None else "")
                      for name, row in rows.items() if row["uncorrected"] is not None)
    print(f"corrected vs uncorrected (same seeds, NFE {corrected.get('nfe')} vs {uncorrected.get('nfe')}): {shown}; "
          f"wrote {out_dir / 'comparison.json'}")
    return comparison
