"""The results study's controls beside the uncorrected solver and Stein, on the mixtures (exact and learned).

    python benchmarks/oracle_controls.py          # about 3 min on one core

Energy distance to 5000 exact samples of the data law, mean +- standard deviation over 3 disjoint seed
sets of 1000 seeds (0-999, 1000-1999, 2000-2999), one batch each, float64, EDM grid to zero, NFE budget
6 (Heun: 5, its budget's largest reachable NFE). Settings: none; the posterior oracle and the trajectory
oracle (ours; data reading, batch statistics, no clip); Stein with the default config (data reading,
batch statistics, Hutchinson with 5 probes, no clip); a constant gamma = 1.05 and epsilon scaling with
lambda = 1.005 (untuned, to show the size of the baselines' effects). Denoisers: the exact ring2d and
aniso32 mixtures and the MLPs trained on them (data law known). Writes benchmarks/results/oracle_controls.{md,json}.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from steindiff.core import (
    ConstantCorrector,
    OracleCorrector,
    Schedule,
    SteinCorrector,
    energy_distance,
    epsilon_scaled,
    make_solver,
    mixture_preset,
    num_steps_for_nfe,
    sample,
)
from steindiff.models.checkpoint import load_denoiser

COMMAND = "python benchmarks/oracle_controls.py"
OUT = Path(__file__).parent / "results"
SEED_SETS = [range(k * 1000, (k + 1) * 1000) for k in range(3)]
SETTINGS = ("none", "oracle posterior", "oracle trajectory", "stein (default)", "constant 1.05", "eps-scaling 1.005")


def corrector_of(setting: str, data):
    return {"none": None, "oracle posterior": OracleCorrector(data=data),
            "oracle trajectory": OracleCorrector(reference="trajectory"), "stein (default)": SteinCorrector(),
            "constant 1.05": ConstantCorrector(1.05), "eps-scaling 1.005": None}[setting]


def cell(denoiser, data, reference, solver_name: str, setting: str) -> dict:
    solver = make_solver(solver_name)
    grid = Schedule("edm", final_step="zero").grid(num_steps_for_nfe(solver, 6, "zero"))
    model = epsilon_scaled(denoiser, 1.005) if setting.startswith("eps") else denoiser
    values, nfe = [], None
    for seeds in SEED_SETS:
        result = sample(model, grid, solver, corrector_of(setting, data), seeds=seeds, shape=(data.dim,),
                        dtype=torch.float64)
        values.append(energy_distance(result.samples, reference))
        nfe = result.nfe
    return {"mean": statistics.mean(values), "std": statistics.stdev(values), "values": values, "nfe": nfe}


def main() -> None:
    torch.set_num_threads(1)
    start, rows, lines = time.time(), [], [f"Command: `{COMMAND}`", "", " ".join(__doc__.split("\n\n")[2].split()), ""]
    lines += ["| denoiser | solver | NFE | " + " | ".join(SETTINGS) + " |", "|---" * (3 + len(SETTINGS)) + "|"]
    for name in ("ring2d", "aniso32", "ring2d_mlp", "aniso32_mlp"):
        data = mixture_preset(name.removesuffix("_mlp"))
        denoiser = load_denoiser(f"{name}.safetensors") if name.endswith("_mlp") else data
        reference = data.sample(5000, generator=torch.Generator().manual_seed(12345))
        for solver_name in ("dpmpp_2m", "heun"):
            cells = {s: cell(denoiser, data, reference, solver_name, s) for s in SETTINGS}
            rows.append({"denoiser": name, "solver": solver_name, "nfe": cells["none"]["nfe"], "cells": cells})
            shown = " | ".join(f"{c['mean']:.4g} +- {c['std']:.2g}" for c in cells.values())
            lines.append(f"| {name} | {solver_name} | {cells['none']['nfe']} | {shown} |")
            print(lines[-1], flush=True)
    lines += ["", f"Wall time {time.time() - start:.0f} s (one torch thread)."]
    OUT.mkdir(exist_ok=True)
    (OUT / "oracle_controls.md").write_text("\n".join(lines) + "\n")
    (OUT / "oracle_controls.json").write_text(json.dumps({"command": COMMAND, "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
