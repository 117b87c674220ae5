"""Plots of a run: samples over the data, image grids, gamma and the Lipschitz estimate per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _plt():
    import matplotlib  # start-up: matplotlib takes 0.3-0.5 s to import; runs with plots=false never pay it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: as above

    return plt


def scatter_plot(path: Path, samples: np.ndarray, data, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    if data is not None:
        ref = data.sample(len(samples), generator=torch.Generator().manual_seed(0)).numpy()
        ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.75", label="data")
        lim = float(np.abs(ref).max()) * 1.3
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    finite = np.isfinite(samples).all(axis=1)
    ax.scatter(samples[finite, 0], samples[finite, 1], s=1, c="C3", label="samples")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, markerscale=5, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trace_plot(path: Path, trace: list[dict], key: str, title: str, reference: float | None = 1.0) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sigma = [t["sigma"] for t in trace]
    ax.plot(sigma, [t.get(key, np.nan) for t in trace], marker="o", ms=3, label=key)
    if key == "gamma" and all("inv_one_minus_r" in t for t in trace):
        ax.plot(sigma, [t["inv_one_minus_r"] for t in trace], ls=":", c="0.4", label="1/(1-r)")
    if reference is not None:
        ax.axhline(reference, color="0.5", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("sigma at step start")
    ax.set_ylabel(key)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lipschitz_plot(path: Path, trace: list[dict], title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sigma = [t["sigma"] for t in trace]
    ax.plot(sigma, [t["lipschitz_mean"] for t in trace], marker="o", ms=3, label="mean over samples")
    ax.plot(sigma, [t["lipschitz_max"] for t in trace], marker="^", ms=3, label="max over samples")
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("sigma at step start")
    ax.set_ylabel("local Lipschitz constant of T")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def image_grid(path: Path, images: np.ndarray, title: str, columns: int | None = None) -> None:
    """A grid of (N, C, H, W) images in [-1, 1] (C = 1 grey, 3 RGB), saved as PNG."""
    plt = _plt()
    images = np.clip((np.asarray(images, dtype=np.float64) + 1.0) / 2.0, 0.0, 1.0)
    images = np.nan_to_num(images, nan=0.0)
    n, c, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, 3))
    for i in range(n):
        r, k = divmod(i, columns)
        tile = images[i].transpose(1, 2, 0)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = (
            np.repeat(tile, 3, axis=2) if c == 1 else tile[..., :3])
    fig, ax = plt.subplots(figsize=(min(12.0, 0.5 + 0.06 * canvas.shape[1]), min(12.0, 0.7 + 0.06 * canvas.shape[0])))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
