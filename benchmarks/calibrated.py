"""Issue 16: a calibrated coefficient schedule against the uncorrected solver.

    python benchmarks/calibrated.py run [--testbeds digits,ring2d_mlp,aniso32_mlp] [--solvers euler,heun,dpmpp_2m]
                                        [--nfe 4,6,8,10] [--seed-sets 1,2,3] [--calibration-seeds 0-255]
    python benchmarks/calibrated.py report        # benchmarks/results/calibrated.md from the records

Per cell (test-bed x solver x NFE, EDM schedule): ``steindiff.calibrate.calibrate`` on the calibration seeds (seed
set 0, disjoint from the evaluation sets 1, 2, 3 = seeds num_samples .. 4 num_samples - 1), timed; then the app's
own config path (``compose_sample_config`` + ``build_run``, as benchmarks/study.py's ``evaluate``) for
``corrector=none`` and ``corrector=calibrated corrector.path=FILE`` on each evaluation seed set, scored with the
test-bed's metric (digits: digits-FID, 1000 samples per set; mixtures: energy distance, 2000). Also scored: the
same file with the oracle's last-step gamma applied ("calibrated_last", the correct_last choice). The digits
files are written to src/steindiff/assets/calibration/ (commit-ready), the others to <temp>/steindiff_calibration/
(their gammas are in the records). The last-step variant is scored on the first evaluation set only.
One torch thread; with STEINDIFF_CPU_LOCK=<file> each NFE (all solvers) holds that lock file while it runs. Records:
benchmarks/results/calibrated.jsonl (one line per unit; a rerun skips what is on record).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.calibrate import calibrate
from steindiff.core.correctors.calibrated import CALIBRATION_DIR, read_schedule, write_schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import read_records as read_jsonl  # noqa: E402  (JSON lines; a line cut by an interrupted write skipped)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECORDS = RESULTS / "calibrated.jsonl"
REPORT = RESULTS / "calibrated.md"
OTHER_FILES = Path(tempfile.gettempdir()) / "steindiff_calibration"  # mixture files, last-step variants: not committed
LOCK = os.environ.get("STEINDIFF_CPU_LOCK")  # a lock file shared with other CPU work on a shared machine (optional)

#: test-bed -> (overrides, samples per seed set, headline metric, denoiser name in file names)
TESTBEDS = {
    "digits": (["experiment=digits"], 1000, "digits_fid", "digits_unet"),
    "ring2d_mlp": (["experiment=ring2d_mlp"], 2000, "energy_distance", "ring2d_mlp"),
    "aniso32_mlp": (["experiment=aniso32_mlp"], 2000, "energy_distance", "aniso32_mlp"),
}
COMMAND = "python benchmarks/calibrated.py " + " ".join(sys.argv[1:])


@contextlib.contextmanager
def cpu_lock():
    if not LOCK:
        yield
        return
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_records() -> list[dict]:
    return read_jsonl(RECORDS)


def schedule_file(testbed: str, solver: str, nfe: int) -> Path:
    name = f"{TESTBEDS[testbed][3]}-{solver}-edm-nfe{nfe}.json"
    return (CALIBRATION_DIR if testbed == "digits" else OTHER_FILES) / name


def last_file(path: Path) -> Path:
    return OTHER_FILES / (path.stem + "-last.json")


def cell_overrides(testbed: str, solver: str, nfe: int) -> list[str]:
    return [*TESTBEDS[testbed][0], f"solver={solver}", "schedule=edm", f"nfe={nfe}"]


def run_calibration(testbed: str, solver: str, nfe: int, seeds: str) -> dict:
    path = schedule_file(testbed, solver, nfe)
    overrides = cell_overrides(testbed, solver, nfe)
    command = f"steindiff-calibrate {' '.join(overrides)} --seeds {seeds} --out {path.name}"
    if path.is_file() and read_schedule(path).get("seeds") == seeds:  # made by an interrupted earlier run
        record = read_schedule(path)
    else:
        record = calibrate(overrides, seeds=seeds, command=command)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_schedule(path, record)
    OTHER_FILES.mkdir(parents=True, exist_ok=True)
    last = last_file(path)  # the correct_last variant: the oracle's last gamma applied
    write_schedule(last, {**record, "gamma": [*record["gamma"][:-1], record["last_step_oracle_gamma"]],
                          "oracle": {**record["oracle"], "correct_last": True},
                          "command": command + " --correct-last (derived: same run, last gamma applied)"})
    return {"kind": "calibration", "testbed": testbed, "solver": solver, "nfe_budget": nfe, "file": str(path),
            "seconds": record["seconds"], "gamma": record["gamma"], "gamma_se": record["gamma_se"],
            "last_step_oracle_gamma": record["last_step_oracle_gamma"], "sigmas": record["sigmas"],
            "nfe": record["nfe"], "num_seeds": record["num_seeds"]}


def evaluate(testbed: str, solver: str, nfe: int, setting: str, seed_set: int) -> dict:
    overrides_tb, num_samples, metric, _ = TESTBEDS[testbed]
    path = schedule_file(testbed, solver, nfe)
    extra = {"none": ["corrector=none"], "calibrated": ["corrector=calibrated", f"corrector.path={path}"],
             "calibrated_last": ["corrector=calibrated",
                                 f"corrector.path={last_file(path)}"]}[setting]
    overrides = [*cell_overrides(testbed, solver, nfe), *extra, f"seed_set={seed_set}", f"num_samples={num_samples}"]
    run = build_run(compose_sample_config(overrides))
    start = time.perf_counter()
    result = run.sample()
    seconds = time.perf_counter() - start
    run.metrics.update(result.samples)
    metrics = {k: float(v) for k, v in run.metrics.compute().items()}
    return {"kind": "eval", "testbed": testbed, "solver": solver, "nfe_budget": nfe, "setting": setting,
            "seed_set": seed_set, "num_samples": num_samples, "nfe": result.nfe, "seconds": seconds,
            "metrics": metrics, "headline": metrics.get(metric), "overrides": overrides}


def run_all(args) -> int:
    torch.set_num_threads(1)
    records = read_records()
    done = {(r["kind"], r["testbed"], r["solver"], r["nfe_budget"], r.get("setting"), r.get("seed_set"))
            for r in records}
    settings = args.settings.split(",")
    with RECORDS.open("a") as out:
        for testbed in args.testbeds.split(","):
            for nfe in [int(n) for n in args.nfe.split(",")]:  # every solver at the first NFE first
                cells = []
                for solver in args.solvers.split(","):
                    units = [("calibration", None, None)]
                    sets = [int(k) for k in args.seed_sets.split(",")]
                    units += [("eval", s, k) for k in sets for s in settings
                              if s != "calibrated_last" or k == sets[0]]  # the last-step variant: one set
                    units = [u for u in units if (u[0], testbed, solver, nfe, u[1], u[2]) not in done]
                    cells += [(solver, *u) for u in units]
                if not cells:
                    continue
                with cpu_lock():  # one NFE (all solvers) at a time: minutes, fewer waits for the shared lock
                    for solver, kind, setting, seed_set in cells:
                        if kind == "calibration":
                            record = run_calibration(testbed, solver, nfe, args.calibration_seeds)
                        else:
                            record = evaluate(testbed, solver, nfe, setting, seed_set)
                        record["command"] = COMMAND
                        out.write(json.dumps(record) + "\n")
                        out.flush()
                        shown = record.get("headline", record.get("seconds"))
                        print(f"{testbed} {solver} nfe {nfe} {kind} {setting or ''} {seed_set or ''}: {shown}",
                              flush=True)
    return 0


NOTES = """
## Reading (written by hand from the tables above, 2026-12-03)

- Digits U-Net: the calibrated schedule helps Euler at every NFE, on every seed set (paired differences
  -42.9, -7.3, -1.4, -0.5 digits-FID at NFE 4, 6, 8, 10), beyond the between-set spread only at NFE 4
  (282.5 -> 239.6). It hurts DPM-Solver++(2M) at NFE 6, 8, 10 (+4.8, +2.9, +1.5, beyond the spread) and Heun at
  NFE 3, 5, 7 (+12, +30, +25, beyond the spread); 2M NFE 4 is slightly better on every set (-1.9 +- 1.6, within
  the spread), Heun NFE 9 mixed (-0.5 +- 0.9).
  The best few-step digits sampler stays uncorrected DPM-Solver++(2M).
- Where the gamma departs from 1: only in the last two or three steps below sigma ~ 1 (the early steps are 1
  within 1e-3, standard error 1e-6). 2M's second-to-last step gets 0.37, -0.08, -0.66 (NFE 6, 8, 10: the
  data prediction pulled back to the state); Heun's last corrected step 1.34, 2.19, 3.27. These are the gammas
  that bring the batch closest, in mean squared distance, to the reference ODE solution one step at a time;
  closer in L2 one step ahead is not closer in distribution on the digits U-Net for the second-order solvers
  (a reading, not a measured cause).
- The learned mixture MLPs (energy distance) are the other way round: the schedule helps beyond the spread in
  19 of 24 cells (ring2d MLP 2M NFE 6 0.167 -> 0.064, Heun NFE 5 3.56 -> 0.039; aniso32 MLP 2M NFE 6 0.420 ->
  0.091, Heun NFE 5 11.3 -> 0.95), helps on every set in 3 more (aniso32 Euler NFE 6, 8, 10), and hurts only Heun
  NFE 3 on both (one corrected step, gamma 1.9; 29.8 -> 36.7 and 158 -> 225).
- The last step (sigma_min -> 0): the trajectory oracle's gamma there is extreme (digits 1.1 to 1.7e4; MLPs
  -34 to 7e3). Applied (column "last step too", set 1 only), it changes digits-FID little for Euler and 2M,
  makes Heun NFE 5 worse (212 -> 258) and helps the MLPs further (ring2d 2M NFE 6: 0.066 -> 0.011). Default kept
  off, since the digits model (the images) is the one it does not help; steindiff-calibrate --correct-last
  applies it.
- Cost: the calibration is 64 uncounted denoiser evaluations per step on the 256 calibration samples (32 Heun
  substeps), 23 s (Heun NFE 3) to 145 s (2M NFE 10) on one thread for the digits U-Net, 2-3 s for the MLPs;
  sampling with the file costs nothing (no NFE, no statistics).
"""


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def _fmt(values: list[float], digits: int | None = None) -> str:
    if not values:
        return "-"
    mean, sd = _mean_sd(values)
    if digits is None:
        digits = 1 if abs(mean) >= 10 else 3 if abs(mean) >= 0.1 else 4
    return f"{mean:.{digits}f} +- {sd:.{digits}f}" if not math.isnan(sd) else f"{mean:.{digits}f}"


def report(args) -> int:
    records = read_records()
    lines = ["# A calibrated coefficient schedule (issue 16)", "",
             "Command: `python benchmarks/calibrated.py run --testbeds digits --solvers euler,heun,dpmpp_2m "
             "--nfe 4,6,8,10 --seed-sets 1,2,3` (then the mixtures with `--testbeds ring2d_mlp,aniso32_mlp`); "
             "`python benchmarks/calibrated.py report` writes this page from benchmarks/results/calibrated.jsonl.",
             "", "Calibration: `steindiff.calibrate.calibrate` (what `steindiff-calibrate` runs), trajectory oracle "
             "(32 Heun substeps per interval, float64 reference, batch statistics), 256 seeds 0-255 in one batch "
             "(seed set 0; the evaluation sets are 1, 2, 3), last step uncorrected. EDM schedule (rho 7, "
             "final_step zero). One torch thread, this machine's shared CPU. Cells: mean +- sd over seed sets "
             "1, 2, 3 (the same seeds for both settings, so the paired difference per set is also shown). Verdict: "
             "\"beyond the spread\": the means differ by more than the larger of the two sds over sets; \"on every "
             "set (paired)\": the difference has the same sign on every set and its mean exceeds its sd; else "
             "mixed.", ""]
    cals = {(r["testbed"], r["solver"], r["nfe_budget"]): r for r in records if r["kind"] == "calibration"}
    evals: dict[tuple, dict[int, float]] = {}
    for r in records:
        if r["kind"] == "eval" and r.get("headline") is not None:
            evals.setdefault((r["testbed"], r["solver"], r["nfe_budget"], r["setting"]), {})[r["seed_set"]] = \
                r["headline"]
    for testbed in TESTBEDS:
        cells = sorted({k[:3] for k in cals if k[0] == testbed}, key=lambda k: (k[1], k[2]))
        if not cells:
            continue
        metric = TESTBEDS[testbed][2]
        what = ("digits-FID vs the train split, 1000 samples" if metric == "digits_fid"
                else "energy distance to the exact mixture, 2000 samples")
        lines += [f"## {testbed} ({what} per seed set)", "",
                  ("| solver | NFE (measured) | none | calibrated | calibrated - none, paired | verdict | "
                   "last step too (set 1) | calibration s | gamma per step (last-step oracle) |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for cell in cells:
            none, cal = evals.get((*cell, "none"), {}), evals.get((*cell, "calibrated"), {})
            last = list(evals.get((*cell, "calibrated_last"), {}).values())
            both = sorted(set(none) & set(cal))
            diffs = [cal[k] - none[k] for k in both]
            verdict = "-"
            if len(both) > 1:
                (mn, sn), (mc, sc) = _mean_sd(list(none.values())), _mean_sd(list(cal.values()))
                md, sd = _mean_sd(diffs)
                beyond = mc < mn - max(sn, sc) if md < 0 else mc > mn + max(sn, sc)
                every = all(d < 0 for d in diffs) or all(d > 0 for d in diffs)
                word = "helps" if md < 0 else "hurts"
                verdict = (f"{word} beyond the spread" if beyond else
                           f"{word} on every set (paired)" if every and abs(md) > sd else "mixed")
            c = cals[cell]
            gam = ", ".join(f"{g:.3g}" for g in c["gamma"])
            d = 1 if metric == "digits_fid" else 4
            lines.append(f"| {cell[1]} | {cell[2]} ({c['nfe']}) | {_fmt(list(none.values()), d)} | "
                         f"{_fmt(list(cal.values()), d)} | {_fmt(diffs, d)} | {verdict} | {_fmt(last, d)} | "
                         f"{c['seconds']:.0f} | {gam} ({c['last_step_oracle_gamma']:.3g}) |")
        lines.append("")
    lines += NOTES.strip("\n").splitlines()
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--testbeds", default="digits")
    run.add_argument("--solvers", default="euler,heun,dpmpp_2m")
    run.add_argument("--nfe", default="4,6,8,10")
    run.add_argument("--seed-sets", default="1,2,3")
    run.add_argument("--settings", default="none,calibrated,calibrated_last")
    run.add_argument("--calibration-seeds", default="0-255")
    sub.add_parser("report")
    args = parser.parse_args()
    return run_all(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    raise SystemExit(main())
