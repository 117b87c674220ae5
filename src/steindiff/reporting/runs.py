"""Read the sampling runs under a folder: each job's results.json, its resolved config and config choices.

    jobs = load_jobs(Path("runs/multirun/2024-01-01/12-00-00"))   # sorted by job folder (0, 1, 2, ..., 10)

A job's ``config`` is its resolved config flattened to dotted keys ("denoiser.temperature"), without the
keys that cannot define a setting (BOOKKEEPING: seeds, logger, trainer, plots, run names, thread count;
the NFE keys ``nfe``/``steps`` are the report's x axis). ``choices`` are the config-group options
(``schedule: logsnr``) from Hydra's .hydra/hydra.yaml, or guessed from the config where that is missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steindiff.config import RESUMABLE_KEYS
from steindiff.runfolder import flatten

__all__ = ["BOOKKEEPING", "FIELDS", "GROUPS", "Job", "ReportError", "load_jobs"]

REQUIRED = ("setting", "solver", "corrector", "nfe_budget", "nfe", "metrics", "complete")
#: results.json fields copied into results.csv
FIELDS = ("setting", "solver", "corrector", "nfe_budget", "nfe", "num_steps", "final_step", "seed_set", "seeds",
          "num_samples", "complete")
#: config groups whose option name (a Hydra choice) stands for the whole group
GROUPS = ("solver", "corrector", "schedule", "denoiser", "decoder", "metrics")
#: top-level keys that cannot define a setting. RESUMABLE_KEYS (logger, trainer, plots, debug, run_name,
#: run_group, num_threads) are the keys a run folder may resume with changed, i.e. they do not change what a
#: run computes (trainer: DDP gives the same samples, tests/test_app.py). The seeds pick a seed set; nfe and
#: steps are the x axis. batch_size is NOT here: corrector statistics=batch couple the samples of a batch.
BOOKKEEPING = frozenset({*RESUMABLE_KEYS, "seed_set", "seeds", "hydra", "nfe", "steps"})


class ReportError(Exception):
    """A problem with the input: reported on one line, exit code 2."""


@dataclass
class Job:
    """One run folder. path: relative to the report's folder. info: the FIELDS of results.json.
    seed_key: which seed set it sampled. x: its NFE budget (the measured NFE of a run given ``steps``)."""

    path: str
    info: dict
    metrics: dict[str, float]
    complete: bool
    config: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    seed_key: str = ""
    x: int = 0


def load_jobs(folder: Path) -> list[Job]:
    """Every run under ``folder`` that has a results.json, in job order."""
    if not folder.is_dir():
        raise ReportError(f"folder not found: {folder}")
    files = sorted(folder.rglob("results.json"), key=lambda f: [(not p.isdigit(), int(p) if p.isdigit() else 0, p)
                                                                for p in f.relative_to(folder).parts])
    if not files:
        raise ReportError(f"no results.json found under {folder}")
    return [_load_job(f, folder) for f in files]


def _load_job(path: Path, folder: Path) -> Job:
    data = _read_results(path)
    try:
        metrics = {k: math.nan if v is None else float(v) for k, v in data["metrics"].items()}
    except (TypeError, ValueError):
        raise ReportError(f"{path}: key 'metrics' holds a non-numeric value") from None
    config = _read_config(path.parent, data)
    job = Job(path=path.parent.relative_to(folder).as_posix(), info={k: data.get(k, "") for k in FIELDS},
              metrics=metrics, complete=bool(data["complete"]))
    job.config = _normalized({k: v for k, v in flatten(config).items() if k.split(".", 1)[0] not in BOOKKEEPING})
    job.choices = _choices(path.parent, data, config)
    seeds = data.get("seeds") or config.get("seeds")
    job.seed_key = f"seeds {seeds}" if seeds else f"seed_set {data.get('seed_set', config.get('seed_set'))}"
    job.x = int(data["nfe_budget"] if data["nfe_budget"] is not None else data["nfe"])
    return job


def _read_results(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object")
    for key in REQUIRED:
        if key not in data:
            raise ReportError(f"{path}: missing required key '{key}'")
    if not isinstance(data["metrics"], dict):
        raise ReportError(f"{path}: key 'metrics' is not an object")
    if data["nfe_budget"] is None and not isinstance(data["nfe"], int):
        raise ReportError(f"{path}: neither 'nfe_budget' nor 'nfe' is an integer")
    return data


def _read_config(job_dir: Path, data: dict) -> dict:
    """The resolved config: results.json's "config", else the run folder's config.yaml."""
    if isinstance(data.get("config"), dict):
        return data["config"]
    path = job_dir / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ReportError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise ReportError(f"{job_dir}: no resolved config (results.json 'config' or config.yaml), so its setting "
                          "cannot be told apart from others; rerun it with steindiff-sample")
    return config


def _normalized(flat: dict) -> dict:
    """Values as JSON gives them back (tuples -> lists, paths -> str), so that equal settings compare equal."""
    return json.loads(json.dumps(flat, default=str))


def _choices(job_dir: Path, data: dict, config: dict) -> dict[str, str]:
    """Group -> option name: Hydra's runtime choices; else results.json's solver/corrector, the group's
    ``name`` or the last part of its ``_target_``."""
    choices = {}
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        try:
            hydra = yaml.safe_load(hydra_yaml.read_text()) or {}
            choices = dict(hydra.get("hydra", {}).get("runtime", {}).get("choices") or {})
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            choices = {}
    out = {}
    for group in GROUPS:
        node = config.get(group)
        guess = node.get("name") or str(node.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(node, dict) \
            else None
        value = choices.get(group) or (data.get(group) if group in ("solver", "corrector") else None) or guess
        out[group] = str(value) if value else "none"
    return out
