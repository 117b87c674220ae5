"""The results study (issue 15): settings of the corrector against the base solver, over disjoint seed sets.

    python benchmarks/study.py run [--testbeds ring2d,aniso32] [--solvers dpmpp_2m] [--schedules edm]
                                   [--nfe 3,4,6] [--settings none,oracle] [--seed-sets 1,2,3]
    python benchmarks/study.py report            # docs/results.md and docs/results/*.png from the records

``run`` evaluates every cell (test-bed x solver x schedule x NFE x setting x seed set) in this process through
the app's own config path (``compose_sample_config`` + ``build_run``: a setting here means what it means on the
command line), one torch thread, and appends one JSON line per cell to docs/results/study.jsonl as soon as the
cell is done: an interrupted study loses at most the cell in progress, and a rerun skips the cells on record.
Seed sets 1, 2, 3 are the evaluation sets; seed set 0 is the tuning set of the tuned baselines (a constant
gamma, epsilon scaling): their value is chosen on seed set 0 per (test-bed, solver, schedule, NFE) and reported
on the evaluation sets only. Timed: ``run.sample()`` alone (the metrics are not part of the sampler's cost).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import torch
from hydra.errors import HydraException
from tqdm.auto import tqdm

from steindiff.build import build_run, compose_sample_config
from steindiff.errors import ConfigError
from steindiff.shards import trace_summary

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "results" / "study.jsonl"
EVAL_SETS = (1, 2, 3)
TUNE_SET = 0

#: test-bed -> (overrides, samples per seed set)
TESTBEDS = {
    "ring2d": (["denoiser=ring2d"], 2000),
    "ring2d_sharp": (["denoiser=ring2d", "denoiser.temperature=0.5"], 2000),
    "ring2d_overshoot": (["denoiser=ring2d", "denoiser.residual_scale=1.2"], 2000),
    "aniso32": (["denoiser=aniso32"], 2000),
    "aniso32_sharp": (["denoiser=aniso32", "denoiser.temperature=0.5"], 2000),
    "aniso32_overshoot": (["denoiser=aniso32", "denoiser.residual_scale=1.2"], 2000),
    "ring2d_mlp": (["experiment=ring2d_mlp"], 2000),
    "aniso32_mlp": (["experiment=aniso32_mlp"], 2000),
    "digits": (["experiment=digits"], 1000),
}
SOLVERS = ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm")
SCHEDULES = ("edm", "logsnr")
NFES = (3, 4, 5, 6, 8, 10, 15, 20)

#: setting -> overrides. The paper's: state reading, batch statistics, 5 Hutchinson probes, a lower clip (its
#: value is unpublished; 0 here, so gamma is never negative). Ours: the data reading with the clip [0.5, 1.5].
SETTINGS = {
    "none": ["corrector=none"],
    "stein_paper": ["corrector=stein", "corrector.target=state", "corrector.statistics=batch",
                    "corrector.divergence=hutchinson", "corrector.num_probes=5", "corrector.gamma_min=0"],
    "stein_ours": ["corrector=stein_clipped"],
    "oracle": ["corrector=oracle"],
    "oracle_trajectory": ["corrector=oracle_trajectory"],
}
#: tuned baselines: setting -> (override pattern, candidate values chosen on the tuning seed set)
TUNED = {
    "constant": (["corrector=constant", "corrector.gamma={}"], (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2)),
    "eps_scaling": (["corrector=none", "epsilon_scaling={}"], (0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1)),
}
HEADLINE = {"digits": "digits_fid"}  # the metric a table shows; energy distance for the mixtures


def headline(testbed: str) -> str:
    return HEADLINE.get(testbed, "energy_distance")


def cell_key(record: dict) -> tuple:
    return (record["testbed"], record["solver"], record["schedule"], record["nfe_budget"], record["setting"],
            record.get("value"), record["seed_set"])


def read_records(path: Path | None = None) -> list[dict]:
    """The study's records (default: ``RECORDS``; a truncated last line, from an interrupted write, is skipped)."""
    path = RECORDS if path is None else path
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _gamma_per_step(trace: list[dict]) -> list[float] | None:
    """The mean gamma of each step over the batches (None when the setting records none)."""
    gamma = [row["gamma"] for row in trace_summary(trace) if "gamma" in row]
    return gamma or None


def evaluate(testbed: str, solver: str, schedule: str, nfe: int, setting: str, seed_set: int,
             overrides: list[str], value: float | None = None) -> dict:
    """One cell: sample, time, score. Returns the record (``error`` set when the config refuses the cell)."""
    tb_overrides, num_samples = TESTBEDS[testbed]
    record = {"testbed": testbed, "solver": solver, "schedule": schedule, "nfe_budget": nfe, "setting": setting,
              "value": value, "seed_set": seed_set, "num_samples": num_samples}
    all_overrides = [*tb_overrides, f"solver={solver}", f"schedule={schedule}", f"nfe={nfe}", *overrides,
                     f"seed_set={seed_set}", f"num_samples={num_samples}"]
    record["overrides"] = all_overrides
    try:
        cfg = compose_sample_config(all_overrides)
    except HydraException as err:  # a setting this checkout does not have: not a result, nothing recorded
        return {**record, "missing": " ".join(str(err).split())[:200]}
    try:
        run = build_run(cfg)
    except (ConfigError, ValueError) as err:
        return {**record, "error": " ".join(str(err).split())[:300]}
    start = time.perf_counter()
    result = run.sample()
    seconds = time.perf_counter() - start
    samples = result.samples if run.decoder is None else run.decoder(result.samples)
    run.metrics.update(samples)
    metrics = {k: float(v) for k, v in run.metrics.compute().items()}
    return {**record, "nfe": result.nfe, "seconds": seconds, "batch_size": run.batch_size, "metrics": metrics,
            "gamma": _gamma_per_step(result.trace),
            "nonfinite": sum(1 for t in result.trace if t.get("nonfinite"))}


def _best_value(records: list[dict], base: tuple, setting: str) -> float | None:
    """The tuned baseline's value with the best headline metric on the tuning seed set (None: not tuned yet)."""
    testbed = base[0]
    scores = {r["value"]: r["metrics"].get(headline(testbed)) for r in records
              if (r["testbed"], r["solver"], r["schedule"], r["nfe_budget"]) == base and r["setting"] == setting
              and r["seed_set"] == TUNE_SET and "metrics" in r}
    scores = {v: s for v, s in scores.items() if s is not None and math.isfinite(s)}
    return min(scores, key=scores.get) if scores else None


def planned_cells(args, records: list[dict]) -> list[tuple]:
    """(testbed, solver, schedule, nfe, setting, seed_set, overrides, value) of every cell still to run, tuning
    cells first so that the evaluation cells of the tuned baselines can pick their value."""
    done = {cell_key(r) for r in records}
    tuning, evaluation = [], []
    for base in itertools.product(args.testbeds, args.solvers, args.schedules, args.nfe):
        for setting in args.settings:
            if setting in TUNED:
                pattern, values = TUNED[setting]
                tuning += [(*base, setting, TUNE_SET, [o.format(v) for o in pattern], v) for v in values]
                evaluation += [(*base, setting, k, None, None) for k in args.seed_sets]
            else:
                evaluation += [(*base, setting, k, SETTINGS[setting], None) for k in args.seed_sets]
    # tuned evaluation cells (overrides None) learn their value only when they run: checked there
    return [c for c in tuning + evaluation if c[6] is None or (*c[:5], c[7], c[5]) not in done]


def run_study(args) -> int:
    torch.set_num_threads(1)
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    records = read_records()
    cells = planned_cells(args, records)
    done, missing = {cell_key(r) for r in records}, set()
    with RECORDS.open("a") as out, tqdm(cells, desc="study", unit="cell") as bar:
        for testbed, solver, schedule, nfe, setting, seed_set, overrides, value in bar:
            if overrides is None:  # a tuned baseline's evaluation cell: its value from the tuning set
                value = _best_value(records, (testbed, solver, schedule, nfe), setting)
                if value is None:
                    continue
                overrides = [o.format(value) for o in TUNED[setting][0]]
            key = (testbed, solver, schedule, nfe, setting, value, seed_set)
            if key in done:
                continue
            bar.set_postfix_str(f"{testbed} {solver} {schedule} NFE {nfe} {setting} set {seed_set}")
            record = evaluate(testbed, solver, schedule, nfe, setting, seed_set, overrides, value)
            if "missing" in record:  # said once per setting; a rerun evaluates the cell once the config exists
                if setting not in missing:
                    tqdm.write(f"study: skipped {setting} (its config does not compose: {record['missing'][:160]})")
                missing.add(setting)
                continue
            records.append(record)
            done.add(key)
            out.write(json.dumps(record) + "\n")
            out.flush()
    return 0


def _csv(text: str, cast=str) -> tuple:
    return tuple(cast(t) for t in text.split(",") if t)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="evaluate the cells not on record yet")
    run.add_argument("--testbeds", type=_csv, default=tuple(t for t in TESTBEDS if t != "digits"))
    run.add_argument("--solvers", type=_csv, default=SOLVERS)
    run.add_argument("--schedules", type=_csv, default=SCHEDULES)
    run.add_argument("--nfe", type=lambda s: _csv(s, int), default=NFES)
    run.add_argument("--settings", type=_csv, default=(*SETTINGS, *TUNED))
    run.add_argument("--seed-sets", type=lambda s: _csv(s, int), default=EVAL_SETS)
    sub.add_parser("report", help="write docs/results.md and its figures from the records")
    args = parser.parse_args(argv)
    if args.command == "run":
        unknown = [t for t in args.testbeds if t not in TESTBEDS] + \
                  [s for s in args.settings if s not in SETTINGS and s not in TUNED]
        if unknown:
            print(f"study: error: unknown {', '.join(unknown)}; test-beds: {', '.join(TESTBEDS)}; settings: "
                  f"{', '.join([*SETTINGS, *TUNED])}", file=sys.stderr)
            return 2
        return run_study(args)
    from study_report import write_report  # the report half of the study (benchmarks/study_report.py)

    return write_report(read_records())


if __name__ == "__main__":
    raise SystemExit(main())
