"""steindiff-report: tables and plots of a sweep of runs (a Hydra multirun folder or a single run).

Usage:

    steindiff-report <folder> [--out DIR] [--metric NAME]

Walks <folder> recursively, loads every ``results.json`` and writes into --out (default <folder>/report):

    results.csv           one row per job: settings, measured NFE, seed set, every metric, job folder
    report.md             per metric, a table settings x NFE budget; cells are the mean over seed sets,
                          ``mean ± std`` (sample std) with 2 or more seed sets, ``(n)`` when the measured
                          NFE n differs from the budget, ``–`` when the combination is missing
    <metric>_vs_nfe.png   per metric, metric vs NFE budget, one line per setting, error bars = std

Incomplete jobs (``"complete": false``) go into the CSV but not into tables or plots; report.md lists them.
--metric restricts tables and plots to one metric. The Markdown is also printed to stdout.
On an error nothing is written and the exit code is 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from steindiff.io import atomic_write_text

REQUIRED = ("setting", "solver", "corrector", "nfe_budget", "nfe", "metrics", "complete")
FIELDS = ("setting", "solver", "corrector", "nfe_budget", "nfe", "num_steps", "final_step", "seed_set",
          "num_samples", "complete")


class ReportError(Exception):
    """A problem with the input: reported on one line, exit code 2."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="steindiff-report", description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path, help="multirun folder (job subfolders with results.json) or one run folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <folder>/report)")
    p.add_argument("--metric", default=None, help="report only this metric")
    return p.parse_args(argv)


def load_jobs(folder: Path) -> list[dict]:
    """Every results.json under ``folder`` as a flat record (FIELDS, metrics, path)."""
    if not folder.is_dir():
        raise ReportError(f"folder not found: {folder}")
    files = sorted(folder.rglob("results.json"), key=lambda f: [(not p.isdigit(), int(p) if p.isdigit() else 0, p)
                                                                for p in f.relative_to(folder).parts])
    if not files:
        raise ReportError(f"no results.json found under {folder}")
    jobs = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReportError(f"{f}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ReportError(f"{f}: not a JSON object")
        for key in REQUIRED:
            if key not in data:
                raise ReportError(f"{f}: missing required key '{key}'")
        if not isinstance(data["metrics"], dict):
            raise ReportError(f"{f}: key 'metrics' is not an object")
        try:
            metrics = {k: math.nan if v is None else float(v) for k, v in data["metrics"].items()}
        except (TypeError, ValueError):
            raise ReportError(f"{f}: key 'metrics' holds a non-numeric value") from None
        job = {k: data.get(k, "") for k in FIELDS}
        job.update(complete=bool(data["complete"]), metrics=metrics, path=f.parent.relative_to(folder).as_posix())
        jobs.append(job)
    return jobs


def write_csv(path: Path, jobs: list[dict], metrics: list[str]) -> None:
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow([*FIELDS, *metrics, "path"])
    for j in jobs:
        w.writerow([*(j[k] for k in FIELDS), *(j["metrics"].get(m, "") for m in metrics), j["path"]])
    atomic_write_text(path, text.getvalue())


def aggregate(jobs: list[dict], metric: str) -> dict:
    """{(setting, nfe_budget): (mean, std or None, measured NFEs)} over the complete jobs having ``metric``."""
    groups: dict = {}
    for j in jobs:
        if j["complete"] and metric in j["metrics"]:
            groups.setdefault((j["setting"], j["nfe_budget"]), []).append(j)
    out = {}
    for key, group in groups.items():
        vals = np.array([j["metrics"][metric] for j in group])
        with np.errstate(all="ignore"):
            mean = float(vals.mean())
            std = float(vals.std(ddof=1)) if len(vals) >= 2 else None
        out[key] = (mean, std, sorted({j["nfe"] for j in group}))
    return out


def settings_order(jobs: list[dict]) -> list[str]:
    """Settings with corrector "none" first, then by name."""
    keys = {(j["corrector"] != "none", j["setting"]) for j in jobs if j["complete"]}
    return list(dict.fromkeys(s for _, s in sorted(keys)))


def fmt_cell(cell, budget) -> str:
    if cell is None:
        return "–"
    mean, std, nfes = cell
    text = f"{mean:.4g}" if std is None or not math.isfinite(mean) else f"{mean:.4g} ± {std:.2g}"
    if nfes != [budget]:
        text += f" ({'/'.join(str(n) for n in nfes)})"
    return text


def markdown_table(jobs: list[dict], metric: str, settings: list[str], budgets: list) -> str:
    agg = aggregate(jobs, metric)
    lines = [f"## {metric}", "", "| setting | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for s in settings:
        cells = [fmt_cell(agg.get((s, b)), b) for b in budgets]
        lines.append(f"| {str(s).replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    incomplete = [j["path"] for j in jobs if not j["complete"]]
    note = f"{len(jobs)} jobs, {len(incomplete)} incomplete"
    if incomplete:
        note += " (excluded: " + ", ".join(f"`{p}`" for p in incomplete) + ")"
    return "\n".join([*lines, "", note + ".", ""])


def plot_metric(path: Path, jobs: list[dict], metric: str, settings: list[str]) -> None:
    import matplotlib  # start-up: matplotlib and pyplot take about 1 s; --help and errors need neither

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: see above

    agg = aggregate(jobs, metric)
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = []
    for s in settings:
        pts = sorted((b, m, sd) for (s2, b), (m, sd, _) in agg.items() if s2 == s and math.isfinite(m))
        if not pts:
            continue
        x, y, sd = zip(*pts)
        err = [e if e is not None and math.isfinite(e) else 0.0 for e in sd]
        ax.errorbar(x, y, yerr=err if any(err) else None, marker="o", capsize=3, label=str(s))
        plotted.extend(y)
    if plotted and min(plotted) > 0:
        ax.set_yscale("log")
    ax.set_xticks(sorted({b for _, b in agg}))
    ax.set_xlabel("NFE budget")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs NFE")
    if plotted:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> tuple[str, Path]:
    jobs = load_jobs(args.folder)
    all_metrics = sorted({m for j in jobs for m in j["metrics"]})
    metrics = all_metrics
    if args.metric is not None:
        if args.metric not in all_metrics:
            raise ReportError(f"no job has metric '{args.metric}' (available: {', '.join(all_metrics) or 'none'})")
        metrics = [args.metric]
    out = args.out if args.out is not None else args.folder / "report"
    settings = settings_order(jobs)
    budgets = sorted({j["nfe_budget"] for j in jobs if j["complete"]})
    md = "\n".join([f"# steindiff report: {args.folder}", ""]
                   + [markdown_table(jobs, m, settings, budgets) for m in metrics])
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", jobs, all_metrics)
    atomic_write_text(out / "report.md", md)
    for m in metrics:
        plot_metric(out / f"{m}_vs_nfe.png", jobs, m, settings)
    return md, out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        md, out = run(args)
    except ReportError as err:
        print(f"steindiff-report: error: {err}", file=sys.stderr)
        return 2
    print(md)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
