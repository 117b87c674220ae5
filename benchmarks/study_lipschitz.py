"""The local Lipschitz constant of the solver's step map along real trajectories (the paper's Figure 4).

    python benchmarks/study_lipschitz.py          # docs/results/lipschitz.jsonl, then docs/results/lipschitz.png
    python benchmarks/study_lipschitz.py --draw   # the figure from the records only

For each test-bed, solver (Euler, DPM-Solver++(2M)) and NFE (6, 10, 100), uncorrected and with the corrector
settings of the study: the per-step batch mean and max of the power-iteration estimate of |dT/dx| at the
sampler's own states (``diagnostics.lipschitz=true``, 10 iterations; it changes neither samples nor NFE), seed
set 1, 500 samples. A step map with a constant above 1 expands errors; the paper's "contractivity trap" is the
claim that few large steps leave the contractive regime. Resumable like the study (a rerun skips what is on
record).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from study import ROOT, SETTINGS, TESTBEDS, read_records
from tqdm.auto import tqdm

from steindiff.build import build_run, compose_sample_config

RECORDS = ROOT / "docs" / "results" / "lipschitz.jsonl"
FIGURE = ROOT / "docs" / "results" / "lipschitz.png"
SOLVERS = ("euler", "dpmpp_2m")
NFES = (6, 10, 100)
CHOSEN = ("none", "stein_paper", "stein_ours")
NUM_SAMPLES = 500


def evaluate(testbed: str, solver: str, nfe: int, setting: str) -> dict:
    overrides = [*TESTBEDS[testbed][0], f"solver={solver}", f"nfe={nfe}", *SETTINGS[setting], "seed_set=1",
                 f"num_samples={NUM_SAMPLES}", "diagnostics.lipschitz=true", "metrics=none"]
    result = build_run(compose_sample_config(overrides)).sample()
    steps: dict[int, list[dict]] = {}
    for entry in result.trace:
        steps.setdefault(entry["step"], []).append(entry)
    return {"testbed": testbed, "solver": solver, "nfe_budget": nfe, "setting": setting, "overrides": overrides,
            "sigma": [steps[k][0]["sigma"] for k in sorted(steps)],
            "lipschitz_mean": [sum(e["lipschitz_mean"] for e in steps[k]) / len(steps[k]) for k in sorted(steps)],
            "lipschitz_max": [max(e["lipschitz_max"] for e in steps[k]) for k in sorted(steps)]}


def draw(records: list[dict], path: Path) -> None:
    import matplotlib  # start-up: only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up: only the figure needs it

    testbeds = sorted({r["testbed"] for r in records})
    per_row = 2  # test-beds per row, each with one panel per solver
    rows = -(-len(testbeds) // per_row)
    fig, axes = plt.subplots(rows, per_row * len(SOLVERS), figsize=(3.6 * per_row * len(SOLVERS), 3.0 * rows),
                             squeeze=False)
    for t, testbed in enumerate(testbeds):
        for i, solver in enumerate(SOLVERS):
            ax = axes[t // per_row][(t % per_row) * len(SOLVERS) + i]
            for r in records:
                if (r["testbed"], r["solver"]) == (testbed, solver) and r["setting"] in ("none", "stein_ours"):
                    sig = [max(s, 1e-3) for s in r["sigma"]]
                    ax.plot(sig, r["lipschitz_mean"], marker="o" if r["nfe_budget"] < 50 else None, ms=3,
                            ls="-" if r["setting"] == "none" else "--", label=f"NFE {r['nfe_budget']}, {r['setting']}")
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.invert_xaxis()
            ax.set_title(f"{testbed}, {solver}", fontsize=9)
            ax.set_xlabel("sigma at the step (sampling runs left to right)", fontsize=8)
            ax.set_ylabel("Lipschitz of the step map (batch mean)", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("Local Lipschitz constant of the step map along the sampler's trajectories (1 = neutral)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    if argv is None and sys.argv[1:] == ["--draw"]:  # the figure from the records only
        draw(read_records(RECORDS), FIGURE)
        return 0
    torch.set_num_threads(1)
    records = read_records(RECORDS)
    done = {(r["testbed"], r["solver"], r["nfe_budget"], r["setting"]) for r in records}
    cells = [(t, s, n, c) for t in TESTBEDS if t != "digits" for s in SOLVERS for n in NFES for c in CHOSEN
             if (t, s, n, c) not in done]
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    with RECORDS.open("a") as out:
        for cell in tqdm(cells, desc="lipschitz", unit="run"):
            record = evaluate(*cell)
            if not all(math.isfinite(v) for v in record["lipschitz_mean"]):
                tqdm.write(f"lipschitz: non-finite estimate in {cell}")
            records.append(record)
            out.write(json.dumps(record) + "\n")
            out.flush()
    draw(records, FIGURE)
    print(f"wrote {FIGURE.relative_to(ROOT)} from {len(records)} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
