"""The numbers of the report: per setting and NFE, the mean and spread over seed sets; report.md, results.csv.

    cells = aggregate(experiment, "energy_distance")   # {(row id, NFE): Cell(mean, std, n, nfes, values)}

A seed set is one job's seeds (results.json "seeds", e.g. "0..199"). n counts distinct seed sets of one
setting; jobs that repeat a seed set of their setting (the same run in two folders) are averaged into one
value first and listed in the report. std is the sample standard deviation (ddof = 1) over the n seed-set
values, None for n = 1.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steindiff.io import atomic_write_text

from .metric_info import metric_info
from .runs import FIELDS, GROUPS, Job
from .settings import SOLVER_CORRECTOR, Experiment, display, row_id

__all__ = ["CAPTION", "SHORT_CAPTION", "Cell", "aggregate", "fmt_cell", "markdown_table", "repeated_seed_sets",
           "write_csv"]

CAPTION = ("Each cell: the mean over the n seed sets of that setting at that NFE budget; ± is the sample "
           "standard deviation (ddof = 1) over those n seed sets, shown when n ≥ 2 (n = 1: one run, no spread). "
           "'NFE k' in a cell: the measured NFE differs from the budget. –: not run.")
SHORT_CAPTION = "mean ± sample std over the n seed sets of a setting; n = 1: one run, no spread."


@dataclass
class Cell:
    """One setting at one NFE: mean and std over seed sets, n seed sets, the measured NFEs, the per-seed-set values."""

    mean: float
    std: float | None
    n: int
    nfes: list[int]
    values: list[float]


def aggregate(exp: Experiment, metric: str) -> dict[tuple[str, int], Cell]:
    """{(row id, NFE): Cell} over the experiment's complete jobs that have ``metric``."""
    groups: dict[tuple[str, int], dict[str, list[Job]]] = {}
    for j in exp.complete:
        if metric in j.metrics:
            groups.setdefault((row_id(j), j.x), {}).setdefault(j.seed_key, []).append(j)
    out = {}
    for key, seed_sets in groups.items():
        with np.errstate(all="ignore"):
            values = [float(np.mean([j.metrics[metric] for j in jobs])) for jobs in seed_sets.values()]
            std = float(np.std(values, ddof=1)) if len(values) >= 2 else None
            mean = float(np.mean(values))
        nfes = sorted({j.info["nfe"] for jobs in seed_sets.values() for j in jobs})
        out[key] = Cell(mean, std, len(values), nfes, values)
    return out


def repeated_seed_sets(exp: Experiment) -> list[str]:
    """The complete jobs that repeat a (setting, NFE, seed set) of an earlier job."""
    seen, repeats = set(), []
    for j in exp.complete:
        key = (row_id(j), j.x, j.seed_key)
        if key in seen:
            repeats.append(j.path)
        seen.add(key)
    return repeats


def fmt_cell(cell: Cell | None, budget: int) -> str:
    """'0.231 ± 0.02 (n=3)', '0.445 (n=1)', '0.5 (n=2, NFE 3)' or '–'."""
    if cell is None:
        return "–"
    spread = cell.std is not None and math.isfinite(cell.mean) and math.isfinite(cell.std)
    text = f"{cell.mean:.4g} ± {cell.std:.2g}" if spread else f"{cell.mean:.4g}"
    nfe = f", NFE {'/'.join(str(n) for n in cell.nfes)}" if cell.nfes != [budget] else ""
    return f"{text} (n={cell.n}{nfe})"


def markdown_table(exp: Experiment, metric: str, level: str = "###") -> str:
    """One metric of one experiment: settings x NFE budgets, then the caption."""
    cells = aggregate(exp, metric)
    budgets = sorted({x for _, x in cells})
    rows = [r for r in exp.rows if any((r, b) in cells for b in budgets)]
    info = metric_info(metric)
    head = f"{level} {info.label} (`{metric}`" + (f"; {info.unit}" if info.unit else "") + \
        (f"; {info.better} is better)" if info.better else "; direction unknown)")
    lines = [head, "", "| " + " | ".join([*exp.columns, *(f"NFE {b}" for b in budgets)]) + " |",
             "|" + "---|" * (len(exp.columns) + len(budgets))]
    for r in rows:
        values = [_escape(v) for v in exp.labels[r]] + [fmt_cell(cells.get((r, b)), b) for b in budgets]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join([*lines, "", f"Cells: {SHORT_CAPTION}", ""])


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_csv(path: Path, jobs: list[Job], experiments: list[Experiment], metrics: list[str]) -> None:
    """One row per job: the results.json fields, its experiment, every setting column, every metric, its folder."""
    of = {j.path: e for e in experiments for j in e.jobs}
    columns = list(dict.fromkeys(c for e in experiments for c in e.columns if c not in (SOLVER_CORRECTOR, *GROUPS[:2])))
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow([*FIELDS, "experiment", *columns, *metrics, "path"])
    for j in jobs:
        w.writerow([*(j.info[k] for k in FIELDS), of[j.path].title, *(display(j, c) for c in columns),
                    *(j.metrics.get(m, "") for m in metrics), j.path])
    atomic_write_text(path, text.getvalue())
