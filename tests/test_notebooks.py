"""The notebooks: their code cells run (non-interactive matplotlib backend, no Jupyter needed), the committed
outputs are what the code prints now (stale outputs fail), they hold no absolute paths and no stderr, the
plots are labelled, and the quickstart compares its solvers at one NFE and shows the corrector."""

import contextlib
import io
import json
import re
from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
QUICKSTART = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")
ABSOLUTE_PATH = re.compile(r"(/home/|/root/|/tmp/|/work/|/Users/|/usr/|/opt/|site-packages|[A-Z]:\\)")


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    """The cell's Python: IPython magics (``%matplotlib inline``) dropped."""
    return "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith("%"))


def _stored_stdout(cell: dict) -> str:
    return "".join("".join(o["text"]) for o in cell.get("outputs", [])
                   if o["output_type"] == "stream" and o["name"] == "stdout")


def _same_text(stored: str, now: str) -> bool:
    """Equal after the numbers; the numbers equal to within their last printed digit (float noise)."""
    if NUMBER.sub("#", stored) != NUMBER.sub("#", now):
        return False
    return all(abs(float(a) - float(b)) <= 1.01 * 10.0 ** -len(a.split(".")[1].split("e")[0]) + 1e-12
               for a, b in zip(NUMBER.findall(stored), NUMBER.findall(now)))


def _run(path: Path) -> tuple[dict, list[str], list[Figure]]:
    """Executes the code cells in order; the namespace, each cell's stdout, every figure drawn."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict = {}
    printed, figures = [], []
    for i, cell in enumerate(_code_cells(path)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(_source(cell), f"{path.name}[{i}]", "exec"), namespace)
        printed.append(out.getvalue())
        figures += [plt.figure(n) for n in plt.get_fignums()]
        figures += [v for v in namespace.values() if isinstance(v, Figure) and v not in figures]
        plt.close("all")
    return namespace, printed, figures


@pytest.fixture(scope="module")
def executed():
    return {p: _run(p) for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_current(path, executed):
    """Every code cell has outputs; what it printed when committed is what it prints now."""
    _, printed, _ = executed[path]
    for i, (cell, now) in enumerate(zip(_code_cells(path), printed)):
        assert cell.get("outputs"), f"{path.name}: code cell {i} committed without outputs"
        assert _same_text(_stored_stdout(cell), now), \
            f"{path.name}: cell {i} printed\n{now}\nbut the committed output is\n{_stored_stdout(cell)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_clean(path):
    """No stderr (warnings), no absolute paths, no timings, PNG figures, under 1 MB."""
    assert path.stat().st_size < 1_000_000
    outputs = [o for c in _code_cells(path) for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr"]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = json.dumps([{k: v for k, v in o.items() if k != "data"} | {"plain": o.get("data", {}).get("text/plain")}
                       for o in outputs])
    assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text)
    assert not re.search(r"\d+(\.\d+)?\s*(s|ms|it/s)\b", text.replace("\\n", " ")), "timing in outputs"
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1


def test_quickstart_seeded_fair_labelled_with_corrector(executed):
    namespace, printed, figures = executed[QUICKSTART]
    assert namespace["result"].nfe == 6
    # the reference sample is seeded: the number printed for it is the committed one
    cell = _code_cells(QUICKSTART)[1]
    line = next(x for x in _stored_stdout(cell).splitlines() if x.startswith("energy distance to the reference"))
    assert line in printed[1]
    from steindiff.core import energy_distance

    assert float(line.split(":")[1]) == round(energy_distance(namespace["result"].samples, namespace["reference"]), 4)
    # fair: every solver compared at the same measured NFE; the corrector is run and shown
    runs = namespace["runs"]
    assert {r.nfe for r in runs.values()} == {namespace["NFE"]} and len({s for s, _ in runs}) == 4
    assert {c for _, c in runs} == {"none", "stein_clipped"}
    assert all("gamma" in t for s in {s for s, _ in runs} for t in runs[s, "stein_clipped"].trace)
    # labelled plots: every axes has axis labels, a title and a legend; one of them shows gamma
    axes = [ax for f in figures for ax in f.axes]
    assert len(figures) >= 2 and axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and (ax.get_title() or ax.figure.get_suptitle())
        assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) >= 2
    assert any("gamma" in ax.get_ylabel() for ax in axes)
    assert any("stein_clipped" in ax.get_title() for ax in axes)


RESULTS = Path(__file__).resolve().parents[1] / "notebooks" / "results.ipynb"
STUDY = Path(__file__).resolve().parents[1] / "docs" / "results" / "study.jsonl"


def _summary_counts(testbed: str) -> dict[str, tuple[int, int, int]]:
    """setting -> (better, same, worse) against the uncorrected solver at equal NFE, NFE >= 6, computed here from
    study.jsonl alone: a cell is the mean over seed sets 1-3 of the energy distance (sample sd, n); better / worse
    when the difference of the means exceeds twice sqrt(sd_a^2/n_a + sd_b^2/n_b)."""
    import math
    import statistics
    from collections import defaultdict

    values = defaultdict(list)
    for line in STUDY.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # a line the study is writing now
            continue
        if r["testbed"] == testbed and r["seed_set"] in (1, 2, 3) and "metrics" in r:
            values[r["solver"], r["schedule"], r["nfe_budget"], r["setting"]].append(r["metrics"]["energy_distance"])
    cell = {k: (statistics.fmean(v) if all(map(math.isfinite, v)) else math.inf,
                statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in values.items()}
    counts = defaultdict(lambda: [0, 0, 0])
    for (solver, schedule, nfe, setting), (mean, sd, n) in cell.items():
        base = cell.get((solver, schedule, nfe, "none"))
        if setting == "none" or nfe < 6 or base is None:
            continue
        if math.isfinite(mean) and math.isfinite(base[0]):
            diff, se = mean - base[0], math.sqrt(sd ** 2 / n + base[1] ** 2 / base[2])
            counts[setting][1 if abs(diff) <= 2 * se else 0 if diff < 0 else 2] += 1
        else:
            counts[setting][2 if math.isfinite(base[0]) else 1] += 1
    return {s: tuple(c) for s, c in counts.items()}


def test_results_summary_counts_are_the_records(executed):
    """The committed summary of notebooks/results.ipynb, for ring2d, is what study.jsonl gives by the stated rule
    (stale outputs or a different rule fail); its figures are labelled and the quality axes are logarithmic."""
    stored = _stored_stdout(_code_cells(RESULTS)[1])
    rows = [re.match(r"^(\S+)\s+(\S+)\s+(\d+) / +(\d+) / +(\d+)$", x) for x in stored.splitlines()]
    table = {m[2]: tuple(int(m[i]) for i in (3, 4, 5)) for m in rows if m and m[1] == "ring2d"}
    assert table and table == _summary_counts("ring2d")
    assert {"stein_paper", "stein_ours"} <= set(table)
    namespace, printed, figures = executed[RESULTS]
    assert namespace["summary"][("ring2d", "stein_ours")] == dict(zip(("better", "same", "worse"), table["stein_ours"]))
    axes = [ax for f in figures for ax in f.axes if ax.get_visible()]
    assert len(figures) == len(namespace["TESTBEDS"]) + 2
    for ax in axes:
        assert ax.get_xlabel() and ax.get_title()
    quality = [ax for f in figures[:len(namespace["TESTBEDS"])] for ax in f.axes]
    assert all(ax.get_yscale() == "log" for ax in quality)
    assert all(f.legends or any(ax.get_legend() for ax in f.axes) for f in figures)
    assert any("gamma" in ax.get_ylabel() for ax in axes) and any("Lipschitz" in ax.get_ylabel() for ax in axes)
