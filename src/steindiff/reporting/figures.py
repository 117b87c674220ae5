"""Report plots: one metric of one experiment against the NFE budget, one line per setting.

Points are the table's means over seed sets. Error bars are drawn so that they are right on the axis:

- linear axis: mean ± sample std over seed sets, clipped to the metric's range (fractions to [0, 1],
  distances at 0) and the caption says so;
- log axis (a metric that cannot be negative, all values > 0 and spanning more than a decade):
  mean ×/÷ exp(s), s the sample std of log(value) over seed sets: the spread in log space, never below 0;
- symmetric-log axis (a metric that can be negative, e.g. NLL, spanning more than two decades): mean ± std.

No bar where a setting has one seed set (n = 1). The caption under the plot says what the bars are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metric_info import MetricInfo, axis_label, metric_info
from .settings import Experiment
from .tables import Cell, aggregate

__all__ = ["Bars", "bar_extent", "choose_scale", "metric_figure", "save_metric_plot"]

_LOG_SPAN = 10.0  # a log axis when max / min of a positive metric exceeds this
_SYMLOG_SPAN = 100.0  # a symmetric-log axis when max |v| / min |v| of a signed metric exceeds this


@dataclass
class Bars:
    """What one axis draws: its scale, whether a bar was clipped to the metric's range, symlog's linear range."""

    scale: str
    clipped: bool = False
    linthresh: float = 1.0


def _finite_values(cells: dict) -> list[float]:
    return [v for c in cells.values() for v in [c.mean, *c.values] if math.isfinite(v)]


def choose_scale(info: MetricInfo, cells: dict[tuple[str, int], Cell]) -> Bars:
    """log for a metric >= 0 whose values are all > 0 and span more than a decade; symlog for a metric that
    can be negative spanning more than two decades; linear otherwise (fractions always)."""
    values = _finite_values(cells)
    nonzero = [abs(v) for v in values if v != 0]
    if not nonzero or info.high <= 1.0:
        return Bars("linear")
    span = max(nonzero) / min(nonzero)
    if info.nonnegative and min(values) > 0 and span > _LOG_SPAN:
        return Bars("log")
    if not info.nonnegative and span > _SYMLOG_SPAN:
        return Bars("symlog", linthresh=10.0 ** math.floor(math.log10(min(nonzero))))
    return Bars("linear")


def bar_extent(cell: Cell, info: MetricInfo, bars: Bars) -> tuple[float, float]:
    """(lower, upper) end of the error bar of ``cell`` on an axis of ``bars.scale`` (both = mean: no bar)."""
    m = cell.mean
    if cell.std is None or not math.isfinite(cell.std) or not math.isfinite(m):
        return m, m
    if bars.scale == "log":
        factor = math.exp(float(np.std(np.log(cell.values), ddof=1)))
        return m / factor, m * factor
    low, high = max(m - cell.std, info.low), min(m + cell.std, info.high)
    if (low, high) != (m - cell.std, m + cell.std):
        bars.clipped = True
    return low, high


def caption(info: MetricInfo, bars: Bars) -> str:
    """What the points and bars are, for the text under the plot."""
    text = "Points: mean over the n seed sets of a setting (n in the legend). Bars: "
    if bars.scale == "log":
        text += "×/÷ exp(s), s = sample std of log(value) over seed sets (the spread on this log axis)"
    else:
        text += "± sample std (ddof 1) over seed sets"
        if bars.clipped:
            text += f", clipped to the metric's range [{info.low:g}, {info.high:g}]"
    text += "; no bar where n = 1."
    if bars.scale == "symlog":
        text += f" Axis: symmetric log, linear within ±{bars.linthresh:g}."
    return text


def metric_figure(exp: Experiment, metric: str):
    """The figure of ``metric`` vs NFE for every setting of ``exp`` (a matplotlib Figure, not saved)."""
    from matplotlib.figure import Figure  # start-up: matplotlib takes about 1 s; tables and errors need none

    cells, info = aggregate(exp, metric), metric_info(metric)
    bars = choose_scale(info, cells)
    fig = Figure(figsize=(7.5, 5.2))
    ax = fig.add_subplot()
    for row in exp.rows:
        points = sorted((x, c) for (r, x), c in cells.items() if r == row and math.isfinite(c.mean))
        if not points:
            continue
        x = [p[0] for p in points]
        y = np.array([p[1].mean for p in points])
        lo, hi = np.array([bar_extent(p[1], info, bars) for p in points]).T
        ns = sorted({p[1].n for p in points})
        n_text = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"
        ax.errorbar(x, y, yerr=np.maximum([y - lo, hi - y], 0.0), marker="o", ms=4, capsize=3,
                    label=f"{exp.label(row)} ({n_text})")
    _decorate(fig, ax, exp, metric, info, bars, sorted({x for _, x in cells}))
    return fig


def _decorate(fig, ax, exp: Experiment, metric: str, info: MetricInfo, bars: Bars, budgets: list[int]) -> None:
    if bars.scale == "symlog":
        ax.set_yscale("symlog", linthresh=bars.linthresh)
    else:
        ax.set_yscale(bars.scale)
    if budgets:
        ax.set_xticks(budgets)
    ax.set_xlabel("NFE budget (denoiser evaluations per sample)")
    ax.set_ylabel(axis_label(metric), fontsize=8)
    fixed = [f for f in exp.fixed if f.split("=", 1)[0] in ("schedule", "num_samples", "process")]
    solver_corrector = {exp.labels[r][0] for r in exp.rows}
    if len(solver_corrector) == 1:
        fixed.insert(0, solver_corrector.pop())
    ax.set_title(f"{info.label} vs NFE\n{exp.title}" + (f"\n{', '.join(fixed)}" if fixed else ""), fontsize=9)
    if ax.lines:
        ax.legend(fontsize=6)
    ax.grid(alpha=0.3, which="both")
    fig.text(0.01, 0.01, caption(info, bars), fontsize=6.5, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 1))


def save_metric_plot(path: Path, exp: Experiment, metric: str) -> None:
    """Draw and write ``<path>`` (PNG)."""
    metric_figure(exp, metric).savefig(path, dpi=110)
