"""Rerun every committed docs run and sweep job with its recorded overrides and compare the metrics.

    python benchmarks/reproduce_docs.py [--only aniso32_overshoot] [--skip-sweeps]

For each folder under docs/runs/ and each job under docs/sweeps/<name>/<n>/, the command line recorded in
``.hydra/overrides.yaml`` is run again with ``steindiff-sample`` into a temporary folder (never into
docs/), and the metrics and measured NFE of the new results.json are compared with the committed ones:
"equal" means the same floats bit for bit. Prints a table and writes it to
benchmarks/results/reproduce_docs.md (with this command at the top).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "reproduce_docs.md"


def recorded_runs(only: str | None, sweeps: bool) -> list[Path]:
    runs = sorted(p for p in (ROOT / "docs" / "runs").iterdir() if (p / ".hydra" / "overrides.yaml").is_file())
    if sweeps:
        jobs = (p for p in (ROOT / "docs" / "sweeps").glob("*/*") if (p / ".hydra" / "overrides.yaml").is_file())
        runs += sorted(jobs, key=lambda p: (p.parent.name, int(p.name) if p.name.isdigit() else p.name))
    return [r for r in runs if only is None or only in str(r.relative_to(ROOT))]


def rerun(folder: Path, scratch: Path) -> dict:
    overrides = [o for o in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
                 if not o.startswith("hydra.")]
    if not any(o.startswith("num_threads=") for o in overrides):
        overrides.append("num_threads=null")  # the runs made before the setting existed had torch's default
    out = scratch / folder.relative_to(ROOT / "docs")
    # torch's default thread count, as the committed runs had: reductions over threads round differently,
    # so one thread moves some metrics in the 16th digit
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(scratch / "wandb"), "WANDB_SILENT": "true"}
    env.pop("OMP_NUM_THREADS", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "steindiff.cli.sample", *overrides, f"hydra.run.dir={out}"],
                          cwd=scratch, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    old = json.loads((folder / "results.json").read_text())
    if proc.returncode != 0:
        return {"run": str(folder.relative_to(ROOT)), "overrides": " ".join(overrides), "equal": False,
                "detail": proc.stderr.strip().splitlines()[-1][:200], "seconds": seconds}
    new = json.loads((out / "results.json").read_text())
    differing = sorted(k for k in set(old["metrics"]) | set(new["metrics"])
                       if old["metrics"].get(k) != new["metrics"].get(k))
    equal = not differing and old["nfe"] == new["nfe"]
    detail = "metrics and NFE equal" if equal else \
        "; ".join(f"{k}: {old['metrics'].get(k)} -> {new['metrics'].get(k)}" for k in differing) + \
        (f"; nfe {old['nfe']} -> {new['nfe']}" if old["nfe"] != new["nfe"] else "")
    return {"run": str(folder.relative_to(ROOT)), "overrides": " ".join(overrides), "equal": equal,
            "detail": detail, "seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="only runs whose path contains this text")
    parser.add_argument("--skip-sweeps", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for folder in recorded_runs(args.only, not args.skip_sweeps):
            rows.append(rerun(folder, Path(scratch)))
            print(f"{'equal' if rows[-1]['equal'] else 'DIFFERS':8s} {rows[-1]['run']:45s} {rows[-1]['seconds']:6.1f} s"
                  f"  {rows[-1]['detail']}", flush=True)
    command = "python benchmarks/reproduce_docs.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    lines = [f"Command: `{command}`", "", f"{sum(r['equal'] for r in rows)} of {len(rows)} committed runs reproduce "
             "exactly (metrics as the same floats, same measured NFE).", "",
             "| run | overrides | reproduces | detail |", "|---|---|---|---|"]
    lines += [f"| {r['run']} | `{r['overrides']}` | {'yes' if r['equal'] else 'NO'} | {r['detail']} |" for r in rows]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{sum(r['equal'] for r in rows)} of {len(rows)} reproduce exactly; wrote {OUT.relative_to(ROOT)}")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
