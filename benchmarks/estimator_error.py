"""The estimator error against the oracle, per step, for each Stein estimator variant (issues 15/16).

    python benchmarks/estimator_error.py run [--testbeds ring2d_mlp,aniso32_mlp,digits] [--solvers euler,heun,dpmpp_2m]
                                             [--nfe 6,10] [--seed-sets 1,2,3] [--variants all] [--digits-samples 250]
                                             [--substeps 8]
    python benchmarks/estimator_error.py report   # benchmarks/results/estimator_error.md and the figures only

At every step of a base-solver run (corrector none: the states the sampler actually visits) each variant's gamma is
computed at the same states beside the oracle's gamma there (``EstimatorObserver(correctors=...)``: each variant's
corrector, built from its composed config by the app's own ``build_run``, is called as the sampling loop calls it,
unclipped, counter paused; a variant with state, smoothing say, keeps it across the steps of a batch). The oracle is
the posterior one (the exact posterior mean of the data law, data reading, batch statistics) where the app knows the
data law (``controls.data_law``: the mixture MLPs), the trajectory one elsewhere (digits: ``--substeps`` Heun
substeps per interval, float64). Error = variant gamma - oracle gamma, per batch; a seed set's value is the mean over
its batches; figures and tables give the mean and sd over the seed sets.

A variant is a named list of Hydra overrides (``VARIANTS``). One whose config does not compose, or whose corrector
refuses the arguments, is skipped with one printed line (an option other helpers have not added yet); a dotted
``corrector.<key>=<value>`` whose key the config file lacks is tried once as ``+corrector.<key>=<value>`` (the
constructor then decides). Records are appended per (cell, seed set, variant) to
benchmarks/results/estimator_error.jsonl as each cell finishes; a rerun skips what is on record and computes only
the variants that appeared since. One torch thread (on a shared machine, under a lock such as ``flock <lockfile>``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from hydra.errors import HydraException
from tqdm.auto import tqdm

from steindiff import controls
from steindiff.build import build_run, compose_sample_config
from steindiff.core import Corrector, EstimatorObserver
from steindiff.core.estimator_observer import estimate_key, unclipped
from steindiff.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import read_records as read_jsonl  # noqa: E402  (JSON lines; a line cut by an interrupted write skipped)

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "results" / "estimator_error.jsonl"
REPORT = ROOT / "benchmarks" / "results" / "estimator_error.md"
FIGURES = ROOT / "docs" / "results"
SCHEDULE = "edm"
SEED_SETS = (1, 2, 3)
SOLVERS = ("euler", "heun", "dpmpp_2m")
NFES = (6, 10)
#: test-bed -> (overrides, samples per seed set); digits: see --digits-samples
TESTBEDS = {
    "ring2d_mlp": (["experiment=ring2d_mlp"], 2000),
    "aniso32_mlp": (["experiment=aniso32_mlp"], 2000),
    "digits": (["experiment=digits"], 250),
    "ring2d": (["denoiser=ring2d"], 2000),  # the exact mixture denoiser (a check: Euler's oracle is 1), not default
}
LEARNED = ("ring2d_mlp", "aniso32_mlp", "digits")
#: the paper's estimator under the data reading (5 Hutchinson probes, batch statistics), spelled out
_STEIN = ["corrector=stein", "corrector.target=data", "corrector.statistics=batch", "corrector.divergence=hutchinson",
          "corrector.num_probes=5", "corrector.subset=null"]
VARIANTS = {
    "stein (paper estimator, data reading)": _STEIN,
    "renoised": ["corrector=stein_renoised"],
    "shrinkage": [*_STEIN, "corrector.shrinkage=true"],
    "flow history": [*_STEIN, "corrector.history=flow"],
    "orthogonal probes": [*_STEIN, "corrector.probes=orthogonal"],
    "rademacher probes": [*_STEIN, "corrector.probes=rademacher"],
    "exact terms": [*_STEIN, "corrector.exact_terms=true"],
    "smoothing 0.5": [*_STEIN, "corrector.smoothing=0.5"],
}


def cell_overrides(testbed: str, solver: str, nfe: int, seed_set: int, num_samples: int) -> list[str]:
    return [*TESTBEDS[testbed][0], f"solver={solver}", f"schedule={SCHEDULE}", f"nfe={nfe}", f"seed_set={seed_set}",
            f"num_samples={num_samples}"]


def _compose_variant(cell: list[str], overrides: list[str]):
    """The composed config of a variant; a dotted corrector key the config file lacks is added with '+'."""
    try:
        return compose_sample_config([*cell, *overrides])
    except HydraException as first:
        groups = [o for o in overrides if "." not in o.split("=")[0]]
        try:
            node = compose_sample_config([*cell, *groups]).corrector
        except HydraException:
            raise first from None
        plus = []
        for o in overrides:
            key = o.split("=")[0]
            short = key.split(".", 1)[1] if key.startswith("corrector.") else None
            plus.append(f"+{o}" if short is not None and "." not in short and short not in node else o)
        if plus == list(overrides):
            raise first from None
        return compose_sample_config([*cell, *plus])


def variant_corrector(cell: list[str], overrides: list[str]):
    """(the variant's corrector built by the app, None) or (None, why it is not available)."""
    try:
        cfg = _compose_variant(cell, overrides)
    except HydraException as err:
        return None, "its config does not compose: " + " ".join(str(err).split())[:160]
    try:
        return build_run(cfg, metrics=False).corrector, None
    except (ConfigError, ValueError, TypeError) as err:
        return None, "its corrector refuses the arguments: " + " ".join(str(err).split())[:160]


class Guarded(Corrector):
    """A variant's (unclipped) corrector whose refusal at run time (a ValueError from ``correct``, e.g. orthogonal
    probes on a 2-D test-bed) is kept in ``error`` instead of ending the run; its gamma there is NaN."""

    def __init__(self, inner: Corrector):
        self.inner, self.error = unclipped(inner), None

    @property
    def requires_grad(self) -> bool:
        return self.inner.requires_grad

    def differentiates(self, context) -> bool:
        return self.inner.differentiates(context)

    def correct(self, x, output, context):
        if self.error is None:
            try:
                return self.inner.correct(x, output, context)
            except ValueError as err:
                self.error = " ".join(str(err).split())[:160]
        return output.x_next.detach(), {"gamma": math.nan}


def cell_key(r: dict) -> tuple:
    return r["testbed"], r["solver"], r["schedule"], r["nfe_budget"], r["seed_set"], r["variant"]


def read_records(path: Path) -> list[dict]:
    return read_jsonl(path)  # a line cut by an interrupted write is skipped


def evaluate(testbed: str, solver: str, nfe: int, seed_set: int, num_samples: int, correctors: dict,
             overrides: dict, substeps: int) -> list[dict]:
    """One base-solver run with every variant observed: (one record per variant, {variant: why} of the variants
    whose corrector refused to run)."""
    cell = cell_overrides(testbed, solver, nfe, seed_set, num_samples)
    cfg = compose_sample_config([*cell, "corrector=none"])
    run = build_run(cfg, metrics=False)
    law = controls.data_law(cfg)
    reference = "posterior" if law is not None else "trajectory"
    observer = EstimatorObserver(reference=reference, data=law, substeps=substeps,
                                 correctors={name: Guarded(c) for name, c in correctors.items()})
    start = time.perf_counter()
    result = run.sample(observers=[observer])
    seconds = time.perf_counter() - start
    steps = sorted({t["step"] for t in result.trace})
    sigma = [next(t["sigma"] for t in result.trace if t["step"] == i) for i in steps]
    oracle = [[t["oracle_gamma"] for t in result.trace if t["step"] == i] for i in steps]
    base = {"testbed": testbed, "solver": solver, "schedule": SCHEDULE, "nfe_budget": nfe, "seed_set": seed_set,
            "num_samples": num_samples, "batch_size": run.batch_size, "nfe": result.nfe, "reference": reference,
            "substeps": substeps if reference == "trajectory" else None, "sigma": sigma, "oracle": oracle,
            "seconds_all_variants": seconds, "cell_overrides": cell}
    refused = {name: c.error for name, c in observer.correctors.items() if c.error is not None}
    return [{**base, "variant": name, "overrides": overrides[name],
             "gamma": [[t[estimate_key(name)] for t in result.trace if t["step"] == i] for i in steps]}
            for name in correctors if name not in refused], refused


def run_cells(args) -> int:
    torch.set_num_threads(1)
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    done = {cell_key(r) for r in read_records(records_path)}
    variants = {k: VARIANTS[k] for k in args.variants}
    cells = list(itertools.product(args.testbeds, args.solvers, args.nfe, args.seed_sets))
    skipped: set[tuple[str, str]] = set()

    def say(name: str, testbed: str, why: str) -> None:  # one line per variant and test-bed
        if (name, testbed) not in skipped:
            tqdm.write(f"estimator_error: skipped {name!r} on {testbed} ({why})")
        skipped.add((name, testbed))

    built: dict[tuple, dict] = {}
    command = shlex.join(["python", "benchmarks/estimator_error.py", *args.argv])  # as a shell reads it
    with records_path.open("a") as out, tqdm(cells, desc="estimator error", unit="cell", file=sys.stderr) as bar:
        for testbed, solver, nfe, seed_set in bar:
            todo = [v for v in variants if (testbed, solver, SCHEDULE, nfe, seed_set, v) not in done]
            if not todo:
                continue
            num_samples = args.samples or (args.digits_samples if testbed == "digits" else TESTBEDS[testbed][1])
            if (testbed, solver, nfe) not in built:  # the correctors do not depend on the seed set
                correctors = {}
                for name, overrides in variants.items():
                    corrector, why = variant_corrector(cell_overrides(testbed, solver, nfe, 1, num_samples),
                                                       overrides)
                    if corrector is None:
                        say(name, testbed, why)
                    else:
                        correctors[name] = corrector
                built[(testbed, solver, nfe)] = correctors
            correctors = {v: c for v, c in built[(testbed, solver, nfe)].items() if v in todo}
            if not correctors:
                continue
            bar.set_postfix_str(f"{testbed} {solver} NFE {nfe} set {seed_set} ({len(correctors)} variants)")
            records, refused = evaluate(testbed, solver, nfe, seed_set, num_samples, correctors, variants,
                                        args.substeps)
            for name, why in refused.items():  # refused at run time: not tried again in this test-bed's cells
                say(name, testbed, f"its corrector refuses to run: {why}")
                for key in built:
                    if key[0] == testbed:
                        built[key].pop(name, None)
            for record in records:
                record["command"] = command
                out.write(json.dumps(record) + "\n")
                done.add(cell_key(record))
            out.flush()
    if args.report:
        write_report(read_records(records_path), Path(args.out_md), Path(args.figures))
    return 0


# ---- the report -----------------------------------------------------------------------------------------------

def _sd(a: np.ndarray) -> np.ndarray:
    """The sd over seed sets (axis 0), NaN with one seed set."""
    return a.std(axis=0, ddof=1) if len(a) > 1 else np.full(a.shape[1:], np.nan)


def summarise(records: list[dict]) -> dict:
    """(testbed, solver, nfe, variant) -> per-step sigma, gamma/oracle/error mean and sd over seed sets, and the
    RMS error over steps (mean and sd over seed sets)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["testbed"], r["solver"], r["nfe_budget"], r["variant"]), []).append(r)
    out = {}
    for key, rows in groups.items():
        rows = sorted({r["seed_set"]: r for r in rows}.values(), key=lambda r: r["seed_set"])  # last record wins
        gamma = np.array([[np.mean(g) for g in r["gamma"]] for r in rows])  # (sets, steps): mean over batches
        oracle = np.array([[np.mean(o) for o in r["oracle"]] for r in rows])
        error = np.array([[np.mean(np.subtract(g, o)) for g, o in zip(r["gamma"], r["oracle"])] for r in rows])
        rms = np.sqrt(np.mean(error**2, axis=1))
        inner = np.sqrt(np.mean(error[:, :-1] ** 2, axis=1)) if error.shape[1] > 1 else np.full(len(rows), np.nan)
        out[key] = {"sigma": rows[0]["sigma"], "seed_sets": [r["seed_set"] for r in rows],
                    "gamma": gamma.mean(0), "gamma_sd": _sd(gamma), "oracle": oracle.mean(0),
                    "oracle_sd": _sd(oracle), "error": error.mean(0), "error_sd": _sd(error),
                    "rms": float(rms.mean()), "rms_sd": float(rms.std(ddof=1)) if len(rms) > 1 else math.nan,
                    "rms_inner": float(inner.mean()),
                    "rms_inner_sd": float(inner.std(ddof=1)) if len(inner) > 1 else math.nan,
                    "reference": rows[0]["reference"], "num_samples": rows[0]["num_samples"],
                    "substeps": rows[0].get("substeps")}
    return out


def _fmt(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    digits = 3 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if math.isfinite(sd) else "")


def figure(testbed: str, summary: dict, path: Path) -> None:
    """Error vs sigma per variant, one panel per (solver, NFE)."""
    from matplotlib.figure import Figure

    keys = [k for k in summary if k[0] == testbed]
    solvers = [s for s in SOLVERS if any(k[1] == s for k in keys)] + \
              sorted({k[1] for k in keys} - set(SOLVERS))
    nfes = sorted({k[2] for k in keys})
    variants = [v for v in VARIANTS if any(k[3] == v for k in keys)]
    fig = Figure(figsize=(4.2 * len(nfes), 3.0 * len(solvers) + 0.8))
    axes = fig.subplots(len(solvers), len(nfes), squeeze=False)
    for (i, solver), (j, nfe) in itertools.product(enumerate(solvers), enumerate(nfes)):
        ax = axes[i][j]
        wide = False
        for c, variant in enumerate(variants):
            s = summary.get((testbed, solver, nfe, variant))
            if s is None:
                continue
            err, sd = s["error"], np.nan_to_num(s["error_sd"])
            shift = 1.07 ** (c - (len(variants) - 1) / 2)  # a small offset on the x axis, so that overlaps show
            ax.errorbar(np.asarray(s["sigma"]) * shift, err, yerr=sd, marker="os^vDP*X"[c % 8], ms=3.5, lw=1.0,
                        capsize=2, color=f"C{c}", label=variant)
            wide |= bool(np.nanmax(np.abs(err) + sd) > 3)
        ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.invert_xaxis()
        if wide:
            ax.set_yscale("symlog", linthresh=0.1)
        ax.set_xlabel("sigma of the state (log; sampling runs to the right)", fontsize=7)
        ax.set_ylabel("gamma error: variant - oracle" + (" (symlog, linear in ±0.1)" if wide else ""), fontsize=7)
        ax.set_title(f"{testbed} | {solver} | NFE {nfe} | EDM", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    s0 = next(iter(summary[k] for k in keys))
    oracle = ("posterior oracle (exact posterior mean)" if s0["reference"] == "posterior"
              else f"trajectory oracle ({s0['substeps']} Heun substeps per interval)")
    title = (f"Stein estimator error per step along the base solver's path (corrector none), {testbed}: variant gamma "
             f"(unclipped) - {oracle} gamma at the same states; {s0['num_samples']} samples per seed set, mean ± sd "
             f"over seed sets (markers offset slightly in sigma)")
    title = textwrap.fill(title, 48 * len(nfes))
    fig.suptitle(title, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = 2 * len(nfes)
    rows = math.ceil(len(labels) / ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, (0.25 * rows + 0.1) / height, 1, 1))  # tight_layout leaves room for the suptitle
    fig.savefig(path, dpi=110)


def write_report(records: list[dict], md: Path, figures: Path) -> int:
    """The markdown table (RMS error per variant per cell) and one figure per test-bed, from the records."""
    summary = summarise(records)
    testbeds = [t for t in TESTBEDS if any(k[0] == t for k in summary)]
    commands = list(dict.fromkeys(r.get("command", "?") for r in records))
    skipped = [v for v in VARIANTS if not any(r["variant"] == v for r in records)]
    lines = ["# Estimator error against the oracle, per step (benchmarks/estimator_error.py)", "",
             "Commands (each run appends; records in benchmarks/results/estimator_error.jsonl; "
             "`python benchmarks/estimator_error.py report` rewrites this page):", "",
             *[f"    {c}" for c in commands], "",
             "At every step of a base-solver run (corrector none: the states the sampler visits) each variant's "
             "gamma (unclipped, no sigma window) is computed at the same states as the oracle's gamma (data reading, "
             "batch statistics). Error = variant - oracle per batch; a seed set's value is the mean over its batches. "
             "Tables: RMS of the error over the steps of a run (all steps; all but the last, to sigma 0, where the "
             "residual u is tiny and the oracle's least-squares gamma can be large), mean ± sd over the seed sets. "
             "EDM schedule (rho 7, final step to sigma 0). Variants identical to the paper's estimator in a cell are "
             "options that do not act there (e.g. the flow history on one-step solvers). Figures: "
             "docs/results/estimator_error_<testbed>.png.", ""]
    if skipped:
        lines += ["Variants with no records (not available when this ran): " + ", ".join(skipped) + ".", ""]
    for testbed in testbeds:
        keys = [k for k in summary if k[0] == testbed]
        cols = [(s, n) for s in SOLVERS for n in sorted({k[2] for k in keys}) if any(k[1:3] == (s, n) for k in keys)]
        s0 = summary[keys[0]]
        oracle = ("posterior oracle" if s0["reference"] == "posterior"
                  else f"trajectory oracle, {s0['substeps']} Heun substeps per interval")
        sets = sorted({x for k in keys for x in summary[k]["seed_sets"]})
        lines += [f"## {testbed} ({oracle}; {s0['num_samples']} samples per seed set, seed sets "
                  f"{', '.join(map(str, sets))})", ""]
        for which, words in (("rms", "every step"), ("rms_inner", "every step but the last (the step to sigma 0)")):
            lines += [f"RMS error over {words}:", "",
                      "| variant | " + " | ".join(f"{s} NFE {n}" for s, n in cols) + " |",
                      "|---|" + "---|" * len(cols)]
            for variant in [v for v in VARIANTS if any(k[3] == v for k in keys)]:
                cells = [summary.get((testbed, s, n, variant)) for s, n in cols]
                lines.append(f"| {variant} | " + " | ".join("-" if c is None else _fmt(c[which], c[which + "_sd"])
                                                           for c in cells) + " |")
            lines.append("")
        lines += ["Oracle gamma per step (mean over seed sets), sigma: oracle:", ""]
        for s, n in cols:
            c = next(summary[k] for k in keys if k[1:3] == (s, n))
            lines.append(f"- {s} NFE {n}: " + ", ".join(f"{sig:.3g}: {o:.3f}" for sig, o in zip(c["sigma"],
                                                                                                 c["oracle"])))
        lines.append("")
        figures.mkdir(parents=True, exist_ok=True)
        figure(testbed, summary, figures / f"estimator_error_{testbed}.png")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines) + "\n")
    return 0


def _csv(text: str, cast=str) -> tuple:
    return tuple(cast(t) for t in text.split(",") if t)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--records", default=str(RECORDS))
        p.add_argument("--out-md", default=str(REPORT))
        p.add_argument("--figures", default=str(FIGURES))
        if name == "run":
            p.add_argument("--testbeds", type=_csv, default=LEARNED)
            p.add_argument("--solvers", type=_csv, default=SOLVERS)
            p.add_argument("--nfe", type=lambda s: _csv(s, int), default=NFES)
            p.add_argument("--seed-sets", type=lambda s: _csv(s, int), default=SEED_SETS)
            p.add_argument("--variants", type=lambda s: tuple(VARIANTS) if s == "all" else tuple(s.split(";")),
                           default=tuple(VARIANTS), help="'all' or names separated by ';'")
            p.add_argument("--digits-samples", type=int, default=TESTBEDS["digits"][1])
            p.add_argument("--substeps", type=int, default=8, help="trajectory oracle: Heun substeps per interval")
            p.add_argument("--samples", type=int, default=None, help="samples per seed set of every test-bed "
                           "(default: 2000, digits --digits-samples)")
            p.add_argument("--no-report", dest="report", action="store_false")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command == "report":
        return write_report(read_records(Path(args.records)), Path(args.out_md), Path(args.figures))
    unknown = [t for t in args.testbeds if t not in TESTBEDS] + [v for v in args.variants if v not in VARIANTS]
    if unknown:
        print(f"estimator_error: error: unknown {', '.join(unknown)}; test-beds: {', '.join(TESTBEDS)}; "
              f"variants: {'; '.join(VARIANTS)}", file=sys.stderr)
        return 2
    return run_cells(args)


if __name__ == "__main__":
    raise SystemExit(main())
