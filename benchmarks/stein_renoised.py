"""The re-noised Stein estimate (issue 16, ours) against Stein as is and the posterior oracle.

    OMP_NUM_THREADS=1 python benchmarks/stein_renoised.py [--testbeds aniso32,ring2d,ring2d_mlp]
        [--solvers euler,heun,dpmpp_2m] [--nfe 5,6,10] [--seed-sets 1,2,3] [--report-only]

Cells are composed as in benchmarks/study.py (``compose_sample_config`` + ``build_run``, EDM schedule, 2000 samples
per seed set, batch 500, float32). Two parts:

1. Per-step error along the base solver's own (uncorrected) trajectory: at every step and batch, the unclipped
   gamma of (a) Stein as is (data reading, batch statistics, 5 Hutchinson probes), (b) the re-noised estimate
   (same reading, statistics and probes; anchor = the step's data prediction, 1 draw), (b') its variants (anchor
   D(x, sigma); the "direct" numerator), against the posterior oracle (OracleCorrector(reference="posterior"),
   same reading and statistics) at the same states. Observers: samples and counted NFE unchanged.
2. Final energy distance of none / stein (data, batch, clip [0.5, 1.5]; the study's "stein_ours") / re-noised
   (same clip; both anchors), and of none at the NFE the re-noised run actually spent (it doubles the NFE).

Records go to benchmarks/results/stein_renoised.jsonl as each cell is done (a rerun skips them); the report to
benchmarks/results/stein_renoised.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from steindiff import controls
from steindiff.build import build_run, compose_sample_config
from steindiff.core.correctors.renoised import RenoisedSteinCorrector
from steindiff.core.estimator_observer import EstimatorObserver
from steindiff.core.observers import Observer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import SETTINGS, TESTBEDS  # noqa: E402
from study import read_records as read_jsonl  # noqa: E402  (JSON lines; a line cut by an interrupted write skipped)  (the study's cells and its "stein_ours" setting)

RESULTS = Path(__file__).resolve().parent / "results"
RECORDS = RESULTS / "stein_renoised.jsonl"
REPORT = RESULTS / "stein_renoised.md"
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/stein_renoised.py"

RENOISED = ["corrector=stein_renoised", "corrector.target=data", "corrector.statistics=batch",
            "corrector.divergence=hutchinson", "corrector.num_probes=5", "corrector.gamma_min=0.5",
            "corrector.gamma_max=1.5", "corrector.sigma_window=null", "corrector.correct_first=true",
            "corrector.correct_last=true", "corrector.renoise_draws=1", "corrector.renoise_from=data_prediction",
            "corrector.numerator=stein"]
PART2 = {"stein": SETTINGS["stein_ours"], "renoised": RENOISED,
         "renoised_denoiser": [*RENOISED, "corrector.renoise_from=denoiser"]}
VARIANTS = {"renoised": {"renoise_from": "data_prediction", "numerator": "stein"},
            "renoised_denoiser": {"renoise_from": "denoiser", "numerator": "stein"},
            "renoised_direct": {"renoise_from": "data_prediction", "numerator": "direct"}}


READING = """## Reading (hand-written; numbers from the tables below)

- What the re-noised estimate is: Stein's formula on x~ = a + sigma eps~ around an anchor a. Given a, eps~ is
  independent of it, so the estimate is consistent for gamma~ = E<u(x~), x~ - a> / E|u(x~)|^2, the coefficient that
  best recovers the anchor from its re-noised copy, whatever the law of a. It is the oracle's gamma only if the anchors
  were draws of the data law and the step at x~ behaved as at x. Neither holds: anchors are posterior means (or a
  solver's extrapolation) with less spread than the data (closed form for one Gaussian: gamma~ = (s^2 + sigma^2)^2 /
  (s^4 + s^2 sigma^2 + sigma^4), up to 4/3, where the oracle is 1; tests/test_renoised.py), and gamma~ does not see
  where x itself is.
- What it can recover: with an exact denoiser and the data reading, Euler's oracle is exactly 1 at every state, so the
  re-noised estimate can only add error there (it does far less than Stein's at mid sigma: aniso32 Euler NFE 5,
  error without the last step 0.028 vs Stein's 0.21). For Heun and DPM-Solver++(2M) it carries the on-marginal
  (discretisation) part of the step's gamma: where that part dominates, it recovers the oracle (aniso32 Heun NFE 5,
  step 2.52 -> 0.002: anchor D(x) 1.90, oracle 1.99, Stein 0.17). With an exact denoiser nothing else is left for it
  to measure; with a learned one it also measures the denoiser's miscalibration relative to the anchors' law.
- What it cannot recover: the state-specific part (the oracle's gamma at an off-marginal x), and the last steps of a
  broken trajectory, where the anchors themselves lie off the data's support: at sigma_min -> 0 every estimate is ~0
  (or, for Euler NFE 10, ~2.5) against the oracle's 1, and between 0.17 and 0.002 it still reads ~0.2 where the oracle
  reads ~2 (aniso32 Heun NFE 10).
- Cost and the fair comparison: every corrected step is evaluated twice (three calls per Heun step with anchor D(x)),
  so a re-noised NFE-5 run spends NFE 10-13. The base solver given that NFE is better than every corrected run in
  every cell measured here, except Heun NFE 5 on ring2d and ring2d_mlp (re-noised with anchor D(x) 0.057 and 0.277
  against Heun at NFE 9, 1.19 and 1.56: Heun is itself broken at NFE 9 on the ring).
- At the same nominal NFE (not the fair comparison), the clipped re-noised estimate improves on the uncorrected
  solver at DPM-Solver++(2M) NFE 6 and 10 on all three test-beds and NFE 5 on the exact mixtures, at Heun NFE 5
  everywhere and at ring2d_mlp Heun NFE 10 (aniso32 2M NFE 6: 0.367 -> 0.133 with anchor D(x); ring2d 2M NFE 10:
  0.047 -> 0.018), and on Stein's clipped estimate in 24 of 27 cells (either anchor); it is worse than
  uncorrected for Euler everywhere (exact mixtures: gamma = 1 is exact and the estimate can only add error), at
  ring2d_mlp 2M NFE 5 and at aniso32 Heun NFE 10.
- Anchors: D(x) wins where a higher-order step breaks down (Heun NFE 5); the step's data prediction has the lower
  per-step error in most DPM-Solver++(2M) cells. The "direct" numerator estimates the same gamma~ without a backward
  pass; in float32 at sigma = 0.002 it is the more precise (Stein's sigma^2 (d - div D) cancels), otherwise the two
  agree within their noise."""


class RenoisedObserver(Observer):
    """The unclipped re-noised gamma of each variant at the run's own states (counter paused: NFE unchanged)."""

    def __init__(self):
        self.variants = {name: RenoisedSteinCorrector(target="data", statistics="batch", divergence="hutchinson",
                                                      num_probes=5, renoise_draws=1, **kw)
                         for name, kw in VARIANTS.items()}

    def observe(self, x, output, context) -> dict:
        paused = context.counter.paused() if context.counter is not None else contextlib.nullcontext()
        with paused:
            return {name: float(c.renoised_gamma(x, output, context)[0].mean()) for name, c in self.variants.items()}


def _overrides(testbed, solver, nfe, seed_set, extra):
    tb, n = TESTBEDS[testbed]
    return [*tb, f"solver={solver}", "schedule=edm", f"nfe={nfe}", *extra, f"seed_set={seed_set}", f"num_samples={n}"]


def _metrics(run, result) -> dict:
    run.metrics.update(result.samples)
    return {k: float(v) for k, v in run.metrics.compute().items()}


def part1(testbed, solver, nfe, seed_set) -> dict:
    """The base solver's run with the estimators observed; its metrics are the "none" setting's."""
    cfg = compose_sample_config(_overrides(testbed, solver, nfe, seed_set, ["corrector=none"]))
    run = build_run(cfg)
    law = controls.data_law(cfg)
    observers = [EstimatorObserver(reference="posterior", data=law, target="data", statistics="batch", num_probes=5),
                 RenoisedObserver()]
    start = time.perf_counter()
    result = run.sample(observers=observers)
    per_step = defaultdict(list)
    for row in result.trace:
        per_step[row["step"]].append(row)
    steps = []
    for k in sorted(per_step):
        rows = per_step[k]
        entry = {"step": k, "sigma": rows[0]["sigma"], "sigma_next": rows[0]["sigma_next"]}
        for key in ("oracle_gamma", "stein_estimate", *VARIANTS):
            entry[key] = statistics.fmean(r[key] for r in rows)
            if key != "oracle_gamma":  # per batch: the error of the gamma a batch would use
                entry[f"err_{key}"] = statistics.fmean(abs(r[key] - r["oracle_gamma"]) for r in rows)
        steps.append(entry)
    return {"part": 1, "testbed": testbed, "solver": solver, "nfe_budget": nfe, "seed_set": seed_set,
            "setting": "none", "nfe": result.nfe, "metrics": _metrics(run, result), "steps": steps,
            "seconds": time.perf_counter() - start}


def part2(testbed, solver, nfe, seed_set, setting, extra, nfe_override=None) -> dict:
    cfg = compose_sample_config(_overrides(testbed, solver, nfe_override or nfe, seed_set, extra))
    run = build_run(cfg)
    result = run.sample()
    gammas = defaultdict(list)
    for row in result.trace:
        gammas[row["step"]].append(row.get("gamma", 1.0))
    return {"part": 2, "testbed": testbed, "solver": solver, "nfe_budget": nfe, "seed_set": seed_set,
            "setting": setting, "nfe": result.nfe, "metrics": _metrics(run, result),
            "gamma": [statistics.fmean(v) for _, v in sorted(gammas.items())]}


def read_records() -> list[dict]:
    return read_jsonl(RECORDS)


def key(r) -> tuple:
    return (r["part"], r["testbed"], r["solver"], r["nfe_budget"], r["seed_set"], r["setting"])


def run_all(args) -> None:
    torch.set_num_threads(1)
    records = read_records()
    done = {key(r) for r in records}
    RESULTS.mkdir(exist_ok=True)
    with RECORDS.open("a") as out:
        def emit(record):
            records.append(record)
            done.add(key(record))
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(f"{record['testbed']} {record['solver']} NFE {record['nfe_budget']} set {record['seed_set']} "
                  f"{record['setting']}: nfe {record['nfe']} ED {record['metrics'].get('energy_distance', 0):.4g}",
                  flush=True)

        for tb in args.testbeds:
            for solver in args.solvers:
                for nfe in args.nfe:
                    for s in args.seed_sets:
                        if (1, tb, solver, nfe, s, "none") not in done:
                            emit(part1(tb, solver, nfe, s))
                        spent = None
                        for setting, extra in PART2.items():
                            if (2, tb, solver, nfe, s, setting) not in done:
                                emit(part2(tb, solver, nfe, s, setting, extra))
                            if setting == "renoised":
                                spent = next(r["nfe"] for r in records if key(r) == (2, tb, solver, nfe, s, setting))
                        if (2, tb, solver, nfe, s, "none_at_spent") not in done:
                            emit(part2(tb, solver, nfe, s, "none_at_spent", ["corrector=none"], nfe_override=spent))


def _ms(values) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.fmean(values):.3g} ± {statistics.stdev(values):.2g}"


def report(args) -> str:
    records = read_records()
    p1 = defaultdict(list)
    p2 = defaultdict(dict)
    for r in records:
        cell = (r["testbed"], r["solver"], r["nfe_budget"])
        if r["part"] == 1:
            p1[cell].append(r)
            p2[cell].setdefault("none", []).append(r)
        else:
            p2[cell].setdefault(r["setting"], []).append(r)
    cells = [(tb, s, n) for tb in args.testbeds for s in args.solvers for n in args.nfe if (tb, s, n) in p1]
    lines = [f"Command: `{COMMAND}`", "",
             "Cells as in benchmarks/study.py (EDM schedule, 2000 samples per seed set, batch 500, float32), seed "
             "sets 1, 2, 3; mean ± sd over the seed sets. Estimators: data reading, batch statistics, 5 Hutchinson "
             "probes, 1 re-noised draw (ours, issue 16). 're-noised': anchor = the step's data prediction; "
             "'anchor D(x)': anchor = D(x, sigma) (the corrector's default); 'direct': the data-prediction anchor "
             "with the numerator <u(x~), x~ - a> instead of sigma^2 div u. Heun NFE 6 is the NFE-5 grid (3 steps).",
             "", READING, "",
             "## 1. Per-step error of the estimate against the posterior oracle, along the base solver's trajectory",
             "",
             "Mean over the steps of |gamma_est - gamma_oracle| (per batch of 500, unclipped), with and without the "
             "last step (sigma_min -> 0, where every estimate is ~0 and the oracle ~1); 'better' counts the steps "
             "(x seed sets) where the re-noised error is below Stein's.", "",
             "| test-bed | solver | NFE | Stein | re-noised | re-noised, anchor D(x) | re-noised, direct | "
             "Stein, w/o last step | re-noised, w/o last | re-noised D(x), w/o last | re-noised better (steps) | "
             "re-noised D(x) better (steps) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        rs = p1[cell]
        def err(name, last=True, rs=rs):
            return _ms(statistics.fmean(st[f"err_{name}"] for st in r["steps"] if last or st["sigma_next"] > 0)
                       for r in rs)
        better = sum(st["err_renoised"] < st["err_stein_estimate"] for r in rs for st in r["steps"])
        better_d = sum(st["err_renoised_denoiser"] < st["err_stein_estimate"] for r in rs for st in r["steps"])
        total = sum(len(r["steps"]) for r in rs)
        lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]} | {err('stein_estimate')} | {err('renoised')} | "
                     f"{err('renoised_denoiser')} | {err('renoised_direct')} | {err('stein_estimate', False)} | "
                     f"{err('renoised', False)} | {err('renoised_denoiser', False)} | {better}/{total} | "
                     f"{better_d}/{total} |")
    lines += ["", "## 2. Final energy distance", "",
              "none / stein (data, batch, clip [0.5, 1.5], the study's stein_ours) / re-noised (the same clip); "
              "'none at spent NFE': the base solver given the NFE the re-noised run counted (it evaluates each "
              "corrected step twice).", "",
              "| test-bed | solver | NFE | none | stein | re-noised | re-noised, anchor D(x) | re-noised NFE "
              "(anchor D(x)) | none at spent NFE (NFE) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        st = p2[cell]
        def ed(name, st=st):
            rs = st.get(name, [])
            return _ms(r["metrics"]["energy_distance"] for r in rs) if rs else "-"
        spent = st.get("renoised", [{}])[0].get("nfe", "-")
        spent_d = st.get("renoised_denoiser", [{}])[0].get("nfe", "-")
        spent_none = st.get("none_at_spent", [{}])[0].get("nfe", "-")
        lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]} | {ed('none')} | {ed('stein')} | {ed('renoised')} | "
                     f"{ed('renoised_denoiser')} | {spent} ({spent_d}) | {ed('none_at_spent')} ({spent_none}) |")
    lines += ["", "## 3. Per step (means over the seed sets and batches): the oracle's gamma and the estimates", "",
              "| test-bed | solver | NFE | sigma -> sigma_next | oracle | Stein | re-noised | re-noised D(x) | "
              "re-noised direct |", "|---|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        rs = p1[cell]
        for k, first in enumerate(rs[0]["steps"]):
            def m(name, k=k, rs=rs):
                return statistics.fmean(r["steps"][k][name] for r in rs)
            lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]} | {first['sigma']:.3g} -> {first['sigma_next']:.3g} | "
                         f"{m('oracle_gamma'):.3f} | {m('stein_estimate'):.3f} | {m('renoised'):.3f} | "
                         f"{m('renoised_denoiser'):.3f} | {m('renoised_direct'):.3f} |")
    md = "\n".join(lines) + "\n"
    REPORT.write_text(md)
    return md


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testbeds", default="aniso32,ring2d,ring2d_mlp")
    parser.add_argument("--solvers", default="euler,heun,dpmpp_2m")
    parser.add_argument("--nfe", default="5,6,10")
    parser.add_argument("--seed-sets", default="1,2,3")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.testbeds = [t for t in args.testbeds.split(",") if t]
    args.solvers = [s for s in args.solvers.split(",") if s]
    args.nfe = [int(n) for n in args.nfe.split(",") if n]
    args.seed_sets = [int(s) for s in args.seed_sets.split(",") if s]
    if not args.report_only:
        run_all(args)
    print(report(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
