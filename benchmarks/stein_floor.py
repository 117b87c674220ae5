"""Cost of the Stein corrector against its physical floor: time and peak memory, by model and batch size.

    python benchmarks/stein_floor.py [--quick]

DPM-Solver++(2M), 10 steps on the EDM grid, float32, one torch thread, CPU. For each model (the aniso32
mixture, the aniso32 MLP and the digits U-Net trained here) and batch size:

- none: the uncorrected run (= 1);
- floor: one forward pass with autograd on x plus M = 5 vector-Jacobian products of the data prediction
  per step, releasing the graph on the last (``FloorProbe`` below: no statistics, no correction);
- stein loop: ``SteinCorrector(divergence="hutchinson", num_probes=5)``, the default (a backward pass per
  probe, the graph released on the last);
- stein batched: the same with ``batched_vjp=True`` (one ``is_grads_batched`` backward call, torch's vmap).

Time: runs interleaved in one process, 1 warm-up round then ``--repeats`` rounds, medians; ratios to
"none" and to "floor". Peak memory: each configuration once in a fresh process, the peak resident set
while sampling (read every 0.2 ms) minus the resident set before. Writes benchmarks/results/stein_floor.{md,json}.
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
METHODS = ("none", "floor", "stein loop", "stein batched")


class FloorProbe(Corrector):
    """One forward with autograd plus M VJPs of the data prediction per step; returns the uncorrected step."""

    requires_grad = True

    def correct(self, x, output, context):
        g = torch.Generator().manual_seed(context.index)
        for i in range(PROBES):
            v = torch.randn(x.shape, generator=g, dtype=x.dtype)
            torch.autograd.grad(output.data_prediction, x, grad_outputs=v, retain_graph=i < PROBES - 1)
        return output.x_next.detach(), {}


def model(name: str):
    if name == "mixture":
        return mixture_preset("aniso32", temperature=0.5)
    return load_denoiser({"mlp": "aniso32_mlp.safetensors", "unet": "digits_unet.safetensors"}[name])


def corrector(method: str):
    return {"none": None, "floor": FloorProbe(),
            "stein loop": SteinCorrector(divergence="hutchinson", num_probes=PROBES),
            "stein batched": SteinCorrector(divergence="hutchinson", num_probes=PROBES, batched_vjp=True)}[method]


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
    times = {(n, b, m): [] for n, b in cases for m in METHODS}
    models = {n: model(n) for n, _ in cases}
    for round_ in range(repeats + 1):
        for n, b in cases:
            for m in METHODS:  # interleaved: the machine's load hits every method alike
                t = run_once(models[n], b, m)
                if round_:
                    times[(n, b, m)].append(t)
        print(f"round {round_} done", flush=True)
    rows = []
    for n, b in cases:
        base, floor = statistics.median(times[(n, b, "none")]), statistics.median(times[(n, b, "floor")])
        for m in METHODS:
            t = statistics.median(times[(n, b, m)])
            rows.append({"model": n, "batch": b, "method": m, "median_s": t, "vs_none": t / base, "vs_floor": t / floor,
                         "peak_mb": peak_memory_mb(n, b, m)})
    return rows


def table(rows: list[dict], command: str) -> str:
    lines = [f"Command: `{command}` (DPM-Solver++(2M), 10 steps, M = {PROBES} probes, float32, 1 thread, CPU; "
             "medians of interleaved runs; peak resident memory while sampling above that before, fresh process "
             "each)", "",
             "| model | batch | method | median s | x none | x floor | peak MB | x floor's peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        floor = next(f for f in rows if (f["model"], f["batch"], f["method"]) == (r["model"], r["batch"], "floor"))
        ratio = r["peak_mb"] / floor["peak_mb"] if floor["peak_mb"] > 0 else float("nan")
        lines.append(f"| {r['model']} | {r['batch']} | {r['method']} | {r['median_s']:.3f} | {r['vs_none']:.2f} | "
                     f"{r['vs_floor']:.2f} | {r['peak_mb']:.0f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one batch size per model, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = [("mixture", 2000), ("mlp", 1000), ("unet", 256)]
    if not args.quick:
        cases += [("mixture", 8000), ("mlp", 4000), ("unet", 64), ("unet", 1024)]
    rows = measure(cases, 2 if args.quick else args.repeats)
    command = "python benchmarks/stein_floor.py" + (" --quick" if args.quick else "")
    md = table(rows, command)
    print(md)
    out = ROOT / "benchmarks" / "results"
    (out / "stein_floor.md").write_text(md)
    (out / "stein_floor.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
