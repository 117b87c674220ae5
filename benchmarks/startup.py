"""Start-up and wall time of the app (steindiff-sample: Hydra + Lightning) against the core alone.

    python benchmarks/startup.py            # about 12 minutes on 2 CPU cores
    python benchmarks/startup.py --quick    # the default job only, one repeat (a smoke test)

For each job, fresh processes, interleaved, one torch thread each (the app's default num_threads=1):

- core: ``python benchmarks/startup.py --core <overrides>``: imports torch and steindiff, builds the same
  run with ``build_run(cfg, metrics=False)``, samples the first batch (time to first batch), then builds the
  metrics, samples the other batches, updates and computes the metrics. No Lightning, no files written.
- app: ``steindiff-sample <overrides>`` in a fresh folder; its results.json records the time from process
  start to the first batch's samples (``timing.first_batch_s``), and the wall time is measured outside.
- app, no prefetch: the same with ``debug.prefetch=false`` (the first batch sampled in Lightning's loop).
- DDP: ``trainer=ddp trainer.devices=2`` against devices=1 (the app only; the core has no DDP).

Times from process start (/proc, ``steindiff.clock``); medians over the repeats. Writes
benchmarks/results/startup.{md,json} and, with --importtime, the ten slowest imports of the app.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
JOBS = {"default (mixture, 1000 samples)": [], "main job (experiment=digits)": ["experiment=digits"]}
COMMON = ["logger=csv", "plots=true"]


def core_job(overrides: list[str]) -> dict:
    """The core path of one job in this process (``--core``); prints its timings as JSON."""
    import torch

    from steindiff.build import build_metrics, build_run, compose_sample_config
    from steindiff.clock import since_process_start
    from steindiff.core.sampling import seed_batches

    cfg = compose_sample_config(overrides)
    torch.set_num_threads(cfg.num_threads or torch.get_num_threads())
    run = build_run(cfg, metrics=False)
    batches = seed_batches(run.seeds, run.batch_size)
    results, first = [], None
    for seeds in batches:
        results.append((seeds, run.sample(seeds)))
        first = first or since_process_start()
    metrics = build_metrics(cfg, run.denoiser)
    if metrics is not None:
        for seeds, res in results:
            samples = res.samples if run.decoder is None else run.decoder(res.samples)
            metrics.update(samples, seeds=torch.tensor(seeds))
        values = {k: float(v) for k, v in metrics.compute().items()}
    else:
        values = {}
    return {"first_batch_s": first, "wall_s": since_process_start(), "metrics": values}


def _timed(command: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(command)}\n{out.stderr[-2000:]}")
    return wall, out.stdout


def run_core(overrides: list[str], env: dict) -> dict:
    wall, out = _timed([sys.executable, __file__, "--core", *overrides], env)
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall}


def run_app(overrides: list[str], env: dict, scratch: Path) -> dict:
    folder = Path(tempfile.mkdtemp(dir=scratch))
    wall, _ = _timed(["steindiff-sample", *overrides, f"hydra.run.dir={folder}"], env)
    results = json.loads((folder / "results.json").read_text())
    return {"first_batch_s": results.get("timing", {}).get("first_batch_s"), "wall_s": wall,
            "metrics": results["metrics"]}


def _variants(overrides: list[str]) -> dict:
    return {"core": ("core", overrides), "app": ("app", COMMON + overrides),
            "app, no prefetch": ("app", COMMON + overrides + ["debug.prefetch=false"])}


def measure(repeats: int, jobs: dict, scratch: Path, env: dict) -> dict:
    """{job: {variant: [timings per repeat]}}, variants interleaved within each repeat."""
    found = {job: {name: [] for name in _variants(o)} for job, o in jobs.items()}
    for r in range(repeats):
        for job, overrides in jobs.items():
            for name, (kind, args) in _variants(overrides).items():
                t = run_core(args, env) if kind == "core" else run_app(args, env, scratch)
                found[job][name].append(t)
                print(f"  repeat {r}  {job:32s} {name:18s} first batch {t['first_batch_s']:.2f} s  "
                      f"wall {t['wall_s']:.2f} s", flush=True)
    return found


def measure_ddp(repeats: int, scratch: Path, env: dict) -> dict:
    found = {"devices=1": [], "devices=2 (ddp)": []}
    for _ in range(repeats):
        found["devices=1"].append(run_app(COMMON, env, scratch))
        found["devices=2 (ddp)"].append(run_app(COMMON + ["trainer=ddp", "trainer.devices=2"], env, scratch))
    return found


def table(found: dict, ddp: dict) -> list[str]:
    rows = ["| job | variant | first batch s | x core | wall s | x core | n |", "|---|---|---|---|---|---|---|"]
    for job, variants in found.items():
        core_first = statistics.median(t["first_batch_s"] for t in variants["core"])
        core_wall = statistics.median(t["wall_s"] for t in variants["core"])
        for name, ts in variants.items():
            first, wall = statistics.median(t["first_batch_s"] for t in ts), statistics.median(t["wall_s"] for t in ts)
            rows.append(f"| {job} | {name} | {first:.2f} (+{first - core_first:.2f}) | {first / core_first:.2f} | "
                        f"{wall:.2f} | {wall / core_wall:.2f} | {len(ts)} |")
    if ddp:
        one = statistics.median(t["wall_s"] for t in ddp["devices=1"])
        rows += ["", "| DDP (default job, app) | wall s | x devices=1 | first batch s (rank 0) |", "|---|---|---|---|"]
        for name, ts in ddp.items():
            wall = statistics.median(t["wall_s"] for t in ts)
            first = statistics.median(t["first_batch_s"] for t in ts)
            rows.append(f"| {name} | {wall:.2f} | {wall / one:.2f} | {first:.2f} |")
    return rows


def slowest_imports(env: dict, count: int = 10) -> list[str]:
    """The app's slowest top-level imports (cumulative, python -X importtime)."""
    code = ("import steindiff.cli.sample, steindiff.build, steindiff.prefetch, torchmetrics, "
            "pytorch_lightning, steindiff.lightning")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True)
    rows = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    top = [r for r in rows if not r[1].startswith("  ")]  # top-level imports only (no indentation)
    return [f"| {name.strip()} | {us / 1e6:.2f} |" for us, name in sorted(top, reverse=True)[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the default job only, one repeat, no DDP")
    args = parser.parse_args()
    if args.core is not None:
        print(json.dumps(core_job(args.core)))
        return
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    jobs = dict(list(JOBS.items())[:1]) if args.quick else JOBS
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as scratch:
        found = measure(repeats, jobs, Path(scratch), env)
        ddp = {} if args.quick else measure_ddp(repeats, Path(scratch), env)
    flags = " --quick" if args.quick else (f" --repeats {args.repeats}" if args.repeats != 3 else "")
    lines = [f"Command: `python benchmarks/startup.py{flags}` (fresh processes, "
             f"interleaved, num_threads=1, CPU: {os.cpu_count()} cores, shared machine: ratios matter; medians of "
             f"{repeats}; times from process start)", "", *table(found, ddp), "",
             "Slowest top-level imports of the app (`python -X importtime`, cumulative s, one run):", "",
             "| module | s |", "|---|---|", *slowest_imports(env)]
    print("\n".join(lines))
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "startup.md").write_text("\n".join(lines) + "\n")
        (RESULTS / "startup.json").write_text(json.dumps({"runs": found, "ddp": ddp}, indent=1))


if __name__ == "__main__":
    main()
