"""Which jobs belong together: experiments (never averaged together), settings (rows) and their columns.

An experiment is what the numbers are measured on: the denoiser (its target, preset name or checkpoint),
the decoder, the metrics (target, reference) and the set of metric names (EXPERIMENT_KEYS). Jobs of
different experiments go into separate tables.

Within an experiment a setting is everything else in the resolved config (bookkeeping keys removed, see
``runs.BOOKKEEPING``): jobs that differ only in their seed set are seed sets of one setting. The columns of
a table are the keys that vary: "solver / corrector" always, a config group's option name when it varies
(``schedule``), and each dotted key that varies among jobs with the same option of its group
(``denoiser.temperature``, ``corrector.statistics``). Keys that only change together with their group's
option (``schedule.rho``, present in edm only) are implied by the option and not shown. The "solver / corrector"
column shows each run's setting label, which names the solver./corrector. keys given on the command line
(``euler / stein(statistics=batch)``); such a key gets no column of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .runs import GROUPS, Job

__all__ = ["EXPERIMENT_KEYS", "SOLVER_CORRECTOR", "Experiment", "display", "row_id", "split_experiments"]

#: the config keys that say what is measured (not how it is sampled)
EXPERIMENT_KEYS = ("denoiser._target_", "denoiser.name", "denoiser.path", "denoiser.key", "denoiser.scheduler_config",
                   "decoder._target_", "decoder.path", "metrics._target_", "metrics.data", "metrics.features",
                   "metrics.weights", "metrics.reference", "metrics.reference_data", "metrics.reference_size",
                   "metrics.kid", "metrics.inception_score")
SOLVER_CORRECTOR = "solver / corrector"
_MISSING = "\0missing"


@dataclass
class Experiment:
    """title: what is fixed (denoiser, decoder, metrics). jobs: its jobs, complete or not. columns: the
    table's setting columns. rows: row ids in display order; labels: row id -> a display value per column.
    fixed: "key=value" of the group options and plain keys that do not vary."""

    title: str
    jobs: list[Job]
    columns: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    differs_in: list[str] = field(default_factory=list)

    @property
    def complete(self) -> list[Job]:
        return [j for j in self.jobs if j.complete]

    def label(self, row: str) -> str:
        """One row as text: 'euler / none, schedule=edm, denoiser.temperature=0.5'."""
        values = self.labels[row]
        return ", ".join([values[0], *(f"{c}={v}" for c, v in zip(self.columns[1:], values[1:]))])


def row_id(job: Job) -> str:
    """The identity of a job's setting: its group options and its config without bookkeeping and seeds."""
    return json.dumps([[job.choices.get(g) for g in GROUPS], sorted(job.config.items())])


def display(job: Job, column: str) -> str:
    """The value a table shows for ``job`` in ``column`` ("–" where the job's config lacks the key)."""
    if column == SOLVER_CORRECTOR:  # the run's label: the options and the solver./corrector. overrides given
        return str(job.info.get("setting") or f"{job.choices['solver']} / {job.choices['corrector']}")
    if column in GROUPS:
        return job.choices[column]
    value = job.config.get(column, _MISSING)
    if value == _MISSING:
        return "–"
    if isinstance(value, str):
        return value.rsplit(".", 1)[-1] if column.endswith("._target_") else value
    return json.dumps(value)


def split_experiments(jobs: list[Job]) -> list[Experiment]:
    """The jobs grouped by experiment (in order of title), each with its columns, rows and fixed keys."""
    groups: dict[str, list[Job]] = {}
    for job, key in zip(jobs, _experiment_keys(jobs)):
        groups.setdefault(key, []).append(job)
    experiments = [Experiment(_base_title(g[0]), g) for g in groups.values()]
    _disambiguate(experiments)
    for exp in experiments:
        _layout(exp)
    return sorted(experiments, key=lambda e: e.title)


def _experiment_keys(jobs: list[Job]) -> list[str]:
    """Per job: its EXPERIMENT_KEYS values and (for complete jobs) its metric names. An incomplete job
    joins the complete jobs of the same config keys (its metrics may be missing)."""
    config_key = [json.dumps([j.config.get(k) for k in EXPERIMENT_KEYS]) for j in jobs]
    full = {c: json.dumps([c, sorted(j.metrics)]) for j, c in zip(jobs, config_key) if j.complete}
    return [json.dumps([c, sorted(j.metrics)]) if j.complete else full.get(c, json.dumps([c, sorted(j.metrics)]))
            for j, c in zip(jobs, config_key)]


def _base_title(job: Job) -> str:
    parts = [f"{g}={job.choices[g]}" for g in ("denoiser", "decoder", "metrics")
             if not (g == "decoder" and job.choices[g] == "none")]
    return ", ".join(parts)


def _disambiguate(experiments: list[Experiment]) -> None:
    """Record what tells the experiments apart; add it to titles that would otherwise be equal."""
    def first(exp, key):
        return display(exp.jobs[0], key) if key != "metric names" else ", ".join(sorted(exp.jobs[0].metrics))

    keys = [*EXPERIMENT_KEYS, "metric names"]
    differs = [k for k in keys if len({first(e, k) for e in experiments}) > 1]
    titles = [e.title for e in experiments]
    for exp in experiments:
        exp.differs_in = differs
        if titles.count(exp.title) > 1:
            exp.title += " (" + ", ".join(f"{k}: {first(exp, k)}" for k in differs) + ")"


def _layout(exp: Experiment) -> None:
    """Columns, rows in display order, and the fixed keys of one experiment (from its complete jobs)."""
    jobs = exp.complete or exp.jobs
    varying_groups = [g for g in GROUPS[2:] if len({j.choices[g] for j in jobs}) > 1]
    keys = [k for k in sorted({k for j in jobs for k in j.config}, key=_key_order) if _varies(k, jobs)]
    keys = [k for k in _drop_copies(keys, jobs) if not _in_label(k, jobs)]
    exp.columns = [SOLVER_CORRECTOR] + sorted(varying_groups + keys, key=_key_order)
    for job in jobs:
        exp.labels.setdefault(row_id(job), tuple(display(job, c) for c in exp.columns))
    exp.rows = sorted(exp.labels, key=lambda r: _row_order(exp.labels[r]))
    fixed_groups = [f"{g}={jobs[0].choices[g]}" for g in GROUPS[2:3] if g not in varying_groups]  # others: title
    plain = sorted({k for j in jobs for k in j.config if k.split(".", 1)[0] not in GROUPS} - set(keys))
    exp.fixed = fixed_groups + [f"{k}={display(jobs[0], k)}" for k in plain]


def _key_order(key: str) -> tuple:
    """Group columns in GROUPS order, each followed by its dotted keys; then the other keys by name."""
    group = key.split(".", 1)[0]
    return (GROUPS.index(group), key != group, key) if group in GROUPS else (len(GROUPS), True, key)


def _varies(key: str, jobs: list[Job]) -> bool:
    """Whether ``key`` takes two values among jobs that share the option of its group (or among all jobs)."""
    group = key.split(".", 1)[0]
    seen: dict[str, set] = {}
    for j in jobs:
        option = j.choices.get(group, "") if group in GROUPS else ""
        seen.setdefault(option, set()).add(json.dumps(j.config.get(key, _MISSING)))
    return any(len(values) > 1 for values in seen.values())


def _drop_copies(keys: list[str], jobs: list[Job]) -> list[str]:
    """Drop metrics.* keys that repeat another shown key in every job (trajectory metrics copy the denoiser
    and the schedule's sigma range by interpolation)."""
    def vector(k):
        return tuple(json.dumps(j.config.get(k, _MISSING)) for j in jobs)

    others = {vector(k) for k in keys if not k.startswith("metrics.")}
    return [k for k in keys if not (k.startswith("metrics.") and vector(k) in others)]


def _in_label(key: str, jobs: list[Job]) -> bool:
    """Whether every job's setting label already shows ``key`` (a solver./corrector. override given on the
    command line: "euler / stein(statistics=batch)")."""
    group, _, sub = key.partition(".")
    return group in GROUPS[:2] and all(f"{sub}={display(j, key)}" in display(j, SOLVER_CORRECTOR) for j in jobs)


def _row_order(values: tuple[str, ...]) -> tuple:
    """Corrector "none" first; then each column, numbers by value, "–" last."""
    def natural(v: str) -> tuple:
        if v == "–":
            return (2, 0.0, v)
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    return (not values[0].endswith(" / none"), *(natural(v) for v in values))
