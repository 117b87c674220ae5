"""The results study (issue 15): settings of the corrector against the base solver, over disjoint seed sets.

    python benchmarks/study.py run [--testbeds ring2d,aniso32] [--solvers dpmpp_2m] [--schedules edm]
                                   [--nfe 3,4,6] [--settings none,oracle] [--seed-sets 1,2,3]
    python benchmarks/study.py report            # docs/results.md and docs/results/*.png from the records

``run`` evaluates every cell (test-bed x solver x schedule x NFE x setting x seed set) in this process through
the app's own config path (``compose_sample_config`` + ``build_run``: a setting here means what it means on the
command line), one torch thread, and appends one JSON line per cell to docs/results/study.jsonl as soon as the
cell is done: an interrupted study loses at most the cell in progress, and a rerun skips the cells on record.
A long study should run from a copy of the tree (with PYTHONPATH=<copy>/src and its
docs/results/study.jsonl linked to the repository's): a config edited while it runs changes what its later cells
compose (a key added to sample.yaml made a running study skip cells once).

Seed sets 1, 2, 3 are the evaluation sets; seed set 0 is the tuning set of the tuned baselines (a constant
gamma, epsilon scaling): their value is chosen on seed set 0 per (test-bed, solver, schedule, NFE) and reported
on the evaluation sets only. Timed: ``run.sample()`` alone (the metrics are not part of the sampler's cost).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
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

#: setting -> overrides, every switch of the Stein family spelled out (a change of the config's defaults never changes
#: what a recorded setting means). The paper's: state reading, batch statistics, 5 Hutchinson probes, a lower clip
#: (its value is unpublished; 0 here, so gamma is never negative). Ours: the data reading with a clip; the
#: candidates for ``corrector=stein``'s default: [0.5, 1.5] (the first ablation's best), [0.9, 1.1], [0.95, 1.05],
#: and [0.5, 1.5] or [0.9, 1.1] only where sigma >= 1 (the estimate fails at small sigma, ../shared/findings.md).
_STEIN = ["corrector=stein", "corrector.divergence=hutchinson", "corrector.num_probes=5", "corrector.subset=null",
          "corrector.correct_first=true", "corrector.correct_last=true", "corrector.statistics=batch"]
SETTINGS = {
    "none": ["corrector=none"],
    "stein_paper": [*_STEIN, "corrector.target=state", "corrector.gamma_min=0", "corrector.gamma_max=null",
                    "corrector.sigma_window=null"],
    "stein_ours": [*_STEIN, "corrector.target=data", "corrector.gamma_min=0.5", "corrector.gamma_max=1.5",
                   "corrector.sigma_window=null"],
    "stein_narrow": [*_STEIN, "corrector.target=data", "corrector.gamma_min=0.9", "corrector.gamma_max=1.1",
                     "corrector.sigma_window=null"],
    "stein_window": [*_STEIN, "corrector.target=data", "corrector.gamma_min=0.5", "corrector.gamma_max=1.5",
                     "corrector.sigma_window=[1,1000]"],
    "stein_tight": [*_STEIN, "corrector.target=data", "corrector.gamma_min=0.95", "corrector.gamma_max=1.05",
                    "corrector.sigma_window=null"],
    "stein_narrow_window": [*_STEIN, "corrector.target=data", "corrector.gamma_min=0.9", "corrector.gamma_max=1.1",
                            "corrector.sigma_window=[1,1000]"],
    "stein_narrow_rademacher": [*_STEIN, "corrector.target=data", "corrector.gamma_min=0.9", "corrector.gamma_max=1.1",
                                "corrector.sigma_window=null", "corrector.probes=rademacher"],
    # issue 16's estimator variants (ours): stein_ours with one switch changed (the paper's state reading for
    # exact_terms, which changes nothing under the data reading)
    **{f"stein_{name}": [*_STEIN, "corrector.target=data", "corrector.gamma_min=0.5", "corrector.gamma_max=1.5",
                         "corrector.sigma_window=null", switch]
       for name, switch in (("rademacher", "corrector.probes=rademacher"),
                            ("orthogonal", "corrector.probes=orthogonal"),
                            ("flow", "corrector.history=flow"), ("shrinkage", "corrector.shrinkage=true"),
                            ("smoothing", "corrector.smoothing=0.5"))},
    "stein_exact_terms": [*_STEIN, "corrector.target=state", "corrector.gamma_min=0", "corrector.gamma_max=null",
                          "corrector.sigma_window=null", "corrector.exact_terms=true"],
    "stein_renoised": ["corrector=stein_renoised", "corrector.target=data", "corrector.statistics=batch",
                       "corrector.divergence=hutchinson", "corrector.num_probes=5", "corrector.gamma_min=0.5",
                       "corrector.gamma_max=1.5", "corrector.sigma_window=null", "corrector.renoise_draws=1",
                       "corrector.renoise_from=denoiser", "corrector.numerator=stein"],
    "oracle": ["corrector=oracle"],
    "oracle_trajectory": ["corrector=oracle_trajectory"],
}
#: (test-bed, setting) -> overrides added to the setting's on that test-bed only. Digits: the trajectory oracle's
#: reference with 8 Heun substeps per interval, not 32 (a U-Net in float64 at 32 substeps costs about 4 min per
#: cell on one CPU core). Measured on seeds 1000-1249, Euler NFE 6: 8 against 16 substeps moved the last step's
#: gamma by 1.7 % (7.43 / 7.31) and the digits-FID by 0.04 (122.35 / 122.39); the other steps by under 0.2 %.
TESTBED_SETTING_OVERRIDES = {("digits", "oracle_trajectory"): ["corrector.substeps=8"]}
#: tuned baselines: setting -> (override pattern, candidate values chosen on the tuning seed set)
TUNED = {
    "constant": (["corrector=constant", "corrector.gamma={}"], (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2)),
    "eps_scaling": (["corrector=none", "epsilon_scaling={}"], (0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1)),
}
#: the calibrated schedule (ours, issue 16): fitted once per cell against the trajectory oracle on seeds 0-255 (inside
#: the tuning seed set 0), cached as a small JSON file under CALIBRATIONS, evaluated on the evaluation sets
CALIBRATED = "calibrated"
CALIBRATIONS = Path("docs") / "results" / "calibration"  # relative to ROOT: records never hold a machine path
CALIBRATION_SEEDS = "0-255"
HEADLINE = {"digits": "digits_fid"}  # the metric a table shows; energy distance for the mixtures


def headline(testbed: str) -> str:
    return HEADLINE.get(testbed, "energy_distance")


def cell_key(record: dict) -> tuple:
    return (record["testbed"], record["solver"], record["schedule"], record["nfe_budget"], record["setting"],
            record.get("value"), record["seed_set"])


def measured_keys(records: list[dict]) -> set[tuple]:
    """The cells on record with a measurement. A refused cell (``error``) is not among them: a rerun tries it
    again, since a refusal may come from a checkout that has since changed; the same refusal is recorded once."""
    return {cell_key(r) for r in records if "error" not in r}


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


def calibrated_overrides(testbed: str, solver: str, schedule: str, nfe: int) -> list[str]:
    """corrector=calibrated with the cell's schedule file, calibrated now (and cached) when it does not exist yet."""
    path = CALIBRATIONS / f"{testbed}-{solver}-{schedule}-nfe{nfe}.json"
    if not (ROOT / path).is_file():
        from steindiff.calibrate import calibrate
        from steindiff.core.correctors.calibrated import write_schedule

        command = f"python benchmarks/study.py run --testbeds {testbed} --solvers {solver} --schedules {schedule} " \
                  f"--nfe {nfe} --settings {CALIBRATED}"
        record = calibrate([*TESTBEDS[testbed][0], f"solver={solver}", f"schedule={schedule}", f"nfe={nfe}"],
                           seeds=CALIBRATION_SEEDS, command=command)
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        write_schedule(ROOT / path, record)
    return ["corrector=calibrated", f"corrector.path={path.as_posix()}"]


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
    done = measured_keys(records)
    tuning, evaluation = [], []
    for base in itertools.product(args.testbeds, args.solvers, args.schedules, args.nfe):
        for setting in args.settings:
            if setting in TUNED:
                pattern, values = TUNED[setting]
                tuning += [(*base, setting, TUNE_SET, [o.format(v) for o in pattern], v) for v in values]
                evaluation += [(*base, setting, k, None, None) for k in args.seed_sets]
            elif setting == CALIBRATED:  # overrides known once the cell's schedule is calibrated (when it runs)
                evaluation += [(*base, setting, k, CALIBRATED, None) for k in args.seed_sets]
            else:
                overrides = [*SETTINGS[setting], *TESTBED_SETTING_OVERRIDES.get((base[0], setting), [])]
                evaluation += [(*base, setting, k, overrides, None) for k in args.seed_sets]
    # tuned evaluation cells (overrides None) learn their value only when they run: checked there
    return [c for c in tuning + evaluation if c[6] is None or (*c[:5], c[7], c[5]) not in done]


def _known_setting(name: str) -> bool:
    return name in SETTINGS or name in TUNED or name == CALIBRATED


def run_study(args) -> int:
    torch.set_num_threads(1)
    os.chdir(ROOT)  # the calibrated setting names its schedule files relative to the repository
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    records = read_records()
    cells = planned_cells(args, records)
    done, missing = measured_keys(records), set()
    refused = {(cell_key(r), r["error"]) for r in records if "error" in r}
    with RECORDS.open("a") as out, tqdm(cells, desc="study", unit="cell") as bar:
        for testbed, solver, schedule, nfe, setting, seed_set, overrides, value in bar:
            if overrides == CALIBRATED:
                overrides = calibrated_overrides(testbed, solver, schedule, nfe)
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
            if "error" in record and (key, record["error"]) in refused:
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
    run.add_argument("--settings", type=_csv, default=(*SETTINGS, *TUNED, CALIBRATED))
    run.add_argument("--seed-sets", type=lambda s: _csv(s, int), default=EVAL_SETS)
    sub.add_parser("report", help="write docs/results.md and its figures from the records")
    args = parser.parse_args(argv)
    if args.command == "run":
        unknown = [t for t in args.testbeds if t not in TESTBEDS] + [s for s in args.settings if not _known_setting(s)]
        if unknown:
            print(f"study: error: unknown {', '.join(unknown)}; test-beds: {', '.join(TESTBEDS)}; settings: "
                  f"{', '.join([*SETTINGS, *TUNED, CALIBRATED])}", file=sys.stderr)
            return 2
        return run_study(args)
    from study_report import write_report  # the report half of the study (benchmarks/study_report.py)

    return write_report(read_records())


if __name__ == "__main__":
    raise SystemExit(main())
