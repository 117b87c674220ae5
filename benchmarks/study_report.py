"""The report half of the results study: docs/results.md and docs/results/*.png from docs/results/study.jsonl.

    python benchmarks/study.py report

Every cell is a mean over the evaluation seed sets with its sample standard deviation and n. A setting is
"better" (or "worse") than the base solver when the difference of the means exceeds twice its standard error
(sqrt(sd_a^2/n_a + sd_b^2/n_b)); otherwise "within spread". Equal compute: the base solver at the largest NFE of
the grid whose measured sampling time (median over seed sets) does not exceed the setting's.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from study import EVAL_SETS, ROOT, SETTINGS, TESTBEDS, TUNED, headline
from study_figures import draw_figures

RESULTS_MD = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "results"
MIN_NFE = 6  # the summary counts cells at NFE >= 6 (the criterion for the default)

PUBLISHED = """The paper's published numbers (FID, 50k samples; copied from the paper, not measured here):

| LSUN-Bedroom 256, latent diffusion | NFE 5 | 6 | 8 | 10 | 20 |
|---|---|---|---|---|---|
| DPM-Solver++ (2M) | 21.29 | 10.97 | 5.13 | 3.88 | 3.25 |
| DPM-Solver++ (3M) | 18.61 | 8.52 | 4.15 | 3.61 | 3.17 |
| SteinDiff (SC) | 7.64 | 4.71 | 3.72 | 3.38 | 2.77 |

ImageNet-64 (EDM model), logSNR, Heun, 3 steps: FID 230.05 -> 124.69 (published). "SteinDiff (SC)", the
variant behind the LSUN numbers, is not described in the paper and is not implemented here."""


def aggregate(records: list[dict]) -> dict[tuple, dict]:
    """(testbed, solver, schedule, nfe, setting) -> {mean, sd, n, seconds, value, nfe} over the evaluation sets."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["seed_set"] in EVAL_SETS and "metrics" in r:
            cells[(r["testbed"], r["solver"], r["schedule"], r["nfe_budget"], r["setting"])].append(r)
    out = {}
    for key, rs in cells.items():
        values = [r["metrics"].get(headline(key[0]), math.nan) for r in rs]
        finite = [v for v in values if math.isfinite(v)]
        out[key] = {"mean": statistics.fmean(finite) if len(finite) == len(values) else math.inf,
                    "sd": statistics.stdev(finite) if len(finite) > 1 else 0.0, "n": len(values),
                    "seconds": statistics.median(r["seconds"] for r in rs), "value": rs[0].get("value"),
                    "nfe": rs[0]["nfe"], "gamma": rs[0].get("gamma")}
    return out


def verdict(a: dict, b: dict) -> str:
    """"better" / "worse" / "same": a against b (lower is better), beyond twice the standard error."""
    if not (math.isfinite(a["mean"]) and math.isfinite(b["mean"])):
        return "worse" if not math.isfinite(a["mean"]) and math.isfinite(b["mean"]) else "same"
    se = math.sqrt(a["sd"] ** 2 / a["n"] + b["sd"] ** 2 / b["n"])
    diff = a["mean"] - b["mean"]
    return "same" if abs(diff) <= 2 * se else ("better" if diff < 0 else "worse")


def equal_compute(cells: dict, key: tuple) -> tuple[int, dict] | None:
    """(NFE, cell) of the base solver affordable in the setting cell's measured time, or None."""
    testbed, solver, schedule, _, _ = key
    seconds = cells[key]["seconds"]
    base = sorted((k[3], c) for k, c in cells.items() if k[:3] == (testbed, solver, schedule) and k[4] == "none")
    affordable = [(nfe, c) for nfe, c in base if c["seconds"] <= seconds]
    return affordable[-1] if affordable else None


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "-"
    if not math.isfinite(cell["mean"]):
        return "non-finite"
    tuned = f" [{cell['value']:g}]" if cell.get("value") is not None else ""
    return f"{cell['mean']:.3g} ± {cell['sd']:.2g}{tuned}"


def summary_table(cells: dict, settings: list[str]) -> list[str]:
    """Per test-bed and setting: better / same / worse than the base at NFE >= MIN_NFE, equal NFE and compute."""
    lines = [f"| test-bed | setting | equal NFE: better / same / worse (NFE >= {MIN_NFE}) | "
             "equal compute: better / same / worse |", "|---|---|---|---|"]
    for testbed in sorted({k[0] for k in cells}):
        for setting in settings:
            keys = [k for k in cells if k[0] == testbed and k[4] == setting and k[3] >= MIN_NFE]
            nfe_counts, time_counts = defaultdict(int), defaultdict(int)
            for k in keys:
                base = cells.get((*k[:4], "none"))
                if base is not None:
                    nfe_counts[verdict(cells[k], base)] += 1
                affordable = equal_compute(cells, k)
                if affordable is not None:
                    time_counts[verdict(cells[k], affordable[1])] += 1
            if keys:
                lines.append(f"| {testbed} | {setting} | {nfe_counts['better']} / {nfe_counts['same']} / "
                             f"{nfe_counts['worse']} | {time_counts['better']} / {time_counts['same']} / "
                             f"{time_counts['worse']} |")
    return lines


def testbed_tables(cells: dict, testbed: str, settings: list[str]) -> list[str]:
    """One table per schedule: rows solver x NFE, a column per setting (equal NFE), then the base solver at equal
    compute for each corrected setting."""
    lines = []
    for schedule in sorted({k[2] for k in cells if k[0] == testbed}):
        shown = [s for s in settings if any(k[0] == testbed and k[2] == schedule and k[4] == s for k in cells)]
        lines += ["", f"#### {testbed}, schedule {schedule}: {headline(testbed)} (lower is better), "
                  "mean ± sd over seed sets; [value] = tuned value", "",
                  "| solver | NFE | " + " | ".join(shown) + " | none at equal compute (NFE) per setting |",
                  "|---|---|" + "---|" * len(shown) + "---|"]
        rows = sorted({(k[1], k[3]) for k in cells if k[0] == testbed and k[2] == schedule})
        for solver, nfe in rows:
            row = [fmt(cells.get((testbed, solver, schedule, nfe, s))) for s in shown]
            compute = []
            for s in shown[1:]:
                key = (testbed, solver, schedule, nfe, s)
                found = equal_compute(cells, key) if key in cells else None
                compute.append(f"{s}: {fmt(found[1])} ({found[0]})" if found else f"{s}: -")
            lines.append(f"| {solver} | {nfe} | " + " | ".join(row) + " | " + "; ".join(compute) + " |")
    return lines


def coverage(cells: dict) -> list[str]:
    """What the records hold so far and what the study's plan still lacks (the study is resumable and grows)."""
    have_tb, have_set = sorted({k[0] for k in cells}), sorted({k[4] for k in cells})
    lacking_tb = [t for t in TESTBEDS if t not in have_tb]
    lacking_set = [s for s in [*SETTINGS, *TUNED] if s not in have_set]
    return [f"Recorded: test-beds {', '.join(have_tb) or 'none'}; settings {', '.join(have_set) or 'none'}. "
            f"Not recorded yet: test-beds {', '.join(lacking_tb) or 'none'}; settings "
            f"{', '.join(lacking_set) or 'none'} (a test-bed's cells may be partial too: the tables show what exists)."]


def write_report(records: list[dict], results_md: Path = RESULTS_MD, figures: Path = FIGURES) -> int:
    """Writes ``results_md`` and the figures under ``figures`` from the study's records."""
    cells = aggregate(records)
    settings = ["none"] + sorted({k[4] for k in cells} - {"none"})
    lines = ["# Results study: does the Stein correction help few-step sampling?", "",
             "Regenerate (records are appended; a rerun skips cells on record):", "",
             "    python benchmarks/study.py run", "    python benchmarks/study.py report", "",
             f"{len(records)} records in `docs/results/study.jsonl`; evaluation seed sets "
             f"{', '.join(map(str, EVAL_SETS))}. Better/worse: the difference of the means beyond twice its "
             "standard error; equal compute: the base solver at the largest NFE whose measured time does not "
             "exceed the setting's. Times are the study process's own (one torch thread) on a 2-core machine "
             "that other work shared, so an equal-compute pairing can move by one NFE of the grid; on the mixtures the "
             "uncorrected solver is so cheap that a corrector with backward passes is mostly paired with NFE 15-20.",
             "", *coverage(cells), "", "## Summary", "", *summary_table(cells, settings[1:]),
             ""]
    for testbed in sorted({k[0] for k in cells}):
        lines += ["", f"### {testbed}", *testbed_tables(cells, testbed, settings)]
    lines += ["", "## Published", "", PUBLISHED, ""]
    figures.mkdir(parents=True, exist_ok=True)
    lines += ["## Figures", "", *draw_figures(cells, figures, results_md.parent)]
    results_md.write_text("\n".join(lines) + "\n")
    print(f"wrote {results_md} ({len(cells)} cells)")
    return 0
