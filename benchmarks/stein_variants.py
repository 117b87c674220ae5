"""The Stein-family options of issue 16 (all ours) measured against the oracle coefficient.

    OMP_NUM_THREADS=1 python benchmarks/stein_variants.py history    # part 1, ~2 min
    OMP_NUM_THREADS=1 python benchmarks/stein_variants.py estimator  # part 2
    python benchmarks/stein_variants.py report                                           # the markdown only

Part 1 ("history"): DPM-Solver++(2M) steps on the exact aniso32 mixture (float64) with the state x_k on the
exact marginal (x_k = x_star + sigma_k eps) and the solver's history from the true flow: x_{k+1} at
sigma_{k+1} = sigma_k^2 / sigma_{k-1} (the same ratio r as the step) is x_k carried back along the exact
PF-ODE (``oracle.reference_step``, 64 Heun substeps), its data prediction D(x_{k+1}, sigma_{k+1}) the
history entry. Rows: the Stein gamma (batch statistics; exact divergence, and Hutchinson with 5 Gaussian
probes) with the history held constant ("hold", the paper's) and differentiated through the DDIM
transport ("flow", ours) or a Heun back-transport ("flow_heun", ours); "exact flow" (a reference, not an
option): the history's derivative taken
through the exact backward flow (autograd through 16 Heun substeps); the oracle gamma* = E<u, x - D_true(x)>/
E|u|^2. Each +- is the delta-method standard error over the samples; "diff" is the paired difference to the
oracle with its standard error. Cost: time per corrected step and NFE, hold vs flow (Hutchinson, 5 probes).

Part 2 ("estimator"): along real trajectories of the uncorrected base solver (corrector none, float64, EDM grid
to zero, batch 512), at every step each Stein variant's gamma (batch statistics, 5 probes) is compared with
the posterior oracle gamma (same reading, same statistics) at the same state; the table gives the RMS of
(gamma_variant - gamma_oracle) over the steps of 3 seed sets (0-511, 512-1023, 1024-1535), per model, solver and
NFE. Models: exact aniso32 and ring2d mixtures and the learned ring2d MLP (experiment=ring2d_mlp, scored
against the exact ring2d law). Variants are evaluated side by side on the same state (each re-evaluates the
step with autograd; the samples are the base solver's). Writes benchmarks/results/stein_variants.{md,json}.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from steindiff.core import (
    OracleCorrector,
    Schedule,
    SteinCorrector,
    make_solver,
    mixture_preset,
    num_steps_for_nfe,
    sample,
)
from steindiff.core.correctors import Corrector
from steindiff.core.correctors.oracle import reference_step
from steindiff.core.correctors.stein import ratio_standard_error
from steindiff.core.denoiser import CountingDenoiser
from steindiff.core.sampling import _corrected_step, _Step
from steindiff.core.solvers.base import SolverState

OUT = Path(__file__).parent / "results"
JSON = OUT / "stein_variants.json"
COMMANDS = {"history": "OMP_NUM_THREADS=1 python benchmarks/stein_variants.py history",
            "estimator": "OMP_NUM_THREADS=1 python benchmarks/stein_variants.py estimator"}


class _Keep(Corrector):
    """Wraps a corrector and keeps the last step's input, output, context and info."""

    def __init__(self, inner):
        self.inner, self.last = inner, None

    @property
    def requires_grad(self):
        return self.inner.requires_grad

    def differentiates(self, context):
        return self.inner.differentiates(context)

    def correct(self, x, output, context):
        x_next, info = self.inner.correct(x, output, context)
        self.last = (x.detach(), output, context, info)
        return x_next, info


def _ratio(num: torch.Tensor, den: torch.Tensor) -> tuple[float, float]:
    num, den = num.detach(), den.detach()
    gamma = num.mean() / den.mean()
    se = ratio_standard_error(num, den, torch.zeros(len(num), dtype=torch.int64), gamma[None])
    return float(gamma), float(se[0])


# ---- part 1: the history -------------------------------------------------------------------------
def _history_step(data, x, sigma, sigma_next, sigma_prev, m1, corrector):
    """One corrected 2M step at x with history (sigma_prev, m1): (x, output, context, info, nfe, seconds)."""
    counter = CountingDenoiser(data)
    state = SolverState(index=1, num_steps=10, history=((sigma_prev, m1),))
    keep = _Keep(corrector)
    step = _Step(make_solver("dpmpp_2m"), counter, sigma, sigma_next, state, None)
    kw = dict(index=1, num_steps=10, alpha=1.0, alpha_next=1.0, process=None, labels=None, seeds=None,
              counter=counter)
    start = time.perf_counter()
    with torch.no_grad():
        _corrected_step(step, x, keep, (), kw)
    seconds = time.perf_counter() - start
    return (*keep.last, counter.calls, seconds)


def _stein_rows(corrector, x, output, context):
    """Per-row Stein numerator sigma^2 div u and |u|^2 (VE, target data) from the corrector's own divergence."""
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        out = context.step_fn(xg)
        _, _, div_t, _ = corrector._divergence_of_target(xg, out, context, None)
    u = x - output.data_prediction.detach()
    return context.sigma**2 * (x[0].numel() - div_t), u.pow(2).sum(1)


def part_history(n: int = 20000) -> dict:
    data = mixture_preset("aniso32")
    rows = []
    for k, (sigma, sigma_next) in enumerate(((1.0, 0.3), (0.3, 0.09))):
        sigma_prev = sigma**2 / sigma_next
        x_star, x = data.noisy_sample(n, sigma, generator=torch.Generator().manual_seed(100 + k))
        with torch.no_grad():
            x_prev = reference_step(data, x, sigma, sigma_prev, 64)
            back = reference_step(data, x_prev, sigma_prev, sigma, 64)
            m1 = data(x_prev, torch.full((n,), sigma_prev, dtype=x.dtype))
        roundtrip = float((back - x).norm(dim=1).max())
        x, output, context, _, _, _ = _history_step(data, x, sigma, sigma_next, sigma_prev, m1, SteinCorrector())
        u = x - output.data_prediction
        d_true = data(x, torch.full((n,), sigma, dtype=x.dtype))
        oracle_num, den = (u * (x - d_true)).sum(1), u.pow(2).sum(1)
        result = {"sigma": sigma, "sigma_next": sigma_next, "sigma_prev": sigma_prev, "roundtrip": roundtrip,
                  "oracle": _ratio(oracle_num, den), "rows": {}}
        for name, kw in (("hold, exact div", {"divergence": "exact"}),
                         ("flow, exact div", {"divergence": "exact", "history": "flow"}),
                         ("flow_heun, exact div", {"divergence": "exact", "history": "flow_heun"}),
                         ("hold, Hutchinson 5", {}), ("flow, Hutchinson 5", {"history": "flow"})):
            corrector = SteinCorrector(**kw)
            num, den_s = _stein_rows(corrector, x, output, context)
            result["rows"][name] = {"gamma": _ratio(num, den_s), "diff": _ratio(num - oracle_num, den_s)}
        # the reference: the history's derivative through the exact backward flow (autograd through Heun substeps)
        r0 = (math.log(sigma_prev) - math.log(sigma)) / (math.log(sigma) - math.log(sigma_next))  # h_prev / h
        div_m0 = data.divergence(x, torch.full((n,), sigma, dtype=x.dtype))
        div_m1 = torch.zeros(n, dtype=x.dtype)
        for lo in range(0, n, 5000):
            with torch.enable_grad():
                xg = x[lo:lo + 5000].clone().requires_grad_(True)
                m1g = data(reference_step(data, xg, sigma, sigma_prev, 16), torch.full((len(xg),), sigma_prev,
                                                                                      dtype=x.dtype))
                for i in range(x.shape[1]):
                    (g,) = torch.autograd.grad(m1g[:, i].sum(), xg, retain_graph=i < x.shape[1] - 1)
                    div_m1[lo:lo + 5000] += g[:, i].detach()
        div_t = (1 + 0.5 / r0) * div_m0 - 0.5 / r0 * div_m1
        num = sigma**2 * (x.shape[1] - div_t)
        result["rows"]["exact flow (reference)"] = {"gamma": _ratio(num, den), "diff": _ratio(num - oracle_num, den)}
        # cost: a corrected step, hold vs flow (Hutchinson, 5 probes, batch 2000), best of 5
        for name, kw in (("hold", {}), ("flow", {"history": "flow"}), ("flow_heun", {"history": "flow_heun"})):
            times, nfe = [], None
            for _ in range(5):
                *_, nfe, seconds = _history_step(data, x[:2000], sigma, sigma_next, sigma_prev, m1[:2000],
                                                 SteinCorrector(**kw))
                times.append(seconds)
            result[f"cost_{name}"] = {"seconds": min(times), "nfe": nfe}
        rows.append(result)
        print(json.dumps(result), flush=True)
    return {"n": n, "rows": rows}


def history_markdown(part: dict) -> list[str]:
    lines = [f"## Part 1: history held vs differentiated through the flow (DPM-Solver++(2M), aniso32 exact, "
             f"{part['n']} on-marginal samples, history from the true flow)", "",
             f"Command: `{COMMANDS['history']}`", "",
             "| step | oracle gamma* | variant | Stein gamma | Stein - oracle (paired) |", "|---|---|---|---|---|"]
    for row in part["rows"]:
        step = f"{row['sigma']:g} -> {row['sigma_next']:g} (history at {row['sigma_prev']:.3g})"
        oracle = "{:.4f} +- {:.4f}".format(*row["oracle"])
        for name, cell in row["rows"].items():
            lines.append(f"| {step} | {oracle} | {name} | {cell['gamma'][0]:.4f} +- {cell['gamma'][1]:.4f} | "
                         f"{cell['diff'][0]:+.4f} +- {cell['diff'][1]:.4f} |")
    lines += ["", "Cost of one corrected step (batch 2000, Hutchinson 5 probes, best of 5, one thread):", "",
              "| step | hold: time / NFE | flow: time / NFE (ratio) | flow_heun: time / NFE (ratio) |",
              "|---|---|---|---|"]
    for row in part["rows"]:
        h, f, fh = row["cost_hold"], row["cost_flow"], row.get("cost_flow_heun")
        cells = [f"{c['seconds'] * 1e3:.1f} ms / {c['nfe']} ({c['seconds'] / h['seconds']:.2f}x)" if c else "-"
                 for c in (f, fh)]
        lines.append(f"| {row['sigma']:g} -> {row['sigma_next']:g} | {h['seconds'] * 1e3:.1f} ms / {h['nfe']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Back-flow round trip (x_k -> sigma_prev -> sigma_k, 64 Heun substeps each way): max error "
              + ", ".join(f"{row['roundtrip']:.1e}" for row in part["rows"]) + ".", ""]
    return lines


# ---- part 2: the estimator's error along trajectories ------------------------------------------------
VARIANTS = {  # name -> (target, SteinCorrector options)
    "data: gaussian (paper's probes)": ("data", {}),
    "data: rademacher": ("data", {"probes": "rademacher"}),
    "data: orthogonal": ("data", {"probes": "orthogonal"}),
    "data: shrinkage": ("data", {"shrinkage": True}),
    "data: smoothing 0.5": ("data", {"smoothing": 0.5}),
    "data: flow (2M)": ("data", {"history": "flow"}),
    "data: exact div": ("data", {"divergence": "exact"}),
    "state: gaussian": ("state", {}),
    "state: exact_terms": ("state", {"exact_terms": True}),
    "state: exact_terms + orthogonal": ("state", {"exact_terms": True, "probes": "orthogonal"}),
    "state: exact div": ("state", {"divergence": "exact"}),
}


class _Compare(Corrector):
    """Leaves the base solver's step alone and records, at each step, each variant's gamma and the oracle's."""

    requires_grad = False

    def __init__(self, data, solver_name: str):
        self.variants = {name: SteinCorrector(target=t, **kw) for name, (t, kw) in VARIANTS.items()
                         if not (kw.get("history") == "flow" and solver_name != "dpmpp_2m")}
        self.oracles = {t: OracleCorrector(data=data, target=t) for t in ("data", "state")}
        self.records = []

    def correct(self, x, output, context):
        with context.counter.paused():
            oracle = {t: float(o.gamma(x, output, context)[0]) for t, o in self.oracles.items()}
            row = {"step": context.index, "sigma": context.sigma, "oracle_data": oracle["data"],
                   "oracle_state": oracle["state"]}
            for name, corrector in self.variants.items():
                with torch.enable_grad():
                    xg = x.detach().clone().requires_grad_(True)
                    out = context.step_fn(xg)
                    _, info = corrector.correct(xg, out, context)
                row[name] = info["gamma"]
        self.records.append(row)
        return output.x_next.detach(), {}


def _models():
    from steindiff.build import build_run, compose_sample_config

    mlp = build_run(compose_sample_config(["experiment=ring2d_mlp"]), metrics=False).denoiser
    return {"aniso32": (mixture_preset("aniso32"), mixture_preset("aniso32")),
            "ring2d": (mixture_preset("ring2d"), mixture_preset("ring2d")),
            "ring2d_mlp": (mlp, mixture_preset("ring2d"))}


def part_estimator(batch: int = 512) -> dict:
    cells = []
    for model_name, (denoiser, data) in _models().items():
        for solver_name in ("euler", "heun", "dpmpp_2m"):
            for nfe in (6, 10):
                solver = make_solver(solver_name)
                grid = Schedule("edm", final_step="zero").grid(num_steps_for_nfe(solver, nfe, "zero"))
                records, start = [], time.time()
                for s in range(3):
                    compare = _Compare(data, solver_name)
                    result = sample(denoiser, grid, solver, compare, seeds=range(s * batch, (s + 1) * batch),
                                    shape=(data.dim,), dtype=torch.float64)
                    records += [{**r, "seed_set": s} for r in compare.records]
                cell = {"model": model_name, "solver": solver_name, "nfe": result.nfe, "records": records}
                _summarise(cell)
                cells.append(cell)
                print(model_name, solver_name, result.nfe, f"{time.time() - start:.0f}s",
                      {k: (None if v is None else round(v, 4)) for k, v in cell["rms"].items()}, flush=True)
    return {"batch": batch, "cells": cells}


def _summarise(cell: dict) -> None:
    """RMS and median |.| of (variant - oracle) and RMS of (variant - the same reading's exact-divergence Stein)."""
    for key in ("rms", "median", "noise"):
        cell[key] = {}
    records = cell["records"]
    for name, (target, _) in VARIANTS.items():
        errs = [e for e in (r[name] - r[f"oracle_{target}"] for r in records if name in r) if math.isfinite(e)]
        noise = [e for e in (r[name] - r[f"{target}: exact div"] for r in records if name in r) if math.isfinite(e)]
        cell["rms"][name] = math.sqrt(statistics.fmean(e * e for e in errs)) if errs else None
        cell["median"][name] = statistics.median(abs(e) for e in errs) if errs else None
        cell["noise"][name] = math.sqrt(statistics.fmean(e * e for e in noise)) if noise else None


def _table(part: dict, key: str, names: list[str], title: str) -> list[str]:
    lines = [title, "", "| model | solver | NFE | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for c in part["cells"]:
        vals = " | ".join("-" if c[key].get(n) is None else f"{c[key][n]:.3g}" for n in names)
        lines.append(f"| {c['model']} | {c['solver']} | {c['nfe']} | {vals} |")
    lines += ["", f"Geometric mean over cells of ({key} of the variant) / ({key} of the same reading's Gaussian "
              "baseline):", "", "| variant | ratio | cells |", "|---|---|---|"]
    for n in names:
        base = "data: gaussian (paper's probes)" if n.startswith("data") else "state: gaussian"
        ratios = [c[key][n] / c[key][base] for c in part["cells"] if c[key].get(n) and c[key].get(base)]
        if ratios:
            lines.append(f"| {n} | {math.exp(statistics.fmean(math.log(r) for r in ratios)):.3f} | {len(ratios)} |")
    return lines + [""]


def estimator_markdown(part: dict) -> list[str]:
    for cell in part["cells"]:
        _summarise(cell)
    names = list(VARIANTS)
    lines = ["## Part 2: error of the Stein estimate against the posterior oracle along base-solver trajectories", "",
             f"Command: `{COMMANDS['estimator']}`", "",
             f"Batch statistics, 5 probes, batch {part['batch']}, 3 seed sets; data-reading variants against the "
             "data oracle, state-reading ones against the state oracle. \"exact div\" is the estimator without "
             "probe noise (the floor of what probe-side variance reduction can reach).", ""]
    lines += _table(part, "rms", names, "### RMS over steps and seed sets of (gamma_variant - gamma_oracle)")
    lines += _table(part, "median", names, "### Median over steps and seed sets of |gamma_variant - gamma_oracle|")
    lines += _table(part, "noise", [n for n in names if not n.endswith("exact div")],
                    "### RMS of (gamma_variant - gamma with the exact divergence, same reading): the probe noise")
    return lines


def write_report(results: dict) -> None:
    lines = ["# Stein-family options (issue 16): measured", "",
             " ".join(__doc__.split("\n\n")[2].split()), "", " ".join(__doc__.split("\n\n")[3].split()), ""]
    if "history" in results:
        lines += history_markdown(results["history"])
    if "estimator" in results:
        lines += estimator_markdown(results["estimator"])
    OUT.mkdir(exist_ok=True)
    (OUT / "stein_variants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    parts = argv or ["history", "estimator"]
    results = json.loads(JSON.read_text()) if JSON.exists() else {}
    for part in parts:
        if part == "history":
            results["history"] = part_history()
        elif part == "estimator":
            results["estimator"] = part_estimator()
        elif part != "report":
            raise SystemExit(f"unknown part {part!r}; accepted: history, estimator, report")
        OUT.mkdir(exist_ok=True)
        JSON.write_text(json.dumps(results) + "\n")
    write_report(results)


if __name__ == "__main__":
    main(sys.argv[1:])
