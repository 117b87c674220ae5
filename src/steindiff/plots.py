"""Plots of a run: samples over the data, image grids, gamma and the Lipschitz estimate per step.

Every function draws on a ``matplotlib.figure.Figure`` of its own (no pyplot, no global backend), saves it
when given a path and returns it, so a test or a notebook can read its limits, labels and texts.

Sample plots show the data: the view covers the reference data's range and the samples' robust range
(0.5 %..99.5 % quantiles per coordinate), and the figure states how many samples lie outside each panel's
view and how many are non-finite. When the samples spread far beyond the data, a second panel zooms on the
data. Per-step plots summarise several batches (or groups) as the median with a min..max band, and say so.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["View", "draw_samples", "draw_trace", "draws_gamma", "estimate_names", "image_grid", "lipschitz_plot",
           "log_if_wide", "run_title", "sample_view", "scatter_plot", "step_summary", "trace_plot", "SIGMA_LABEL"]

SIGMA_LABEL = "sigma at step start (log scale, decreasing: sampling runs left to right)"
ZOOM_RATIO = 4.0  # a second panel zooms on the data when the view is this many times wider than the data


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # start-up: matplotlib takes 0.3-0.5 s; runs with plots=false never pay it

    return Figure(figsize=(width, height))


def _wrap(title: str, width: int) -> str:
    """``title`` broken at its ' | ' separators (or spaces) into lines of at most ``width`` characters."""
    lines: list[str] = []
    for part in title.split("\n"):
        line = ""
        for piece in part.split(" | "):
            if line and len(line) + 3 + len(piece) > width:
                lines.append(line)
                line = piece
            else:
                line = f"{line} | {piece}" if line else piece
        lines.extend(textwrap.wrap(line, width) or [""])
    return "\n".join(lines)


def _save(fig, path: Path | str | None):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def run_title(results: dict) -> str:
    """'<setting> | NFE n (k steps, final step f) | seeds a..b (n=N)' from a run's results.json fields."""
    parts = [str(results.get("setting") or f"{results.get('solver')} / {results.get('corrector', 'none')}")]
    if results.get("nfe") is not None:
        steps = f" ({results['num_steps']} steps, final step {results.get('final_step')})" \
            if results.get("num_steps") is not None else ""
        parts.append(f"NFE {results['nfe']}{steps}")
    if results.get("num_samples") is not None:
        parts.append(f"seeds {results.get('seeds', '?')} (n={results['num_samples']})")
    return " | ".join(parts)


# --- samples over the data -------------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """Axis limits of a sample panel."""

    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """(N,) bool: finite rows of the (N, 2) points within the limits."""
        with np.errstate(invalid="ignore"):
            return ((xy[:, 0] >= self.xlim[0]) & (xy[:, 0] <= self.xlim[1])
                    & (xy[:, 1] >= self.ylim[0]) & (xy[:, 1] <= self.ylim[1]))

    @property
    def span(self) -> float:
        return max(self.xlim[1] - self.xlim[0], self.ylim[1] - self.ylim[0])


def _box(points: np.ndarray, quantile: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
    finite = points[np.isfinite(points).all(axis=1)]
    if len(finite) == 0:
        return None
    return np.quantile(finite, quantile, axis=0), np.quantile(finite, 1.0 - quantile, axis=0)


def sample_view(reference: np.ndarray | None, xy: np.ndarray | None, quantile: float = 0.005,
                margin: float = 0.08) -> View:
    """A square view holding the reference's full range and the (N, 2) samples' robust range."""
    boxes = [b for b in (None if reference is None else _box(reference),
                         None if xy is None else _box(xy, quantile)) if b is not None]
    if not boxes:
        return View((-1.0, 1.0), (-1.0, 1.0))
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    centre, half = (lo + hi) / 2.0, max(float(np.max(hi - lo)) / 2.0, 1e-6) * (1.0 + margin)
    return View((centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half))


def draw_samples(ax, xy: np.ndarray, reference: np.ndarray | None, view: View, *, sample_label: str = "samples",
                 reference_label: str = "data", axis_labels: tuple[str, str] = ("x[0]", "x[1]")) -> dict:
    """Reference (grey) and samples (red) within ``view``; writes the counts outside it. Returns the counts."""
    xy = np.asarray(xy, dtype=np.float64)
    finite = np.isfinite(xy).all(axis=1)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.75", label=reference_label, rasterized=True)
    ax.scatter(xy[finite, 0], xy[finite, 1], s=1, c="C3", label=sample_label, rasterized=True)
    data = None if reference is None else sample_view(reference, None, margin=0.0)
    if data is not None and view.span > ZOOM_RATIO * data.span:  # the data is small here: show where it is
        from matplotlib.patches import Rectangle  # start-up: as matplotlib

        ax.add_patch(Rectangle((data.xlim[0], data.ylim[0]), data.span, data.span, fill=False, ec="k", lw=0.8,
                               ls="--", label="range of the data"))
    counts = {"total": len(xy), "non_finite": int((~finite).sum()),
              "outside": int((finite & ~view.inside(xy)).sum())}
    ax.set_xlim(*view.xlim)
    ax.set_ylim(*view.ylim)
    ax.set_aspect("equal")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.tick_params(labelsize=7)
    ax.text(0.02, 0.02, f"outside this view: {counts['outside']} of {counts['total']}\n"
            f"non-finite: {counts['non_finite']} of {counts['total']}", transform=ax.transAxes, fontsize=7,
            va="bottom", ha="left", bbox=dict(boxstyle="round", fc="white", ec="0.6", alpha=0.85))
    ax.legend(fontsize=7, markerscale=5, loc="upper right")
    return counts


def scatter_plot(path: Path | str | None, samples: np.ndarray, data, title: str,
                 dims: tuple[int, int] = (0, 1)):
    """Samples over exact data samples (``data.sample``, seed 0) on coordinates ``dims``; returns the Figure.

    One panel covers the data and the samples' robust range; a second zooms on the data when the samples
    spread more than ``ZOOM_RATIO`` times wider.
    """
    samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    dim = samples.shape[1]
    ref = None
    if data is not None:
        ref = data.sample(len(samples), generator=torch.Generator().manual_seed(0)).numpy().reshape(len(samples), -1)
        ref = ref[:, list(dims)]
    xy = samples[:, list(dims)]
    axis_labels = tuple(f"x[{d}]" for d in dims)
    if dim > 2:
        axis_labels = tuple(f"x[{d}] (coordinate {d} of {dim}; axis-aligned projection)" for d in dims)
    full = sample_view(ref, xy)
    zoom = sample_view(ref, None) if ref is not None else None
    panels = [(full, "data and samples")]
    if zoom is not None and full.span > ZOOM_RATIO * zoom.span:
        panels.append((zoom, "zoom on the data"))
    fig = _figure(4.2 * len(panels), 4.6)
    for i, (view, what) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        draw_samples(ax, xy, ref, view, sample_label=f"samples (n={len(xy)})",
                     reference_label=f"exact data (n={len(xy)}, seed 0)", axis_labels=axis_labels)
        ax.set_title(what, fontsize=8)
    fig.suptitle(_wrap(title, int(15 * 4.2 * len(panels))), fontsize=8)
    return _save(fig, path)


# --- per-step traces -------------------------------------------------------------------------------------

def step_summary(trace: list[dict], key: str, reduce: str = "median") -> dict[str, np.ndarray]:
    """Per step of ``trace`` (entries with ``step``, one per batch or a summary): sigma, the median (or
    min / max) of ``key`` over entries, min, max, and the number of entries. Steps without ``key`` are NaN."""
    steps: dict[int, list[dict]] = {}
    for i, t in enumerate(trace):
        steps.setdefault(int(t.get("step", i)), []).append(t)
    order = sorted(steps)
    sigma = np.array([steps[s][0]["sigma"] for s in order], dtype=np.float64)
    rows = [np.array([t[key] for t in steps[s] if key in t and t[key] is not None], dtype=np.float64)
            for s in order]
    pick = {"median": np.median, "min": np.min, "max": np.max}[reduce]
    centre = np.array([pick(r) if len(r) else np.nan for r in rows])
    return {"sigma": sigma, "centre": centre, "min": np.array([r.min() if len(r) else np.nan for r in rows]),
            "max": np.array([r.max() if len(r) else np.nan for r in rows]),
            "count": max((len(r) for r in rows), default=0)}


def draw_trace(ax, trace: list[dict], key: str, label: str, color: str | None = None, reduce: str = "median",
               marker: str = "o", describe: bool = True) -> int:
    """``key`` against sigma: one line when each step has one entry, else the median (or ``reduce``) with a
    min..max band over the entries. ``describe``: the legend entries say what the line and band are (else the
    caller says it once, e.g. in the legend's title). Returns the number of entries per step."""
    s = step_summary(trace, key, reduce)
    n = s["count"]
    what = f", {reduce} over {n} batches" if n > 1 and describe else ""
    line, = ax.plot(s["sigma"], s["centre"], marker=marker, ms=3, color=color, label=f"{label}{what}")
    if n > 1 and reduce == "median":
        ax.fill_between(s["sigma"], s["min"], s["max"], color=line.get_color(), alpha=0.2, lw=0,
                        label=f"{label}, min..max over {n} batches" if describe else None)
    return n


def log_if_wide(ax, values, ratio: float = 50.0) -> str:
    """A log y axis when every finite value is positive and they span more than ``ratio``; a symmetric log
    axis (linear within [-1, 1]) when some are not and the largest magnitude exceeds ``ratio``. Returns the
    words for the axis label: '' (linear), ' (log scale)' or ' (symlog scale, linear in [-1, 1])'."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) and v.min() > 0 and v.max() / v.min() > ratio:
        ax.set_yscale("log")
        return " (log scale)"
    if len(v) and v.min() <= 0 and np.abs(v).max() > ratio:
        ax.set_yscale("symlog", linthresh=1.0)
        return " (symlog scale, linear in [-1, 1])"
    return ""


def _sigma_axis(ax) -> None:
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(SIGMA_LABEL, fontsize=8)
    ax.tick_params(labelsize=7)


def _gamma_extras(ax, trace: list[dict]) -> None:
    """The extreme gamma of one sample or group (per-sample or group statistics: rows differ from the batch
    gamma) and 1/(1 - r), the exact gamma of reading 'state'."""
    rows_differ = any(abs(t.get(k, t["gamma"]) - t["gamma"]) > 1e-6 for t in trace if "gamma" in t
                      for k in ("gamma_min_row", "gamma_max_row"))
    if rows_differ:
        low, high = step_summary(trace, "gamma_min_row", "min"), step_summary(trace, "gamma_max_row", "max")
        ax.plot(low["sigma"], low["centre"], ls="-.", lw=0.8, c="C2", label="gamma of one sample/group: min")
        ax.plot(high["sigma"], high["centre"], ls="-.", lw=0.8, c="C4", label="gamma of one sample/group: max")
    if any("inv_one_minus_r" in t for t in trace):
        r = step_summary(trace, "inv_one_minus_r")
        ax.plot(r["sigma"], r["centre"], ls=":", c="0.4", label="1/(1-r), r = sigma_next/sigma (exact, target=state)")


#: the estimator observer's numbers (steindiff.core.EstimatorObserver), drawn beside the corrector's gamma
ESTIMATOR_KEYS = {"stein_estimate": "Stein estimate (observer)", "oracle_gamma": "oracle gamma (observer)"}
#: the observer's named estimates (``correctors={name: ...}``): "stein_estimate[name]" (core's ``estimate_key``)
_NAMED_PREFIX, _NAMED_SUFFIX = "stein_estimate[", "]"
#: their markers, one per name (cycled), none of those of the lines above (o, s, D)
_NAMED_MARKERS = ("v", "^", "P", "X", "*", "h", "<", ">", "p", "d")


def estimate_names(trace: list[dict]) -> list[str]:
    """The names of the estimator observer's named estimates ("stein_estimate[name]") in ``trace``, in the order
    they first appear."""
    keys = dict.fromkeys(k for t in trace for k in t if k.startswith(_NAMED_PREFIX) and k.endswith(_NAMED_SUFFIX)
                         and len(k) > len(_NAMED_PREFIX) + len(_NAMED_SUFFIX))
    return [k[len(_NAMED_PREFIX):-len(_NAMED_SUFFIX)] for k in keys]


def draws_gamma(trace: list[dict]) -> bool:
    """Whether ``trace`` holds a gamma to draw: a corrector's, or the estimator observer's (any of its keys)."""
    return any("gamma" in t or any(k in t for k in ESTIMATOR_KEYS) for t in trace) or bool(estimate_names(trace))


def trace_plot(path: Path | str | None, trace: list[dict], key: str, title: str, reference: float | None = 1.0,
               ylabel: str | None = None):
    """``key`` per step (e.g. gamma) against sigma; with several batches their median and min..max band.
    For gamma: the per-sample/group range when the trace has it, 1/(1 - r), and the estimator observer's
    Stein estimate (or each named one, "Stein estimate: name") and oracle gamma at the same states when
    recorded. Returns the Figure."""
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    extra = [k for k in ESTIMATOR_KEYS if key == "gamma" and any(k in t for t in trace)]
    named = estimate_names(trace) if key == "gamma" else []
    if any(key in t for t in trace):
        draw_trace(ax, trace, key, f"{key} (the corrector's)" if extra or named else key)
    for i, name in enumerate(named):
        draw_trace(ax, trace, f"{_NAMED_PREFIX}{name}{_NAMED_SUFFIX}", f"Stein estimate: {name} (observer)",
                   marker=_NAMED_MARKERS[i % len(_NAMED_MARKERS)])
    for k, marker in zip(extra, ("s", "D")):
        draw_trace(ax, trace, k, ESTIMATOR_KEYS[k], marker=marker)
    if key == "gamma":
        _gamma_extras(ax, trace)
    if reference is not None:
        ax.axhline(reference, color="0.5", lw=0.8, ls="--",
                   label=f"{key} = {reference:g}" + (" (no correction)" if key == "gamma" else ""))
    _sigma_axis(ax)
    shown = (key, f"{key}_min_row", f"{key}_max_row", *extra, *(f"{_NAMED_PREFIX}{n}{_NAMED_SUFFIX}" for n in named))
    log = log_if_wide(ax, [t.get(k) for t in trace for k in shown])
    ax.set_ylabel((ylabel or key) + log)
    ax.set_title(_wrap(title, 90), fontsize=8)
    ax.legend(fontsize=7)
    return _save(fig, path)


def lipschitz_plot(path: Path | str | None, trace: list[dict], title: str):
    """The local Lipschitz estimate of the step map per step: the mean over samples (median and range over
    batches) and the max over all samples. Returns the Figure."""
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    draw_trace(ax, trace, "lipschitz_mean", "mean over samples")
    draw_trace(ax, trace, "lipschitz_max", "max over samples", reduce="max", marker="^")
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--", label="L = 1 (contraction boundary)")
    log = log_if_wide(ax, [t.get(k) for t in trace for k in ("lipschitz_mean", "lipschitz_max")], ratio=1.0)
    _sigma_axis(ax)
    ax.set_ylabel("local Lipschitz constant of the step map T" + log, fontsize=8)
    ax.set_title(_wrap(title, 90), fontsize=8)
    ax.legend(fontsize=7)
    return _save(fig, path)


def image_grid(path: Path | str | None, images: np.ndarray, title: str, columns: int | None = None):
    """A grid of (N, C, H, W) images in [-1, 1] (C = 1 grey, 3 RGB); non-finite pixels drawn black and
    counted in the title. Returns the Figure."""
    images = np.asarray(images, dtype=np.float64)
    bad = int((~np.isfinite(images).reshape(len(images), -1).all(axis=1)).sum())
    images = np.nan_to_num(np.clip((images + 1.0) / 2.0, 0.0, 1.0), nan=0.0)
    n, c, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, 3))
    for i in range(n):
        r, k = divmod(i, columns)
        tile = images[i].transpose(1, 2, 0)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = (
            np.repeat(tile, 3, axis=2) if c == 1 else tile[..., :3])
    fig = _figure(min(12.0, 0.5 + 0.06 * canvas.shape[1]), min(12.0, 0.7 + 0.06 * canvas.shape[0]))
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{_wrap(title, 80)}\nfirst {n} samples; with a non-finite value: {bad} of {n}", fontsize=8)
    return _save(fig, path)
