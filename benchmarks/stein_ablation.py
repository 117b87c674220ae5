"""First SteinDiff ablation on the exact mixture test-bed.

    python benchmarks/stein_ablation.py [--quick]

For each preset (ring2d, aniso32), denoiser (exact; "sharp" = posterior temperature 0.5;
"overshoot" = residual scale 1.2), solver (euler, heun, dpmpp_2m) and NFE budget (4, 6, 8, 10;
EDM grid, final step to zero), it samples 1000 seeds per seed set (3 sets) uncorrected and
corrected under the main switch settings, and measures the energy distance to 4000 fresh data
samples: mean and standard deviation over the seed sets. Writes
benchmarks/results/stein_ablation.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from steindiff.core import (
    SteinCorrector,
    build_sigmas,
    energy_distance,
    make_solver,
    mixture_preset,
    num_steps_for_nfe,
    sample,
)

DENOISERS = {"exact": {}, "sharp": {"temperature": 0.5}, "overshoot": {"residual_scale": 1.2}}
SETTINGS = {
    "none": None,
    "state/batch (paper)": dict(target="state", statistics="batch", gamma_min=0.0),
    "state/batch clip[0,2]": dict(target="state", statistics="batch", gamma_min=0.0, gamma_max=2.0),
    "data/batch": dict(target="data", statistics="batch", gamma_min=0.0),
    "data/batch clip[.5,1.5]": dict(target="data", statistics="batch", gamma_min=0.5, gamma_max=1.5),
    "data/group16 clip[.5,1.5]": dict(target="data", statistics="group", group_size=16, gamma_min=0.5,
                                      gamma_max=1.5),
    "data/sample clip[.5,1.5]": dict(target="data", statistics="sample", gamma_min=0.5, gamma_max=1.5),
}
SOLVERS = ["euler", "heun", "dpmpp_2m"]
NFES = [4, 6, 8, 10]


def run(quick: bool) -> dict:
    n = 300 if quick else 1000
    presets = ["ring2d"] if quick else ["ring2d", "aniso32"]
    seed_sets = [list(range(k * n, (k + 1) * n)) for k in range(3)]
    rows = []
    t0 = time.perf_counter()
    for preset in presets:
        truth = mixture_preset(preset)
        fresh = truth.sample(4000, generator=torch.Generator().manual_seed(123456))
        for dname, knobs in DENOISERS.items():
            data = mixture_preset(preset, **knobs)
            for solver_name in SOLVERS:
                for nfe in NFES:
                    solver = make_solver(solver_name)
                    steps = num_steps_for_nfe(solver, nfe, "zero")
                    sigmas = build_sigmas("edm", steps, "zero")
                    for setting, options in SETTINGS.items():
                        corrector = None if options is None else SteinCorrector(**options)
                        values, gammas, fallbacks = [], [], 0
                        for seeds in seed_sets:
                            res = sample(data, sigmas, make_solver(solver_name), corrector, seeds=seeds,
                                         shape=(data.dim,), batch_size=n)
                            x = res.samples.double()
                            ok = bool(torch.isfinite(x).all())
                            values.append(energy_distance(x, fresh) if ok else float("inf"))
                            gammas.append([t.get("gamma", 1.0) for t in res.trace])
                            fallbacks += int(sum(t.get("fallback", 0.0) for t in res.trace))
                        v = torch.tensor(values)
                        rows.append({"preset": preset, "denoiser": dname, "solver": solver_name, "nfe_budget": nfe,
                                     "nfe": res.nfe, "steps": steps, "setting": setting,
                                     "energy_distance": values, "mean": float(v.mean()),
                                     "std": float(v.std()) if bool(torch.isfinite(v).all()) else float("nan"),
                                     "gamma_per_step": gammas[0], "fallbacks": fallbacks})
            print(f"  {preset}/{dname} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"samples_per_set": n, "seed_sets": 3, "settings": {k: v for k, v in SETTINGS.items()},
            "rows": rows, "wall_s": time.perf_counter() - t0}


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [f"Energy distance to fresh data (mean ± std over 3 seed sets of {result['samples_per_set']}); "
             "EDM grid, final step to zero; measured NFE in the header.", ""]
    keys = sorted({(r["preset"], r["denoiser"], r["solver"]) for r in rows},
                  key=lambda k: (k[0], list(DENOISERS).index(k[1]), SOLVERS.index(k[2])))
    for preset, dname, solver in keys:
        sub = [r for r in rows if (r["preset"], r["denoiser"], r["solver"]) == (preset, dname, solver)]
        nfes = sorted({r["nfe_budget"] for r in sub})
        measured = {r["nfe_budget"]: r["nfe"] for r in sub}
        lines.append(f"### {preset}, {dname} denoiser, {solver}")
        lines.append("| setting | " + " | ".join(f"NFE {measured[n]}" for n in nfes) + " |")
        lines.append("|---|" + "---|" * len(nfes))
        base = {r["nfe_budget"]: r["mean"] for r in sub if r["setting"] == "none"}
        for setting in SETTINGS:
            cells = []
            for n in nfes:
                r = next(r for r in sub if r["setting"] == setting and r["nfe_budget"] == n)
                mark = ""
                if setting != "none" and r["mean"] < base[n] - 2 * r["std"]:
                    mark = " ↓"
                elif setting != "none" and r["mean"] > base[n] + 2 * r["std"]:
                    mark = " ↑"
                cells.append(f"{r['mean']:.4f} ± {r['std']:.4f}{mark}")
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("↓ / ↑: better / worse than uncorrected by more than 2 std of the corrected runs.")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    panels = sorted({(r["preset"], r["denoiser"]) for r in rows}, key=lambda k: (k[0], list(DENOISERS).index(k[1])))
    fig, axes = plt.subplots(len(panels), len(SOLVERS), figsize=(4 * len(SOLVERS), 3 * len(panels)), squeeze=False)
    for i, (preset, dname) in enumerate(panels):
        for j, solver in enumerate(SOLVERS):
            ax = axes[i, j]
            for k, setting in enumerate(SETTINGS):
                sub = sorted((r for r in rows if (r["preset"], r["denoiser"], r["solver"], r["setting"])
                              == (preset, dname, solver, setting)), key=lambda r: r["nfe"])
                ax.errorbar([r["nfe"] for r in sub], [r["mean"] for r in sub], yerr=[r["std"] for r in sub],
                            label=setting, color="k" if setting == "none" else f"C{k}",
                            lw=2 if setting == "none" else 1, marker="o", ms=3, capsize=2)
            ax.set_yscale("log")
            ax.set_title(f"{preset} / {dname} / {solver}", fontsize=9)
            ax.set_xlabel("NFE")
            if j == 0:
                ax.set_ylabel("energy distance")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="ring2d only, 300 samples per set")
    args = parser.parse_args()
    result = run(args.quick)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    stem = "stein_ablation_quick" if args.quick else "stein_ablation"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    md = markdown(result)
    command = f"python benchmarks/stein_ablation.py{' --quick' if args.quick else ''}"
    (out / f"{stem}.md").write_text(f"Command: `{command}`\n\n" + md + "\n")
    plot(result, out / f"{stem}.png")
    print(md)
    print(f"wrote {out / stem}.{{json,md,png}} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
