"""Convergence order of every solver against the closed-form Gaussian PF-ODE solution.

    python benchmarks/convergence_order.py            # prints a table, writes benchmarks/results/

Global error (mean L2 at sigma_min = 0.01, float64, 16 trajectories of a 4-D Gaussian) for
64..512 steps on the EDM (rho = 7) and logSNR grids from sigma 80, and the least-squares slope of
-log2(error) against log2(steps). The same measurement is asserted in
tests/test_solver_convergence.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from solver_specs import SOLVER_SPECS  # noqa: E402
from steindiff.core.gaussian import GaussianData, convergence_order, global_errors  # noqa: E402
from steindiff.core.solvers import make_solver  # noqa: E402

STEPS = [64, 128, 256, 512]


def main() -> None:
    data = GaussianData.random(dim=4, seed=0)
    rows = []
    header = f"{'solver':18s} {'expected':>8s} {'order EDM':>10s} {'order logSNR':>13s}   errors EDM (64..512 steps)"
    print(header)
    print("-" * len(header))
    for ident, name, options, expected in SOLVER_SPECS:
        row = {"id": ident, "solver": name, "options": options, "expected": expected}
        for schedule in ("edm", "logsnr"):
            errors = global_errors(make_solver(name, **options), data, STEPS, schedule=schedule)
            row[schedule] = {"errors": errors, "order": convergence_order(errors, STEPS)}
        rows.append(row)
        errs = " ".join(f"{e:.2e}" for e in row["edm"]["errors"])
        print(f"{ident:18s} {expected:8d} {row['edm']['order']:10.2f} {row['logsnr']['order']:13.2f}   {errs}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "convergence_order.json").write_text(json.dumps({"steps": STEPS, "rows": rows}, indent=2))
    print(f"wrote {out / 'convergence_order.json'}")


if __name__ == "__main__":
    main()
