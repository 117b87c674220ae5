"""The cost moonshot: the Stein coefficient at <= 1.25x the uncorrected run's wall time, at the quality of the
paper's estimate (Hutchinson, M = 5 Gaussian probes, statistics from the whole batch).

    python benchmarks/stein_moonshot.py [--quick]

Models: the digits U-Net (batch 256) and the aniso32 mixture (temperature 0.5, batch 2000); DPM-Solver++(2M),
10 steps on the EDM grid, target "data", statistics "batch", float32, one torch thread, CPU. Candidates
(``SteinCorrector`` options): the divergence estimator (hutchinson = Gaussian probes, rademacher,
finite_difference with Gaussian probes), M in {1, 2, 5} probes, statistics from all rows or from a subset of
k in {8, 16, 32, 64} rows (one extra step evaluation on those rows), and for a subset where E<u, x> and E|u|^2
come from: the subset rows (``subset_moments="subset"``, the existing behaviour) or every row
(``subset_moments="all"``, ours, added for this benchmark; E[div u] still from the subset).

Quality, at the same states: the reference trajectory (hutchinson, M = 5, all rows, probe_seed 0) is run once
under ``SameStates``, a wrapper corrector that at every step, before the reference corrects, asks every variant
for its gamma from the same state and step context (the step re-evaluated with autograd where the variant
differentiates it; these calls are kept out of the NFE count). Variants use probe_seed 1, 2, 3. Error =
|gamma_variant - gamma_ref| over 10 steps x 3 seeds: median and max. Scale: the same numbers for the reference's
own setting with probe_seed 1, 2, 3 ("M = 5 spread": how far two M = 5 estimates with independent probes lie
apart). Diagnostics, not candidates (no time): the exact divergence on the subset rows (the error left when the
probes are perfect: the rows' sampling error), on the mixture also on all rows.

Cost: candidates as the run's corrector, interleaved with the uncorrected run, ratio of medians. The quality pass
runs first and warms every code path; then ``ROUNDS`` rounds of the timed candidates, more rounds of those under
1.6x (the contenders), and more again of those between 1.0x and 1.4x (the finalists). Timed: all-rows candidates
and subsets with moments "all"; a subset with moments "subset" makes the same denoiser calls and VJPs as its
"all" twin ("all" adds two reductions over the batch), so it is shown with its twin's time (marked "=") and timed
directly only for k = 8, M = 1 as a check. Also timed, for scale: the physical floor of the cheapest subset path
(the step on 8 rows with autograd and one VJP; ``stein_floor.Floor``).
Writes benchmarks/results/stein_moonshot.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from steindiff.core import Corrector, SteinCorrector, make_solver, sample
from steindiff.core.schedules import Schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stein_floor import Floor, model  # noqa: E402  (the same models and floors as the floor benchmark)

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.25
REFERENCE = {"divergence": "hutchinson", "num_probes": 5}
SEEDS = (1, 2, 3)  # the variants' probe seeds; the reference uses 0
MODELS = {"unet": 256, "mixture": 2000}
QUICK_BATCH = {"unet": 48, "mixture": 200}  # --quick: a smoke test of the script
# rounds of all timed candidates, of the contenders (< 1.6x), of the finalists (1.0x-1.4x); the mixture's are cheap
ROUNDS = {"unet": (2, 4, 8), "mixture": (10, 10, 20)}
FLOOR = "floor: 8-row fwd+graph, 1 VJP"
SPREAD = "hutchinson M=5 all rows"  # the candidate that is the reference's setting: its error is the M = 5 spread


def candidates(quick: bool) -> dict[str, dict]:
    """name -> SteinCorrector options (without probe_seed): all rows, and subsets with either moments."""
    probes, subsets = ((1, 5), (8, 32)) if quick else ((1, 2, 5), (8, 16, 32, 64))
    out = {f"{d} M={m} all rows": {"divergence": d, "num_probes": m}
           for d in ("hutchinson", "rademacher") for m in probes}
    for moments in ("all", "subset"):
        for k in subsets:
            for d in ("hutchinson", "rademacher", "finite_difference"):
                for m in probes:
                    out[name_of(d, m, k, moments)] = {"divergence": d, "num_probes": m, "subset": k,
                                                      "subset_moments": moments}
    return out


def name_of(divergence: str, probes: int | None, k: int, moments: str) -> str:
    m = "" if probes is None else f" M={probes}"
    return f"{divergence}{m} subset {k}" + (", moments all (ours)" if moments == "all" else "")


def timed(options: dict[str, dict]) -> dict[str, dict]:
    """The candidates whose time is measured: all rows, the subsets with moments "all", and as a check the
    k = 8, M = 1 subsets with moments "subset" (the same calls as their "all" twins)."""
    return {name: o for name, o in options.items() if o.get("subset_moments", "all") == "all"
            or (o["subset"] == 8 and o["num_probes"] == 1)}


def diagnostics(name: str, quick: bool) -> dict[str, dict]:
    """Deterministic estimates shown for scale, never timed: the exact divergence on the subset rows (and, on the
    mixture, on all rows)."""
    out = {name_of("exact", None, k, moments) + " (diagnostic)": {"divergence": "exact", "subset": k,
                                                                  "subset_moments": moments}
           for k in (8, 32 if quick else 64) for moments in ("all", "subset")}
    if name == "mixture":
        out["exact all rows (diagnostic)"] = {"divergence": "exact"}
    return out


class SameStates(Corrector):
    """The reference corrector; before it acts, every variant's gamma at the same state and step context."""

    def __init__(self, reference: SteinCorrector, variants: dict[tuple[str, int], SteinCorrector]):
        self.reference, self.variants = reference, variants
        self.infos = {key: [] for key in variants}
        self.reference_infos, self.steps = [], []

    @property
    def requires_grad(self) -> bool:
        return self.reference.requires_grad

    def differentiates(self, context) -> bool:
        return self.reference.differentiates(context)

    def correct(self, x, output, context):
        with context.counter.paused():
            for key, variant in self.variants.items():
                self.infos[key].append(variant_info(variant, x, output, context))
        x_next, info = self.reference.correct(x, output, context)
        self.reference_infos.append(info)
        self.steps.append({"sigma": context.sigma, "alpha": context.alpha})
        return x_next, info


def variant_info(variant: SteinCorrector, x, output, context) -> dict:
    """The variant's trace numbers (gamma, s_xu, s_uu, s_div) at this state; its next state is dropped."""
    if variant.differentiates(context):  # its own graph of the same step (the reference's is freed by its VJPs)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            output = context.step_fn(x)
    _, info = variant.correct(x, output, context)
    return {k: info[k] for k in ("gamma", "s_xu", "s_uu", "s_div")}


def run_once(denoiser, batch: int, corrector) -> float:
    start = time.perf_counter()
    sample(denoiser, Schedule("edm").grid(10), make_solver("dpmpp_2m"), corrector, seeds=range(batch),
           shape=denoiser.spec.shape)
    return time.perf_counter() - start


def quality(denoiser, batch: int, options: dict[str, dict]) -> dict[str, dict]:
    """Per variant: |gamma - gamma_ref| per step and seed, from one reference trajectory (see the docstring)."""
    seeds = {name: (0,) if "exact" in name else SEEDS for name in options}
    variants = {(name, s): SteinCorrector(probe_seed=s, **options[name]) for name in options for s in seeds[name]}
    probe = SameStates(SteinCorrector(probe_seed=0, **REFERENCE), variants)
    sample(denoiser, Schedule("edm").grid(10), make_solver("dpmpp_2m"), probe, seeds=range(batch),
           shape=denoiser.spec.shape)
    ref = [info["gamma"] for info in probe.reference_infos]
    out = {"reference gamma": ref, "sigmas": [step["sigma"] for step in probe.steps]}
    for name in options:
        gammas = {s: [info["gamma"] for info in probe.infos[(name, s)]] for s in seeds[name]}
        errors = [abs(g - r) for s in seeds[name] for g, r in zip(gammas[s], ref)]
        out[name] = {"error_median": statistics.median(errors), "error_max": max(errors), "gammas": gammas}
    return out


def cost(denoiser, batch: int, options: dict[str, dict], rounds: tuple[int, int, int]) -> dict[str, dict]:
    """Time of each candidate (and of FLOOR) against the uncorrected run: interleaved rounds, ratio of medians."""
    fixes = {name: SteinCorrector(**opts) for name, opts in options.items()}
    fixes[FLOOR] = Floor(vjps=1, subset=8)
    times = {name: [] for name in ["none", *fixes]}

    def one_round(names):
        for name in ["none", *names]:  # interleaved: the machine's load hits every run alike
            times[name].append(run_once(denoiser, batch, fixes.get(name)))

    def ratio(name):
        return statistics.median(times[name]) / statistics.median(times["none"])

    everyone, contenders, finalists = rounds
    for _ in range(everyone):
        one_round(list(fixes))
    chosen = [name for name in fixes if ratio(name) < 1.6]
    for _ in range(contenders):
        one_round(chosen)
    chosen = [name for name in fixes if 1.0 <= ratio(name) <= 1.4 or name == FLOOR]
    for _ in range(finalists):
        one_round(chosen)
    return {name: {"median_s": statistics.median(times[name]), "x_none": ratio(name), "times_s": times[name]}
            for name in times}


def measure(name: str, quick: bool) -> dict:
    torch.set_num_threads(1)
    denoiser, batch = model(name), (QUICK_BATCH if quick else MODELS)[name]
    options = candidates(quick)
    start = time.perf_counter()
    q = quality(denoiser, batch, {**options, **diagnostics(name, quick)})
    print(f"{name}: quality pass {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    c = cost(denoiser, batch, timed(options), (1, 0, 0) if quick else ROUNDS[name])
    print(f"{name}: timing {time.perf_counter() - start:.0f} s", flush=True)
    spread = q[SPREAD]["error_median"]
    rows = []
    for variant, opts in {**options, **diagnostics(name, quick)}.items():
        twin = variant if variant in c or "exact" in variant else name_of(
            opts["divergence"], opts["num_probes"], opts["subset"], "all")
        t = c.get(twin)
        rows.append({"variant": variant, "options": opts, **q[variant], "x_none": t["x_none"] if t else None,
                     "median_s": t["median_s"] if t else None, "time_of": twin if t else None,
                     "vs_spread": q[variant]["error_median"] / spread, "rounds": len(t["times_s"]) if t else 0})
    return {"model": name, "batch": batch, "none_s": c["none"]["median_s"], "reference_gamma": q["reference gamma"],
            "sigmas": q["sigmas"], "spread_median": spread, "rows": rows, "floor": {"name": FLOOR, **c[FLOOR]},
            "rounds": (1, 0, 0) if quick else ROUNDS[name]}


def verdict(result: dict) -> list[str]:
    """The cheapest candidate at <= TARGET, the most accurate one at <= TARGET, the cheapest near the M = 5 spread."""
    timed_rows = [r for r in result["rows"] if r["time_of"] == r["variant"]]
    fast = [r for r in timed_rows if r["x_none"] <= TARGET]
    lines = []

    def say(label, r):
        lines.append(f"- {label}: **{r['variant']}**, {r['x_none']:.2f}x none, error median {r['error_median']:.2g} "
                     f"(max {r['error_max']:.2g}) = {r['vs_spread']:.2f}x the M = 5 spread")

    if fast:
        say(f"cheapest at <= {TARGET}x", min(fast, key=lambda r: r["x_none"]))
        say(f"most accurate at <= {TARGET}x", min(fast, key=lambda r: r["error_median"]))
    else:
        say(f"none reaches {TARGET}x; the fastest", min(timed_rows, key=lambda r: r["x_none"]))
    for bound in (1.0, 1.5, 10.0):
        good = [r for r in timed_rows if r["vs_spread"] <= bound]
        if good:
            say(f"cheapest within {bound}x the M = 5 spread", min(good, key=lambda r: r["x_none"]))
    return lines


def table(results: list[dict], command: str) -> str:
    lines = [f"Command: `{command}` (DPM-Solver++(2M), 10 steps, target data, statistics batch, float32, 1 thread, "
             "CPU). Time: ratio of medians against the uncorrected run, interleaved rounds (all timed candidates, then "
             "more for those under 1.6x, then more for those between 1.0x and 1.4x; counts below); '= t' marks a "
             "subset with moments 'subset' shown with the time of its 'moments all' twin (the same calls). Error: "
             "|gamma - gamma_ref| at the reference trajectory's states, gamma_ref = hutchinson M = 5 on all rows "
             "(probe seed 0), over 10 steps x probe seeds 1, 2, 3. 'x spread' = median error / the median error of "
             "hutchinson M = 5 on all rows with probe seeds 1, 2, 3 (the M = 5 estimate's own spread). The reference "
             "carries its own probe noise, so an estimate without any scores below 1x (exact divergence, all rows, "
             "on the mixture: see its row).", ""]
    for res in results:
        floor = res["floor"]
        lines += [f"## {res['model']}, batch {res['batch']} (uncorrected run {res['none_s']:.3f} s; rounds "
                  f"{'/'.join(map(str, res['rounds']))})", "", *verdict(res),
                  f"- for scale, the physical floor of the cheapest subset path ({floor['name']}, no probes, no "
                  f"statistics): {floor['x_none']:.2f}x none", "",
                  "| variant | x none | error median | error max | x spread |", "|---|---|---|---|---|"]
        for r in sorted(res["rows"], key=lambda r: (r["x_none"] is None, r["x_none"] or 0, r["error_median"])):
            time_ = "-" if r["x_none"] is None else f"{'= ' if r['time_of'] != r['variant'] else ''}{r['x_none']:.2f}"
            name = r["variant"] + (" (the M = 5 spread)" if r["variant"] == SPREAD else "")
            lines.append(f"| {name} | {time_} | {r['error_median']:.2g} | {r['error_max']:.2g} | "
                         f"{r['vs_spread']:.2f} |")
        lines += ["", "sigma per step: " + ", ".join(f"{g:.3g}" for g in res["sigmas"]),
                  "gamma_ref per step: " + ", ".join(f"{g:.4f}" for g in res["reference_gamma"]), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches and fewer candidates, 1 round, no files")
    args = parser.parse_args(argv)
    results = [measure(name, args.quick) for name in MODELS]
    md = table(results, "python benchmarks/stein_moonshot.py" + (" --quick" if args.quick else ""))
    print(md)
    if not args.quick:  # --quick is a smoke test: it prints and writes nothing
        out = ROOT / "benchmarks" / "results"
        (out / "stein_moonshot.md").write_text(md)
        (out / "stein_moonshot.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
