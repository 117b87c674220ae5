"""Plots a person reads: sample views that show the samples (counts of those outside and non-finite), axis
labels, titles with what was run, per-step legends that say what they summarise; steindiff-compare's figure."""

import re

import matplotlib
import numpy as np
import pytest
import torch

from steindiff.cli.compare import gamma_plot, parse_args, run, scatter
from steindiff.core import mixture_preset
from steindiff.plots import image_grid, lipschitz_plot, run_title, sample_view, scatter_plot, trace_plot

matplotlib.use("Agg")

RESULTS = {"setting": "dpmpp_2m / stein", "nfe": 6, "num_steps": 6, "final_step": "zero", "num_samples": 1000,
           "seeds": "0..999"}


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _count(text: str, what: str) -> tuple[int, int]:
    m = re.search(rf"{what}: (\d+) of (\d+)", text)
    assert m, (what, text)
    return int(m.group(1)), int(m.group(2))


def _inside(ax, xy) -> np.ndarray:
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    return (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)


def _diverged(n=1000, seed=0):
    """The finding: most samples far off the ring (energy distance ~50); a 1.3x data view showed 2 of 1000."""
    g = np.random.default_rng(seed)
    xy = g.normal(scale=60.0, size=(n, 2))
    xy[:2] = [[1.5, 0.0], [0.0, -1.5]]
    return xy


def test_scatter_view_holds_the_samples_and_counts_the_rest(tmp_path):
    data, xy = mixture_preset("ring2d"), _diverged()
    ref = data.sample(len(xy), generator=torch.Generator().manual_seed(0)).numpy()
    old_lim = float(np.abs(ref).max()) * 1.3
    assert (np.abs(xy) <= old_lim).all(axis=1).sum() <= 5  # what the fixed 1.3x view showed
    fig = scatter_plot(tmp_path / "scatter.png", xy, data, run_title(RESULTS))
    assert (tmp_path / "scatter.png").stat().st_size > 1000
    full, zoom = fig.axes  # the samples spread far beyond the data: a second panel zooms on the data
    inside = _inside(full, xy)
    assert inside.mean() >= 0.98 and _inside(full, ref).all()
    assert _count(_texts(full)[0], "outside this view") == (int((~inside).sum()), 1000)
    assert _count(_texts(full)[0], "non-finite") == (0, 1000)
    assert _inside(zoom, ref).all()
    assert _count(_texts(zoom)[0], "outside this view") == (int((~_inside(zoom, xy)).sum()), 1000)
    assert any("range of the data" in t for t in _legend(full))


def test_scatter_close_samples_one_panel_and_non_finite_counted():
    data = mixture_preset("ring2d")
    xy = data.sample(500, generator=torch.Generator().manual_seed(1)).numpy()
    xy[:7] = np.nan
    xy[7:10, 1] = np.inf
    fig = scatter_plot(None, xy, data, "t")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert _count(_texts(ax)[0], "non-finite") == (10, 500)
    finite = np.isfinite(xy).all(axis=1)
    assert _count(_texts(ax)[0], "outside this view") == (int((finite & ~_inside(ax, xy)).sum()), 500)
    assert ax.get_xlabel() == "x[0]" and ax.get_ylabel() == "x[1]"
    assert any("n=500" in t for t in _legend(ax))


def test_scatter_title_and_projection_labels():
    data = mixture_preset("aniso32")
    xy = data.sample(200, generator=torch.Generator().manual_seed(2)).numpy()
    fig = scatter_plot(None, xy, data, run_title({**RESULTS, "num_samples": 200, "seeds": "0..199"}))
    title = fig.get_suptitle()
    for part in ("dpmpp_2m / stein", "NFE 6", "6 steps", "seeds 0..199", "n=200"):
        assert part in title, part
    ax = fig.axes[0]
    assert "coordinate 0 of 32" in ax.get_xlabel() and "coordinate 1 of 32" in ax.get_ylabel()
    assert "projection" in ax.get_xlabel()


def test_sample_view_is_square_and_holds_the_data():
    ref = np.array([[-1.0, -2.0], [3.0, 2.0]])
    v = sample_view(ref, None, margin=0.0)
    assert v.xlim == pytest.approx((-1.0, 3.0)) and v.ylim == pytest.approx((-2.0, 2.0))
    v = sample_view(ref, np.array([[np.nan, 0.0], [10.0, 0.0], [np.inf, 1.0]]), quantile=0.0, margin=0.0)
    assert v.xlim == pytest.approx((-1.0, 10.0)) and v.ylim == pytest.approx((-5.5, 5.5))


def _trace(batches=4, steps=5, rows_differ=False):
    sig = np.geomspace(80, 0.01, steps)
    out = []
    for b in range(batches):
        for i in range(steps):
            g = 1.0 + 0.1 * i + 0.05 * b
            out.append({"batch": 100 * b, "step": i, "sigma": float(sig[i]), "gamma": g,
                        "gamma_min_row": g - (0.3 if rows_differ else 0.0),
                        "gamma_max_row": g + (0.3 if rows_differ else 0.0),
                        "inv_one_minus_r": 1.5, "lipschitz_mean": 0.5 + i + b, "lipschitz_max": 2.0 + 3 * i + b})
    return out


def test_trace_plot_summarises_batches_and_says_so():
    fig = trace_plot(None, _trace(), "gamma", run_title(RESULTS))
    ax = fig.axes[0]
    legend = _legend(ax)
    assert "gamma, median over 4 batches" in legend and "gamma, min..max over 4 batches" in legend
    assert "gamma = 1 (no correction)" in legend and not any("one sample/group" in t for t in legend)
    line = ax.get_lines()[0]
    assert line.get_ydata() == pytest.approx([1.075 + 0.1 * i for i in range(5)])  # median over 4 batches
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(1.0) and band.max() == pytest.approx(1.55)
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] > ax.get_xlim()[1]  # sigma decreasing to the right
    assert "sigma" in ax.get_xlabel() and "decreasing" in ax.get_xlabel() and ax.get_ylabel() == "gamma"
    assert "NFE 6" in ax.get_title() and "n=1000" in ax.get_title()


def test_trace_plot_one_batch_and_per_sample_extremes():
    ax = trace_plot(None, _trace(batches=1, rows_differ=True), "gamma", "t").axes[0]
    legend = _legend(ax)
    assert legend[0] == "gamma" and not any("median" in t for t in legend)
    assert "gamma of one sample/group: min" in legend and "gamma of one sample/group: max" in legend


def test_trace_plot_wide_values_on_a_log_axis():
    trace = [{**t, "gamma": 10.0 ** t["step"]} for t in _trace(batches=1)]
    ax = trace_plot(None, trace, "gamma", "t").axes[0]
    assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()


def test_lipschitz_plot_labels():
    ax = lipschitz_plot(None, _trace(), run_title(RESULTS)).axes[0]
    legend = _legend(ax)
    assert "mean over samples, median over 4 batches" in legend and "max over samples, max over 4 batches" in legend
    assert "L = 1 (contraction boundary)" in legend
    assert ax.get_yscale() == "log" and "Lipschitz" in ax.get_ylabel() and "log scale" in ax.get_ylabel()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["max over samples, max over 4 batches"].get_ydata() == pytest.approx([5.0 + 3 * i for i in range(5)])
    assert "NFE 6" in ax.get_title()


def test_image_grid_counts_non_finite():
    images = np.zeros((4, 1, 8, 8))
    images[1, 0, 2, 2] = np.nan
    fig = image_grid(None, images, "digits | NFE 8")
    assert "non-finite value: 1 of 4" in fig.axes[0].get_title()


@pytest.mark.slow
def test_compare_figures_have_ticks_labels_legend_title():
    args = parse_args(["--solvers", "euler,heun", "--nfe", "6", "--seeds", "0-99", "--batch-size", "50",
                       "--corrector", "stein", "--gamma-min", "0.5"])
    results, samples, fresh = run(args)
    from steindiff.cli.compare import describe

    title = describe(args, 100)
    fig = scatter(None, samples, fresh, title, {n: r["nfe"] for n, r in results["solvers"].items()})
    suptitle = fig.get_suptitle()
    for part in ("ring2d", "NFE budget 6", "corrector stein", "n=100"):
        assert part in suptitle, part
    assert [ax.get_title() for ax in fig.axes] == ["euler, measured NFE 6", "heun, measured NFE 5"]
    for ax, name in zip(fig.axes, ("euler", "heun")):
        assert len(ax.get_xticks()) > 1 and len(ax.get_yticks()) > 1
        assert ax.get_xlabel() == "x[0]" and ax.get_ylabel() == "x[1]"
        assert f"{name} (n=100)" in _legend(ax) and "exact data (n=100)" in _legend(ax)
        assert _count(_texts(ax)[0], "outside this view")[1] == 100
    ax = gamma_plot(None, results, title).axes[0]
    assert "euler (NFE 6)" in _legend(ax) and "heun (NFE 5)" in _legend(ax)
    assert ax.get_legend().get_title().get_text() == "lines: median over 2 batches, bands: min..max"
    assert "sigma" in ax.get_xlabel() and "gamma" in ax.get_ylabel() and "corrector stein" in ax.get_title()
