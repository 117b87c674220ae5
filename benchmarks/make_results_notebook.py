"""Builds notebooks/results.ipynb, the results study read back from its committed records, with its outputs.

    python benchmarks/make_results_notebook.py

The notebook's cells are kept here (CELLS). Its code cells are executed in this process exactly as
tests/test_notebooks.py executes them (one namespace, IPython magics dropped, stdout captured per cell, the
non-interactive matplotlib backend), so the stored outputs are what the test recomputes: each cell's stdout as a
stream output, each figure it leaves open as an image/png display_data output (what Jupyter's inline backend shows).
A warning or anything on stderr stops the build (a committed notebook holds none). The notebook is nbformat 4.5
JSON, written by hand (nbformat is not a dependency). Rerun whenever docs/results/study.jsonl or
docs/results/lipschitz.jsonl changes: the test compares the stored outputs with a fresh run.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "results.ipynb"
MAX_BYTES = 900_000  # tests/test_notebooks.py allows under 1 MB

CELLS: list[tuple[str, str]] = [
    ("markdown", """\
# The results study, read from its records

Every number and figure below comes from the committed records of the results study
(`docs/results/study.jsonl`, one JSON line per cell and seed set, written by `benchmarks/study.py run`) and of the
Lipschitz diagnostic (`docs/results/lipschitz.jsonl`, `benchmarks/study_lipschitz.py`); nothing is sampled here.
A setting is compared with the uncorrected solver (`none`) at the same solver, schedule and NFE. The rules are the
report's own (`benchmarks/study_report.py`, imported below, so this notebook and `docs/results.md` cannot
disagree): a cell is the mean over the evaluation seed sets with its sample standard deviation, and a setting is
*better* (or *worse*) when the difference of the means exceeds twice its standard error.

The outputs are regenerated with `python benchmarks/make_results_notebook.py` whenever the records change."""),
    ("code", """\
%matplotlib inline
import sys
from pathlib import Path

import steindiff


def repository() -> Path:
    \"\"\"The checkout holding the records: the working folder or one above it (run from the root or from
    notebooks/), else the checkout steindiff is installed from (an editable install).\"\"\"
    here = Path.cwd()
    for folder in (here, *here.parents, Path(steindiff.__file__).resolve().parents[2]):
        if (folder / "docs" / "results" / "study.jsonl").is_file():
            return folder
    raise FileNotFoundError("docs/results/study.jsonl is neither above the working folder nor in the checkout "
                            "steindiff is installed from; run the notebook inside the repository")


ROOT = repository()
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
import study_report  # noqa: E402  the report's rules: aggregate, verdict, MIN_NFE (it selects matplotlib's Agg)
from study import EVAL_SETS, headline, read_records  # noqa: E402

%matplotlib inline
import matplotlib.pyplot as plt  # noqa: E402

records = read_records(ROOT / "docs" / "results" / "study.jsonl")
lipschitz = read_records(ROOT / "docs" / "results" / "lipschitz.jsonl")
cells = study_report.aggregate(records)  # (testbed, solver, schedule, nfe, setting) -> mean, sd, n, gamma ...
TESTBEDS = sorted({k[0] for k in cells})
SETTINGS = sorted({k[4] for k in cells}, key=lambda s: (s != "none", s))
print(f"{len(records)} records, {len(cells)} cells (evaluation seed sets {', '.join(map(str, EVAL_SETS))}); "
      f"{len(lipschitz)} Lipschitz records")
print("test-beds:", ", ".join(TESTBEDS))
print("settings:", ", ".join(SETTINGS))
print("headline metric:", ", ".join(f"{t} {headline(t)}" for t in TESTBEDS))"""),
    ("markdown", """\
## Summary

Per test-bed and setting: how many cells (solver x schedule x NFE, NFE >= 6) are better / the same / worse than
the uncorrected solver at the same NFE. `docs/results.md` adds the comparison at equal compute (sampling time)."""),
    ("code", """\
MIN_NFE = study_report.MIN_NFE
summary = {}  # (testbed, setting) -> {"better": n, "same": n, "worse": n}
for (testbed, solver, schedule, nfe, setting), cell in sorted(cells.items()):
    base = cells.get((testbed, solver, schedule, nfe, "none"))
    if setting != "none" and nfe >= MIN_NFE and base is not None:
        tally = summary.setdefault((testbed, setting), {"better": 0, "same": 0, "worse": 0})
        tally[study_report.verdict(cell, base)] += 1

wide_t = max([len("test-bed"), *(len(t) for t, _ in summary)])
wide_s = max([len("setting"), *(len(s) for _, s in summary)])
print(f"equal NFE, NFE >= {MIN_NFE}: cells better / same / worse than none")
print(f"{'test-bed':<{wide_t}}  {'setting':<{wide_s}}  better / same / worse")
for testbed in TESTBEDS:
    for setting in SETTINGS:
        if (testbed, setting) in summary:
            n = summary[testbed, setting]
            print(f"{testbed:<{wide_t}}  {setting:<{wide_s}}  {n['better']:>6} / {n['same']:>4} / {n['worse']:>5}")"""),
    ("markdown", """\
## Quality against NFE

One figure per test-bed, a panel per schedule (rows) and solver (columns), a line per setting: the headline
metric's mean over the seed sets, error bars one standard deviation (the lower bar is cut at 10% of the mean so
that it stays on the log axis). A setting whose cells are not all finite is left out of that panel."""),
    ("code", """\
import math

COLORS = {s: ("black" if s == "none" else plt.get_cmap("tab10" if len(SETTINGS) <= 11 else "tab20")(i % 20))
          for i, s in enumerate(s for s in SETTINGS if s != "none")} | {"none": "black"}


def quality_figure(testbed: str):
    solvers = sorted({k[1] for k in cells if k[0] == testbed})
    schedules = sorted({k[2] for k in cells if k[0] == testbed})
    fig, axes = plt.subplots(len(schedules), len(solvers), figsize=(2.3 * len(solvers), 2.0 * len(schedules) + 0.5),
                             squeeze=False, sharey=True, dpi=72)
    for i, schedule in enumerate(schedules):
        for j, solver in enumerate(solvers):
            ax = axes[i][j]
            for setting in SETTINGS:
                pts = sorted((k[3], c) for k, c in cells.items() if k[:3] == (testbed, solver, schedule)
                             and k[4] == setting and math.isfinite(c["mean"]) and c["mean"] > 0)
                if pts:
                    means = [c["mean"] for _, c in pts]
                    low = [min(c["sd"], 0.9 * c["mean"]) for _, c in pts]
                    ax.errorbar([n for n, _ in pts], means, yerr=[low, [c["sd"] for _, c in pts]], marker="o",
                                ms=2, capsize=1.5, lw=2 if setting == "none" else 1, color=COLORS[setting],
                                label=setting)
            ax.set_yscale("log")
            ax.set_title(f"{solver}, {schedule}", fontsize=8)
            ax.set_xlabel("NFE", fontsize=8)
            ax.set_ylabel(headline(testbed) if j == 0 else "", fontsize=8)
            ax.tick_params(labelsize=7)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    fig.legend([handles[s] for s in SETTINGS if s in handles], [s for s in SETTINGS if s in handles],
               loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(f"{testbed}: {headline(testbed)} (lower is better), mean ± sd over seed sets", fontsize=9)
    fig.tight_layout()
    return fig


for testbed in TESTBEDS:
    quality_figure(testbed)"""),
    ("markdown", """\
## gamma per step: Stein against the oracles

One representative cell (the quickstart's: ring2d, DPM-Solver++(2M), EDM schedule, NFE 6, when it is on record;
otherwise the NFE-6 cell with the most settings that record gamma): the gamma each setting applied at each step,
one line per evaluation seed set (the batch mean over the batches of the set). gamma = 1 is the uncorrected
solver. The oracles are controls that know what no sampler knows: `oracle` is the MSE-optimal coefficient that
Stein's estimate targets, computed with the exact posterior mean of the data law; `oracle_trajectory` is the gamma
whose next state best follows a high-accuracy solution of the same ODE from the same noise."""),
    ("code", """\
def representative() -> tuple:
    preferred = ("ring2d", "dpmpp_2m", "edm", 6)
    with_gamma = {}
    for r in records:
        if r["seed_set"] in EVAL_SETS and r.get("gamma"):
            with_gamma.setdefault((r["testbed"], r["solver"], r["schedule"], r["nfe_budget"]), set()).add(r["setting"])
    if preferred in with_gamma:
        return preferred
    at_six = [k for k in with_gamma if k[3] == 6] or list(with_gamma)
    return max(sorted(at_six), key=lambda k: len(with_gamma[k]))


CELL = representative()
gammas = {}  # setting -> {seed set: gamma per step}
for r in records:
    if (r["testbed"], r["solver"], r["schedule"], r["nfe_budget"]) == CELL and r["seed_set"] in EVAL_SETS \\
            and r.get("gamma"):
        gammas.setdefault(r["setting"], {})[r["seed_set"]] = r["gamma"]
fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=70)
for setting in SETTINGS:
    for i, (seed_set, gamma) in enumerate(sorted(gammas.get(setting, {}).items())):
        ax.plot(range(1, len(gamma) + 1), gamma, marker="o", ms=3, lw=1, color=COLORS[setting], alpha=0.8,
                label=setting if i == 0 else None)
ax.axhline(1.0, color="grey", lw=0.8, ls=":")
ax.set_yscale("symlog", linthresh=0.1)
if min(min(g) for sets in gammas.values() for g in sets.values()) >= 0:
    ax.set_ylim(bottom=0)
ax.set_xlabel("step (sampling order)")
ax.set_ylabel("gamma (1 = uncorrected; symlog)")
ax.set_title(f"{CELL[0]}, {CELL[1]}, {CELL[2]}, NFE {CELL[3]}: gamma per step, one line per seed set", fontsize=9)
ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
fig.tight_layout()
print(f"gamma per step at {', '.join(map(str, CELL))} (seed set {min(EVAL_SETS)}):")
for setting in SETTINGS:
    if setting in gammas:
        first = gammas[setting][min(gammas[setting])]
        print(f"  {setting:<{wide_s}}  " + "  ".join(f"{g:.3g}" for g in first))"""),
    ("markdown", """\
## The Lipschitz constant of the step map

The paper's diagnostic of the contractivity trap: a power-iteration estimate of the local Lipschitz constant of
the solver's step map at the sampler's own states (batch mean per step, seed set 1). Above 1 a step expands
errors. The table gives each test-bed's peak over the steps; the figure draws the uncorrected solver along the
trajectory (sigma decreasing to the right)."""),
    ("code", """\
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

lip_solvers = sorted({r["solver"] for r in lipschitz})
lip_nfes = sorted({r["nfe_budget"] for r in lipschitz})
lip_settings = sorted({r["setting"] for r in lipschitz}, key=lambda s: (s != "none", s))
lip_testbeds = sorted({r["testbed"] for r in lipschitz})
peak = {(r["testbed"], r["setting"], r["solver"], r["nfe_budget"]): max(r["lipschitz_mean"]) for r in lipschitz}
columns = [(s, n) for s in lip_solvers for n in lip_nfes]
wide_l = max([len("test-bed"), *(len(t) for t in lip_testbeds)])
wide_ls = max([len("setting"), *(len(s) for s in lip_settings)])
print("peak over the steps of the batch-mean Lipschitz estimate")
print(f"{'test-bed':<{wide_l}}  {'setting':<{wide_ls}}  " + "  ".join(f"{s} NFE {n:<3}".rjust(17) for s, n in columns))
for testbed in lip_testbeds:
    for setting in lip_settings:
        row = [peak.get((testbed, setting, s, n)) for s, n in columns]
        print(f"{testbed:<{wide_l}}  {setting:<{wide_ls}}  "
              + "  ".join(("-" if v is None else f"{v:.2f}").rjust(17) for v in row))

ncols = min(4, len(lip_testbeds))
nrows = -(-len(lip_testbeds) // ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.4 * nrows + 0.4), squeeze=False, dpi=72)
styles = dict(zip(lip_solvers, ["-", "--", ":", "-."]))
nfe_colors = {n: plt.get_cmap("viridis")(i / max(1, len(lip_nfes) - 1)) for i, n in enumerate(lip_nfes)}
for ax, testbed in zip(axes.flat, lip_testbeds):
    for r in lipschitz:
        if r["testbed"] == testbed and r["setting"] == "none":
            ax.plot([max(s, 1e-3) for s in r["sigma"]], r["lipschitz_mean"], ls=styles[r["solver"]], lw=1.2,
                    marker="o" if r["nfe_budget"] < 50 else None, ms=2, color=nfe_colors[r["nfe_budget"]],
                    label=f"{r['solver']}, NFE {r['nfe_budget']}")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_title(f"{testbed}, none", fontsize=8)
    ax.set_xlabel("sigma at the step", fontsize=8)
    ax.set_ylabel("Lipschitz (batch mean)", fontsize=8)
    ax.tick_params(labelsize=7, which="both")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
for ax in list(axes.flat)[len(lip_testbeds):]:
    ax.set_visible(False)
fig.legend(*axes[0][0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
fig.suptitle("Local Lipschitz constant of the uncorrected step map along the trajectory (1 = neutral)", fontsize=9)
fig.tight_layout()"""),
    ("markdown", """\
The paper's own numbers (FID on 50k samples of large image models; published by the paper, not measured here)
are in `docs/results.md`, from `benchmarks/study_paper.py`."""),
]


def _source(text: str) -> str:
    """The Python the test executes: IPython magics dropped (tests/test_notebooks.py's ``_source``)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("%"))


def _png(fig) -> str:
    """The figure as Jupyter's inline backend draws it (its dpi, a tight box), reduced to a 256-colour palette (a
    quarter of the bytes; line plots lose nothing visible), base64 as nbformat stores it."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight", metadata={"Software": None})
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        buffer, format="png", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii") + "\n"


def execute(cells: list[tuple[str, str]]) -> list[list[dict]]:
    """Runs the code cells in one namespace, from notebooks/ (Jupyter's working folder); their outputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict = {}
    outputs = []
    here = Path.cwd()
    os.chdir(NOTEBOOK.parent)
    try:
        for i, (kind, text) in enumerate(cells):
            if kind != "code":
                continue
            out, err = io.StringIO(), io.StringIO()
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                    contextlib.redirect_stderr(err):
                warnings.simplefilter("default")
                exec(compile(_source(text), f"{NOTEBOOK.name}[{len(outputs)}]", "exec"), namespace)
            if caught or err.getvalue():
                raise SystemExit(f"make_results_notebook: cell {i} wrote to stderr or warned: "
                                 f"{[str(w.message) for w in caught]} {err.getvalue()[:500]}")
            cell_outputs = []
            if out.getvalue():
                cell_outputs.append({"name": "stdout", "output_type": "stream",
                                     "text": out.getvalue().splitlines(keepends=True)})
            for number in plt.get_fignums():
                fig = plt.figure(number)
                cell_outputs.append({"data": {"image/png": _png(fig), "text/plain": [repr(fig)]},
                                     "metadata": {}, "output_type": "display_data"})
            plt.close("all")
            outputs.append(cell_outputs)
    finally:
        os.chdir(here)
    return outputs


def notebook(cells: list[tuple[str, str]], outputs: list[list[dict]]) -> dict:
    """nbformat 4.5: a markdown or code cell per entry, deterministic ids, the code cells' outputs."""
    code = iter(outputs)
    out_cells, count = [], 0
    for i, (kind, text) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"results-{i:02d}", "metadata": {},
                "source": text.splitlines(keepends=True)}
        if kind == "code":
            count += 1
            cell = {"cell_type": "code", "execution_count": count, "id": cell["id"], "metadata": {},
                    "outputs": next(code), "source": cell["source"]}
        out_cells.append(cell)
    return {"cells": out_cells,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"codemirror_mode": {"name": "ipython", "version": 3},
                                           "file_extension": ".py", "mimetype": "text/x-python", "name": "python",
                                           "nbconvert_exporter": "python", "pygments_lexer": "ipython3",
                                           "version": ".".join(map(str, sys.version_info[:3]))}},
            "nbformat": 4, "nbformat_minor": 5}


def main() -> int:
    start = time.perf_counter()
    outputs = execute(CELLS)
    seconds = time.perf_counter() - start
    text = json.dumps(notebook(CELLS, outputs), indent=1, ensure_ascii=False) + "\n"
    if len(text.encode()) > MAX_BYTES:
        raise SystemExit(f"make_results_notebook: the notebook would be {len(text.encode())} bytes, over "
                         f"{MAX_BYTES}; make the figures smaller (dpi, figsize)")
    NOTEBOOK.write_text(text)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)} ({len(text.encode()) // 1000} kB; code ran in {seconds:.1f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
