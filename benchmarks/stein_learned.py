"""SteinDiff on the learned denoisers trained here: digits U-Net (digits-FID) and ring2d MLP (energy distance).

    python benchmarks/stein_learned.py            # ~16 min on 2 CPU cores (one seed set, no error bars)

The first ablation (benchmarks/stein_ablation.py) used exact and artificially degraded mixture
denoisers; this one uses networks trained with the EDM loss (docs/training.md), the setting of the
paper's claim. Solvers Euler, Heun, DPM-Solver++(2M) at NFE budgets 4, 6, 8, 10 (Heun 3, 5, 7, 9), EDM
grid to zero, float32, 1000 seeds (0-999) in batches of 500 (the Stein batch statistics see 500 rows).
Correctors: none, Stein as the paper reads it (state target, batch statistics, gamma >= 0), and
`stein_clipped` (data target, batch, gamma in [0.5, 1.5]; the first ablation's best). Scores: digits-FID
against the held-out test split (297 digits; 1000 real training digits score 20.3 there), energy
distance to 4000 exact ring2d samples. Writes benchmarks/results/stein_learned.{md,json}.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from steindiff.core import SteinCorrector, build_sigmas, energy_distance, make_solver, mixture_preset, num_steps_for_nfe
from steindiff.core import sample as sample_ode
from steindiff.datasets import digits_images
from steindiff.metrics.digits import digits_fid
from steindiff.models.checkpoint import load_denoiser

OUT = Path(__file__).parent / "results"
SETTINGS = {
    "none": None,
    "state/batch (paper)": dict(target="state", statistics="batch", gamma_min=0.0),
    "data/batch clip[.5,1.5]": dict(target="data", statistics="batch", gamma_min=0.5, gamma_max=1.5),
}
SOLVERS = ["euler", "heun", "dpmpp_2m"]
NFES = [4, 6, 8, 10]
SEEDS = list(range(1000))


def generate(denoiser, shape, solver_name: str, nfe: int, setting: dict | None) -> torch.Tensor:
    solver = make_solver(solver_name)
    sigmas = build_sigmas("edm", num_steps_for_nfe(solver, nfe, "zero"))
    corrector = SteinCorrector(**setting) if setting is not None else None
    batches = [sample_ode(denoiser, sigmas, solver, corrector, seeds=SEEDS[i:i + 500], shape=shape).samples
               for i in range(0, len(SEEDS), 500)]
    return torch.cat(batches).detach()


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    test_digits, ring = digits_images("test"), mixture_preset("ring2d")
    reference = ring.sample(4000, generator=torch.Generator().manual_seed(123)).float()
    models = {
        "digits U-Net (digits-FID vs test)": (load_denoiser("digits_unet.safetensors"), (1, 8, 8),
                                              lambda x: digits_fid(x.clamp(-1, 1), test_digits)),
        "ring2d MLP (energy distance)": (load_denoiser("ring2d_mlp.safetensors"), (2,),
                                         lambda x: float(energy_distance(x, reference))),
    }
    rows = []
    t0 = time.perf_counter()
    for model_name, (denoiser, shape, score) in models.items():
        for solver_name in SOLVERS:
            for nfe in NFES:
                row = {"model": model_name, "solver": solver_name, "nfe_budget": nfe}
                for name, setting in SETTINGS.items():
                    x = generate(denoiser, shape, solver_name, nfe, setting)
                    finite = bool(torch.isfinite(x).all())
                    row[name] = score(x) if finite else float("nan")
                rows.append(row)
                print(f"{model_name:36s} {solver_name:9s} NFE {nfe:2d}  " +
                      "  ".join(f"{k}: {row[k]:.4g}" for k in SETTINGS) + f"   ({time.perf_counter() - t0:.0f} s)")
    OUT.mkdir(exist_ok=True)
    (OUT / "stein_learned.json").write_text(json.dumps(rows, indent=1))
    lines = ["# SteinDiff on the learned denoisers", "", "`python benchmarks/stein_learned.py` (1000 seeds, EDM grid "
             "to zero, float32, batches of 500; lower is better; Heun measures NFE 3/5/7/9 for budgets 4/6/8/10)", ""]
    for model_name in models:
        lines += [f"## {model_name}", "", "| solver | NFE budget | " + " | ".join(SETTINGS) + " |",
                  "|---|---|" + "---|" * len(SETTINGS)]
        for r in rows:
            if r["model"] == model_name:
                lines.append(f"| {r['solver']} | {r['nfe_budget']} | " + " | ".join(f"{r[k]:.4g}" for k in SETTINGS)
                             + " |")
        lines.append("")
    (OUT / "stein_learned.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
