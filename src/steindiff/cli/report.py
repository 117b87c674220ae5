"""steindiff-report: tables and plots of a sweep of runs (a Hydra multirun folder, a parent of several, or one run).

Usage:

    steindiff-report <folder> [--out DIR] [--metric NAME]

Walks <folder> recursively, loads every ``results.json`` with the job's resolved config, and writes into
--out (default <folder>/report):

    results.csv           one row per job: results fields, experiment, setting columns, every metric, job folder
    report.md             per experiment and metric, a table settings x NFE budget (below)
    <metric>_vs_nfe.png   per metric (``<experiment>__<metric>_vs_nfe.png`` with several experiments):
                          metric vs NFE budget, one line per setting, error bars over seed sets

Rows are settings: the config keys that vary across the jobs are the columns (solver / corrector always;
seeds, logger, trainer, plots, run names and num_threads are bookkeeping, not settings). A cell is the mean
over the seed sets of one setting, ``mean ± std (n=k)`` (sample std over k seed sets) or ``value (n=1)``.
Jobs of different experiments (denoiser, decoder, metrics) are never averaged: each experiment gets its own
tables and plots, titled with what is fixed. Incomplete jobs (``"complete": false``) go into the CSV only.
--metric restricts tables and plots to one metric. The Markdown is also printed to stdout.
On an error nothing is written and the exit code is 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from steindiff.io import atomic_write_text
from steindiff.reporting.runs import Job, ReportError, load_jobs
from steindiff.reporting.settings import Experiment, split_experiments
from steindiff.reporting.tables import CAPTION, markdown_table, repeated_seed_sets, write_csv

__all__ = ["ReportError", "main", "parse_args", "run"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="steindiff-report", description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path, help="a folder holding run folders (with results.json), or one run folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <folder>/report)")
    p.add_argument("--metric", default=None, help="report only this metric")
    return p.parse_args(argv)


def overview(folder: Path, jobs: list[Job], experiments: list[Experiment]) -> list[str]:
    """The report's head: what was read, how it is split, what a cell means."""
    incomplete = [j.path for j in jobs if not j.complete]
    note = f"{len(jobs)} jobs, {len(incomplete)} incomplete"
    if incomplete:
        note += " (excluded from tables and plots: " + ", ".join(f"`{p}`" for p in incomplete) + ")"
    if len(experiments) == 1:
        split = f"One experiment: {experiments[0].title}."
    else:
        split = (f"These jobs are {len(experiments)} experiments (they differ in "
                 f"{', '.join(experiments[0].differs_in)}): split into separate tables and plots, never averaged "
                 "together.")
    columns = ("Rows are settings; the columns are the config keys that vary between the jobs of an experiment "
               "(seeds, logger, trainer, plots, run names and num_threads are bookkeeping, not settings).")
    return [f"# steindiff report: {folder}", "", note + ".", "", split, "", columns, CAPTION, ""]


def experiment_section(exp: Experiment, index: int, total: int, metrics: list[str]) -> list[str]:
    """The heading, fixed keys and one table per metric of one experiment."""
    head = f"## Experiment {index} of {total}: {exp.title}" if total > 1 else f"## {exp.title}"
    jobs = f"{len(exp.jobs)} job" + ("s" if len(exp.jobs) != 1 else "")
    lines = [head, "", f"{jobs}. Fixed: " + (", ".join(exp.fixed) or "–") + "."]
    repeats = repeated_seed_sets(exp)
    if repeats:
        lines.append("Jobs repeating a seed set of their setting (averaged into it; n counts distinct seed sets): "
                     + ", ".join(f"`{p}`" for p in repeats) + ".")
    lines.append("")
    present = [m for m in metrics if any(m in j.metrics for j in exp.complete)]
    if not exp.complete:
        lines += ["No complete job in this experiment.", ""]
    for m in metrics:
        if m not in present and exp.complete:
            lines += [f"No job of this experiment has metric `{m}`.", ""]
    return lines + [markdown_table(exp, m) for m in present]


def plot_name(exp: Experiment, metric: str, several: bool) -> str:
    """``<metric>_vs_nfe.png``, prefixed with the experiment's title when a folder holds several."""
    if not several:
        return f"{metric}_vs_nfe.png"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", exp.title).strip("_") + f"__{metric}_vs_nfe.png"


def run(args: argparse.Namespace) -> tuple[str, Path]:
    from steindiff.reporting.figures import save_metric_plot  # start-up: imports matplotlib (1 s)

    jobs = load_jobs(args.folder)
    all_metrics = sorted({m for j in jobs for m in j.metrics})
    metrics = all_metrics
    if args.metric is not None:
        if args.metric not in all_metrics:
            raise ReportError(f"no job has metric '{args.metric}' (available: {', '.join(all_metrics) or 'none'})")
        metrics = [args.metric]
    experiments = split_experiments(jobs)
    md = overview(args.folder, jobs, experiments)
    for i, exp in enumerate(experiments, 1):
        md += experiment_section(exp, i, len(experiments), metrics)
    out = args.out if args.out is not None else args.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", jobs, experiments, all_metrics)
    text = "\n".join(md)
    atomic_write_text(out / "report.md", text)
    for exp in experiments:
        for m in metrics:
            if any(m in j.metrics for j in exp.complete):
                save_metric_plot(out / plot_name(exp, m, len(experiments) > 1), exp, m)
    return text, out


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
