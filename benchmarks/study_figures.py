"""The figures of the results study (docs/results/*.png): quality against NFE and against sampling time per
test-bed, and gamma per step of each setting that records one."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from study import headline  # noqa: E402

GAMMA_NFE = 6  # the NFE whose gamma per step is drawn
WIDE_GAMMA = 5.0  # beyond this |gamma| the gamma figure's axis is symlog, so that gamma near 1 stays readable


def _panels(cells: dict, testbed: str):
    solvers = sorted({k[1] for k in cells if k[0] == testbed})
    schedules = sorted({k[2] for k in cells if k[0] == testbed})
    fig, axes = plt.subplots(len(schedules), len(solvers), figsize=(3.2 * len(solvers), 2.8 * len(schedules)),
                             squeeze=False, sharey=True)
    return fig, axes, solvers, schedules


def quality_figure(cells: dict, testbed: str, x: str, path: Path) -> None:
    """Mean ± sd of the headline metric against NFE (x="nfe") or median sampling seconds (x="seconds")."""
    fig, axes, solvers, schedules = _panels(cells, testbed)
    settings = sorted({k[4] for k in cells if k[0] == testbed}, key=lambda s: (s != "none", s))
    for i, schedule in enumerate(schedules):
        for j, solver in enumerate(solvers):
            ax = axes[i][j]
            for setting in settings:
                pts = sorted((k[3], c) for k, c in cells.items() if k[:3] == (testbed, solver, schedule)
                             and k[4] == setting and math.isfinite(c["mean"]) and c["mean"] > 0)
                if pts:
                    xs = [p[0] if x == "nfe" else p[1]["seconds"] for p in pts]
                    ax.errorbar(xs, [p[1]["mean"] for p in pts], yerr=[[min(p[1]["sd"], 0.9 * p[1]["mean"])
                                for p in pts], [p[1]["sd"] for p in pts]], marker="o", ms=3, capsize=2,
                                label=setting, lw=2 if setting == "none" else 1)
            ax.set_yscale("log")
            if x == "seconds":
                ax.set_xscale("log")
            ax.set_title(f"{solver}, {schedule}", fontsize=9)
            ax.set_xlabel("NFE" if x == "nfe" else "sampling time (s, median)")
        axes[i][0].set_ylabel(f"{headline(testbed)} (lower is better)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{testbed}: mean ± sd over seed sets (error bars clipped at 10% of the mean on the log axis)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def gamma_figure(cells: dict, testbed: str, path: Path) -> bool:
    """gamma per step at NFE GAMMA_NFE for each setting that records it (seed set 1), per solver and schedule."""
    fig, axes, solvers, schedules = _panels(cells, testbed)
    drawn, largest = False, 0.0
    settings = sorted({k[4] for k, c in cells.items() if k[0] == testbed and k[3] == GAMMA_NFE and c.get("gamma")})
    style = {s: (f"C{n % 10}", "os^vDP*"[n % 7]) for n, s in enumerate(settings)}  # 70 distinct looks
    for i, schedule in enumerate(schedules):
        for j, solver in enumerate(solvers):
            ax = axes[i][j]
            for k, c in sorted(cells.items()):
                if k[:4] == (testbed, solver, schedule, GAMMA_NFE) and c.get("gamma"):
                    color, marker = style[k[4]]
                    ax.plot(range(len(c["gamma"])), c["gamma"], marker=marker, ms=3, color=color, label=k[4])
                    largest = max([largest, *(abs(g) for g in c["gamma"] if g is not None and math.isfinite(g))])
                    drawn = True
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{solver}, {schedule}, NFE {GAMMA_NFE}", fontsize=9)
            ax.set_xlabel("step")
    wide = largest > WIDE_GAMMA  # a few extreme steps (the paper's setting, the trajectory oracle's last step)
    for row in axes:
        for ax in row:
            if wide:
                ax.set_yscale("symlog", linthresh=2.0)
        row[0].set_ylabel("gamma (1 = uncorrected)" + (";\nsymlog, linear in [-2, 2]" if wide else ""))
    if drawn:
        handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
        fig.set_figheight(max(fig.get_figheight(), 0.16 * len(handles) + 0.4))  # the legend's height
        fig.legend(handles.values(), handles.keys(), fontsize=6, loc="center right")  # every panel's settings
        fig.suptitle(f"{testbed}: gamma per step (mean over batches, first evaluation seed set)")
        fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))  # room on the right for the legend
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def draw_figures(cells: dict, folder: Path, relative_to: Path) -> list[str]:
    """Draws every figure; returns the markdown lines that show them."""
    lines = []
    for testbed in sorted({k[0] for k in cells}):
        names = [f"{testbed}_vs_nfe.png", f"{testbed}_vs_time.png"]
        quality_figure(cells, testbed, "nfe", folder / names[0])
        quality_figure(cells, testbed, "seconds", folder / names[1])
        if gamma_figure(cells, testbed, folder / f"{testbed}_gamma.png"):
            names.append(f"{testbed}_gamma.png")
        lines += [f"![{n}]({(folder / n).relative_to(relative_to)})" for n in names] + [""]
    return lines
