"""Cost of the SteinDiff correction: wall time of a corrected run over the uncorrected one.

    python benchmarks/stein_cost.py

aniso32 mixture (d = 32, sharp denoiser), DPM-Solver++ 2M at NFE 8 (EDM grid), 2000 samples in
one batch, float32, CPU. Each configuration is timed side by side with the uncorrected run in
the same loop (5 repeats, median); the table gives the ratio and the measured NFE (the
forward-mode and finite-difference estimators make extra denoiser calls). Writes
benchmarks/results/stein_cost.{json,md}.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from steindiff.core import SteinCorrector, build_sigmas, make_solver, mixture_preset, sample

CONFIGS = [("none", None)] + [
    (f"{div} M={m}", dict(divergence=div, num_probes=m))
    for div in ("hutchinson", "rademacher", "jvp", "finite_difference") for m in (1, 5, 20)
] + [("exact (d VJPs)", dict(divergence="exact")), ("hutchinson M=5 subset=200", dict(num_probes=5, subset=200))]


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = mixture_preset("aniso32", temperature=0.5)
    sigmas = build_sigmas("edm", 8, "zero")
    seeds = list(range(2000))
    times: dict[str, list[float]] = {name: [] for name, _ in CONFIGS}
    nfe: dict[str, int] = {}
    for repeat in range(6):
        for name, options in CONFIGS:
            corrector = None if options is None else SteinCorrector(target="data", gamma_min=0.0, **options)
            t0 = time.perf_counter()
            res = sample(data, sigmas, make_solver("dpmpp_2m"), corrector, seeds=seeds, shape=(32,))
            if repeat > 0:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
            nfe[name] = res.nfe
    base = statistics.median(times["none"])
    rows = [{"config": name, "median_s": statistics.median(t), "ratio": statistics.median(t) / base, "nfe": nfe[name]}
            for name, t in times.items()]
    lines = ["Command: `python benchmarks/stein_cost.py` (aniso32, dpmpp_2m, NFE 8, 2000 samples, CPU, "
             f"{torch.get_num_threads()} threads)", "", "| corrector | median s | ratio to none | measured NFE |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['median_s']:.3f} | {r['ratio']:.2f} | {r['nfe']} |")
    md = "\n".join(lines)
    print(md)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "stein_cost.json").write_text(json.dumps(rows, indent=1))
    (out / "stein_cost.md").write_text(md + "\n")


if __name__ == "__main__":
    main()
