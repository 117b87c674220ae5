"""steindiff-compare: few-step sampling of an exact Gaussian-mixture test-bed (core only).

Runs each requested solver at one NFE budget on a mixture preset, measures against ground truth
and writes a run folder:

    results.json     config, per-solver measured NFE, sigma grid, metrics, per-step trace
    samples.npz      samples of every solver with their seeds
    scatter.png      (2-D presets) samples over the true data
    gamma.png        (with --corrector stein) gamma per step for every solver

Metrics: energy distance to fresh data samples, mean negative log-likelihood under the true
mixture, and trajectory error (mean L2 distance to a 512-step Heun float64 solution of the same
ODE from the same noise: the discretisation error alone).

This is the core's own entry point; the Hydra/Lightning platform builds on the same core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from steindiff.core import (
    FINAL_STEP_POLICIES,
    MIXTURE_PRESETS,
    SCHEDULES,
    SOLVERS,
    Schedule,
    SteinCorrector,
    energy_distance,
    make_solver,
    mixture_preset,
    num_steps_for_nfe,
    parse_seeds,
    sample,
)
from steindiff.io import atomic_open, atomic_write_text
from steindiff.plots import SIGMA_LABEL, draw_samples, draw_trace, log_if_wide, sample_view

DEFAULT_SOLVERS = "euler,heun,dpmpp_2m,dpmpp_3m,unipc,ipndm"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="steindiff-compare", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="ring2d", help=f"mixture preset: {', '.join(MIXTURE_PRESETS)}")
    p.add_argument("--solvers", default=DEFAULT_SOLVERS, help="comma-separated solver names")
    p.add_argument("--nfe", type=int, default=8, help="NFE budget per sample (steps chosen per solver)")
    named = ", ".join(n for n in SCHEDULES if n != "explicit")
    p.add_argument("--schedule", default="edm", help=f"sigma schedule: {named}")
    p.add_argument("--final-step", default="zero", help=f"final-step policy: {', '.join(FINAL_STEP_POLICIES)}")
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--seeds", default="0-1999", help="seed list, e.g. '0-1999' or '0-9,20'")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--temperature", type=float, default=1.0, help="mixture posterior temperature knob")
    p.add_argument("--residual-scale", type=float, default=1.0, help="mixture residual-scale knob")
    p.add_argument("--corrector", default="none", choices=["none", "stein"], help="per-step corrector")
    p.add_argument("--target", default="data", help="Stein target: state (paper) or data (ours)")
    p.add_argument("--statistics", default="batch", help="Stein statistics: batch (paper), sample, group")
    p.add_argument("--divergence", default="hutchinson", help="divergence estimator for the Stein corrector")
    p.add_argument("--num-probes", type=int, default=5)
    p.add_argument("--gamma-min", type=float, default=None)
    p.add_argument("--gamma-max", type=float, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--out", default=None, help="run folder (default runs/compare-<time>)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    data = mixture_preset(args.preset, temperature=args.temperature, residual_scale=args.residual_scale)
    exact = mixture_preset(args.preset)
    seeds = parse_seeds(args.seeds)
    dtype = getattr(torch, args.dtype)
    names = [n.strip() for n in args.solvers.split(",") if n.strip()]
    for n in names:
        if n not in SOLVERS:
            raise ValueError(f"unknown solver {n!r}; accepted: {', '.join(sorted(SOLVERS))}")
    corrector = None
    if args.corrector == "stein":
        corrector = SteinCorrector(target=args.target, statistics=args.statistics, divergence=args.divergence,
                                   num_probes=args.num_probes, gamma_min=args.gamma_min, gamma_max=args.gamma_max)
    grid_kw = dict(sigma_min=args.sigma_min, sigma_max=args.sigma_max)
    shape = (data.dim,)
    reference = sample(data, Schedule("edm", "sigma_min", **grid_kw).grid(256), make_solver("heun"),
                       seeds=seeds, shape=shape, batch_size=args.batch_size, dtype=torch.float64).samples
    fresh = exact.sample(len(seeds), generator=torch.Generator().manual_seed(10**6))
    results = {"config": vars(args), "solvers": {}}
    samples = {"seeds": np.asarray(seeds)}
    for name in names:
        solver = make_solver(name)
        schedule = Schedule(args.schedule, args.final_step, **grid_kw)
        grid = schedule.grid(num_steps_for_nfe(solver, args.nfe, schedule.final_step))
        t0 = time.perf_counter()
        res = sample(data, grid, solver, corrector, seeds=seeds, shape=shape, batch_size=args.batch_size,
                     dtype=dtype)
        wall = time.perf_counter() - t0
        x = res.samples.double()
        results["solvers"][name] = {
            **res.summary(),
            "solver": repr(solver),
            "wall_s": wall,
            "energy_distance": energy_distance(x, fresh),
            "nll": float(-exact.log_prob(x).mean()),
            "trajectory_error": float((x - reference).norm(dim=1).mean()),
            "finite": bool(torch.isfinite(x).all()),
            "corrector": repr(corrector) if corrector is not None else "none",
            "trace": res.trace,
        }
        samples[name] = x.float().numpy()
    results["reference_energy_distance"] = energy_distance(reference, fresh)
    return results, samples, fresh


def scatter(path: Path | None, samples: dict, fresh: torch.Tensor, title: str, nfe: dict | None = None):
    """One panel per solver: its samples over exact data samples, the view holding the data and the samples'
    robust range, with the count outside the view and non-finite; ``nfe``: measured NFE per solver, for the
    panel titles. Returns the Figure."""
    from matplotlib.figure import Figure  # start-up: matplotlib takes about 1 s; --help and errors need none

    names = [k for k in samples if k != "seeds"]
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(3.6 * cols, 3.7 * rows + 0.6))
    ref = fresh[:, :2].numpy()
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        xy = samples[name][:, :2]
        draw_samples(ax, xy, ref, sample_view(ref, xy), sample_label=f"{name} (n={len(xy)})",
                     reference_label=f"exact data (n={len(ref)})")
        ax.set_title(name if nfe is None else f"{name}, measured NFE {nfe[name]}", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def gamma_plot(path: Path | None, results: dict, title: str):
    """gamma per step for every solver against sigma: the median over batches with its min..max band.
    Returns the Figure."""
    from matplotlib.figure import Figure  # start-up: matplotlib takes about 1 s; --help and errors need none

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    counts = [draw_trace(ax, r["trace"], "gamma", f"{name} (NFE {r['nfe']})", color=f"C{i}", describe=False)
              for i, (name, r) in enumerate(results["solvers"].items())]
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--", label="gamma = 1 (no correction)")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(SIGMA_LABEL, fontsize=8)
    log = log_if_wide(ax, [t.get("gamma") for r in results["solvers"].values() for t in r["trace"]])
    ax.set_ylabel("gamma (Stein correction factor)" + log, fontsize=8)
    ax.set_title(title, fontsize=8)
    n = max(counts, default=1)
    ax.legend(fontsize=6, title_fontsize=6,
              title=f"lines: median over {n} batches, bands: min..max" if n > 1 else "one batch per step")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def describe(args: argparse.Namespace, num_samples: int) -> str:
    """What a compare run compares, for its figures' titles."""
    first, last = args.seeds.split(",")[0], args.seeds.split(",")[-1]
    seeds = args.seeds if len(args.seeds) <= 20 else f"{first}..{last}"
    corrector = args.corrector if args.corrector == "none" else \
        f"{args.corrector} (target {args.target}, {args.statistics} statistics)"
    return (f"{args.preset}: solvers at NFE budget {args.nfe} each, {args.schedule} grid, final step "
            f"{args.final_step}\ncorrector {corrector}; seeds {seeds} (n={num_samples}), {args.dtype}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
        results, samples, fresh = run(args)
    except ValueError as err:
        print(f"steindiff-compare: error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "samples.npz", "wb") as f:
        np.savez(f, **samples)
    title = describe(args, len(samples["seeds"]))
    if fresh.shape[1] == 2:
        scatter(out / "scatter.png", samples, fresh, title, {n: r["nfe"] for n, r in results["solvers"].items()})
    if args.corrector != "none":
        gamma_plot(out / "gamma.png", results, title)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    print(f"corrector: {args.corrector}")
    print(f"{'solver':10s} {'steps':>5s} {'NFE':>4s} {'energy dist':>12s} {'NLL':>8s} {'traj err':>9s}")
    for name, r in results["solvers"].items():
        print(f"{name:10s} {r['num_steps']:5d} {r['nfe']:4d} {r['energy_distance']:12.4f} "
              f"{r['nll']:8.3f} {r['trajectory_error']:9.4f}")
    print(f"(512-NFE Heun reference: energy distance {results['reference_energy_distance']:.4f})")
    print(f"wrote {out}/results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
