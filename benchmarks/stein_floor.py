"""Cost of the Stein corrector's estimators against their physical floors: time and peak memory, by model and batch.

    python benchmarks/stein_floor.py [--quick] [--repeats N]

DPM-Solver++(2M), 10 steps on the EDM grid, float32, one torch thread, CPU, statistics "batch", target "data".
For each model (the aniso32 mixture, the aniso32 MLP and the digits U-Net trained here) and batch size, each
``SteinCorrector`` divergence estimator (M = 5 probes) and, beside it, its floor: the denoiser calls and
vector-Jacobian products (VJPs) the estimator cannot avoid, measured directly (``Floor`` below: no per-seed
probes, no statistics, no correction; the uncorrected step is returned):

- hutchinson, rademacher: floor = the step evaluated with autograd on x + M VJPs of the data prediction
  (graph released on the last);
- exact: floor = the step with autograd + d VJPs (d = dimension; one per basis vector);
- subset (k = 32 rows): floor = the step on all rows without a graph + the step on k rows with autograd + M VJPs
  on those rows;
- finite_difference: floor = M + 1 step evaluations without a graph.

Time: runs interleaved in one process, 1 warm-up round then ``--repeats`` rounds, medians; ratios to "none" and
to the estimator's floor. Peak memory: each configuration once in a fresh process, the peak resident set while
sampling (read every 0.2 ms) minus the resident set before. Writes benchmarks/results/stein_floor.{md,json}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from steindiff.core import Corrector, SteinCorrector, make_solver, mixture_preset, sample
from steindiff.core.schedules import Schedule
from steindiff.models.checkpoint import load_denoiser

ROOT = Path(__file__).resolve().parents[1]
PROBES = 5
SUBSET = 32
# (model, batch, whether "exact" and its floor run): d VJPs per step, so only at the small batches (U-Net: 16)
CASES = [("mixture", 500, True), ("mixture", 2000, True), ("mixture", 8000, False),
         ("mlp", 250, True), ("mlp", 1000, True),
         ("unet", 16, True), ("unet", 64, False), ("unet", 256, False)]
QUICK = [("mixture", 2000, True), ("mlp", 250, True), ("unet", 16, True)]
# estimator -> (its floor's name); "none" has no floor
ESTIMATORS = {"hutchinson": "floor: fwd+graph, M VJP", "rademacher": "floor: fwd+graph, M VJP",
              "exact": "floor: fwd+graph, d VJP", "subset": "floor: fwd, k-row fwd+graph, M VJP",
              "finite_difference": "floor: M+1 fwd"}


class Floor(Corrector):
    """The denoiser calls and VJPs an estimator cannot avoid, and nothing else; returns the uncorrected step.

    ``vjps``: VJPs of the data prediction ("basis" vectors for the exact estimator's d, else Gaussian);
    ``subset``: those VJPs through the step re-evaluated on the first ``subset`` rows with autograd;
    ``forwards``: step evaluations without a graph at x + 1e-3 sigma v (no VJPs).
    """

    def __init__(self, vjps: int | str = 0, subset: int | None = None, forwards: int = 0):
        self.vjps, self.subset, self.forwards = vjps, subset, forwards
        self.requires_grad = bool(vjps) and subset is None

    def correct(self, x, output, context):
        g = torch.Generator().manual_seed(context.index)
        if self.forwards:
            with torch.no_grad():
                for _ in range(self.forwards):
                    context.step_fn(x.detach() + 1e-3 * context.sigma * torch.randn(x.shape, generator=g))
        elif self.subset is not None:
            rows = torch.arange(min(self.subset, len(x)))
            with torch.enable_grad():
                x_rows = x.detach()[rows].requires_grad_(True)
                self._vjps(context.step_fn(x_rows, rows).data_prediction, x_rows, g)
        else:
            self._vjps(output.data_prediction, x, g)
        return output.x_next.detach(), {}

    def _vjps(self, y, x, g):
        n = x[0].numel() if self.vjps == "basis" else self.vjps
        for i in range(n):
            if self.vjps == "basis":  # e_i in every row (the values do not change a VJP's cost)
                v = torch.zeros(len(x), n, dtype=x.dtype)
                v[:, i] = 1
                v = v.reshape(x.shape)
            else:
                v = torch.randn(x.shape, generator=g, dtype=x.dtype)
            torch.autograd.grad(y, x, grad_outputs=v, retain_graph=i < n - 1)


def model(name: str):
    if name == "mixture":
        return mixture_preset("aniso32", temperature=0.5)
    return load_denoiser({"mlp": "aniso32_mlp.safetensors", "unet": "digits_unet.safetensors"}[name])


def corrector(method: str):
    floors = {"floor: fwd+graph, M VJP": lambda: Floor(vjps=PROBES),
              "floor: fwd+graph, d VJP": lambda: Floor(vjps="basis"),
              "floor: fwd, k-row fwd+graph, M VJP": lambda: Floor(vjps=PROBES, subset=SUBSET),
              "floor: M+1 fwd": lambda: Floor(forwards=PROBES)}
    if method == "none":
        return None
    if method in floors:
        return floors[method]()
    if method == "subset":
        return SteinCorrector(divergence="hutchinson", num_probes=PROBES, subset=SUBSET)
    return SteinCorrector(divergence=method, num_probes=PROBES)


def methods(batch: int, exact: bool) -> list[str]:
    """The estimators of a case and their floors ("subset" only where k < batch)."""
    chosen = [m for m in ESTIMATORS if (m != "exact" or exact) and (m != "subset" or SUBSET < batch)]
    floors = list(dict.fromkeys(ESTIMATORS[m] for m in chosen))
    return ["none"] + chosen + floors


def run_once(denoiser, batch: int, method: str) -> float:
    start = time.perf_counter()
    sample(denoiser, Schedule("edm").grid(10), make_solver("dpmpp_2m"), corrector(method), seeds=range(batch),
           shape=denoiser.spec.shape)
    return time.perf_counter() - start


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_in_this_process(name: str, batch: int, method: str) -> float:
    """Peak resident memory while sampling, above the resident memory just before (MB): a thread reads
    /proc/self/statm every 0.2 ms (ru_maxrss cannot see below an earlier peak, such as the imports')."""
    torch.set_num_threads(1)
    denoiser, fix = model(name), corrector(method)
    grid, solver = Schedule("edm").grid(10), make_solver("dpmpp_2m")
    gc.collect()
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.0002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sample(denoiser, grid, solver, fix, seeds=range(batch), shape=denoiser.spec.shape)
    done.set()
    watcher.join()
    return max(peak[0], _rss_mb()) - base


def peak_memory_mb(name: str, batch: int, method: str) -> float:
    """``peak_in_this_process`` in a fresh process (no allocator state left by the other runs)."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import stein_floor as b; "
            f"print(b.peak_in_this_process({name!r}, {batch}, {method!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(cases, repeats: int) -> list[dict]:
    times = {(n, b, m): [] for n, b, e in cases for m in methods(b, e)}
    models = {n: model(n) for n, _, _ in cases}
    for round_ in range(repeats + 1):
        start = time.perf_counter()
        for n, b, e in cases:
            for m in methods(b, e):  # interleaved: the machine's load hits every method alike
                t = run_once(models[n], b, m)
                if round_:
                    times[(n, b, m)].append(t)
        print(f"round {round_} done ({time.perf_counter() - start:.0f} s)", flush=True)
    rows = []
    for n, b, e in cases:
        median = {m: statistics.median(times[(n, b, m)]) for m in methods(b, e)}
        for m in methods(b, e):
            floor = ESTIMATORS.get(m, m if m.startswith("floor") else None)
            rows.append({"model": n, "batch": b, "method": m, "floor": floor, "median_s": median[m],
                         "times_s": times[(n, b, m)], "vs_none": median[m] / median["none"],
                         "vs_floor": median[m] / median[floor] if floor else None,
                         "peak_mb": peak_memory_mb(n, b, m)})
        print(f"memory {n} {b} done", flush=True)
    return rows


def table(rows: list[dict], command: str, repeats: int, minutes: float) -> str:
    lines = [f"Command: `{command}` (DPM-Solver++(2M), 10 steps, M = {PROBES} probes, subset k = {SUBSET} rows, "
             f"float32, 1 thread, CPU; medians of {repeats} interleaved rounds after 1 warm-up; peak resident memory "
             "while sampling above that before, fresh process each). Each floor row is the estimator's own floor "
             "(see the script's docstring); 'x floor' compares an estimator with its floor.", "",
             f"This run took {minutes:.0f} min. Trimmed to stay near 20 min of CPU: the exact estimator (d VJPs per "
             "step: 32 for the mixture and the MLP, 64 for the U-Net) runs only at the small batches (the U-Net's at "
             "batch 16 only); no U-Net batch 1024 (its floor alone took 56 s per run) and no MLP batch 4000 (at 1.0x "
             "its floors in a first run, 24 min in all); 3 rounds; subset only where k < batch. The per-seed probes "
             "(``seeded_probes``) are part of every estimator's cost and of no floor's.", "",
             "| model | batch | method | median s | x none | x floor | peak MB | x floor's peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        floor = next((f for f in rows if (f["model"], f["batch"], f["method"]) == (r["model"], r["batch"],
                                                                                   r["floor"])), None)
        x_floor = f"{r['vs_floor']:.2f}" if floor else "-"
        peak = f"{r['peak_mb'] / floor['peak_mb']:.2f}" if floor and floor["peak_mb"] > 0 else "-"
        lines.append(f"| {r['model']} | {r['batch']} | {r['method']} | {r['median_s']:.3f} | {r['vs_none']:.2f} | "
                     f"{x_floor} | {r['peak_mb']:.0f} | {peak} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one batch size per model, 1 repeat, nothing written")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = 1 if args.quick else args.repeats
    start = time.perf_counter()
    rows = measure(QUICK if args.quick else CASES, repeats)
    command = "python benchmarks/stein_floor.py" + (" --quick" if args.quick else "") + (
        f" --repeats {args.repeats}" if args.repeats != 3 and not args.quick else "")
    md = table(rows, command, repeats, (time.perf_counter() - start) / 60)
    print(md)
    if not args.quick:  # --quick is a smoke test: it prints and writes nothing
        out = ROOT / "benchmarks" / "results"
        (out / "stein_floor.md").write_text(md)
        (out / "stein_floor.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
