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
