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
from study_paper import paper_section

RESULTS_MD = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "results"
MIN_NFE = 6  # the summary counts cells at NFE >= 6 (the criterion for the default)

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
    if not (math.isfinite(a["mean"]) and math.isfinite(b["mean"])):  # a finite result beats a non-finite one
        if math.isfinite(a["mean"]) != math.isfinite(b["mean"]):
            return "better" if math.isfinite(a["mean"]) else "worse"
        return "same"
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
            nfe_counts, time_counts = _counts(cells, setting, testbed), _compute_counts(cells, setting, testbed)
            if any(k[0] == testbed and k[4] == setting and k[3] >= MIN_NFE for k in cells):
                lines.append(f"| {testbed} | {setting} | {nfe_counts['better']} / {nfe_counts['same']} / "
                             f"{nfe_counts['worse']} | {time_counts['better']} / {time_counts['same']} / "
                             f"{time_counts['worse']} |")
    return lines


def common_cells(cells: dict, settings: list[str]) -> list[tuple]:
    """(test-bed, solver, schedule, NFE >= MIN_NFE) of the cells where the base solver and every setting are
    recorded."""
    bases = {k[:4] for k in cells if k[4] == "none" and k[3] >= MIN_NFE}
    return [b for b in sorted(bases) if all((*b, s) in cells for s in settings)]


def stein_ranking(cells: dict, settings: list[str]) -> list[tuple[str, int, int, int]]:
    """The Stein-family settings (names starting with "stein") ranked on the cells (test-bed, solver, schedule, NFE
    >= MIN_NFE) where all of them and the base solver are recorded: (setting, better, same, worse) at equal NFE,
    ranked by better minus worse, then by cells not worse (counting "not worse" alone would rank a setting that
    never corrects first). The default of ``corrector=stein`` is the study's choice by this ranking."""
    stein = [s for s in settings if s.startswith("stein")]
    common = common_cells(cells, stein)
    rows = []
    for setting in stein:
        counts = defaultdict(int)
        for b in common:
            counts[verdict(cells[(*b, setting)], cells[(*b, "none")])] += 1
        rows.append((setting, counts["better"], counts["same"], counts["worse"]))
    return sorted(rows, key=lambda r: (-(r[1] - r[3]), -(r[1] + r[2]), r[0]))


def ranking_table(cells: dict, candidates: list[str]) -> list[str]:
    """``stein_ranking`` of the candidates for the default, as a table, with the cells it counts."""
    rows = stein_ranking(cells, candidates)
    common = common_cells(cells, [c for c in candidates if c.startswith("stein")])
    testbeds = sorted({b[0] for b in common})
    lines = [f"On the {len(common)} cells (NFE >= {MIN_NFE}; test-beds {', '.join(testbeds) or 'none'}) where every "
             "candidate is recorded, equal NFE:", "",
             "| rank | setting | better / same / worse | better - worse | not worse |", "|---|---|---|---|---|"]
    for i, (setting, better, same, worse) in enumerate(rows, 1):
        total = better + same + worse
        lines.append(f"| {i} | {setting} | {better} / {same} / {worse} | {better - worse:+d} | "
                     f"{better + same}/{total} |")
    return lines


RECOVERY_NFE = (5, 10)  # issue 16's range for the share of the oracle's gain a setting recovers


def oracle_of(cells: dict, testbed: str) -> str | None:
    """The oracle a test-bed is measured against: the posterior one where recorded, else the trajectory one."""
    for name in ("oracle", "oracle_trajectory"):
        if any(k[0] == testbed and k[4] == name for k in cells):
            return name
    return None


def recovered_share(records: list[dict], testbed: str, setting: str, oracle: str) -> tuple[float, float, int] | None:
    """The share of the oracle's gain a setting recovers on a test-bed: per evaluation seed set, the sum over cells
    (NFE in ``RECOVERY_NFE``) of log(none / setting) over the sum of log(none / oracle), over the cells where the
    oracle improves on the base solver on that seed set (log ratios: cells whose metric differs by orders of
    magnitude count alike). Returns (mean, sd over seed sets, number of cells), or None when nothing to compare."""
    lo, hi = RECOVERY_NFE
    by_cell: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in records:
        if (r["testbed"] == testbed and r["seed_set"] in EVAL_SETS and lo <= r["nfe_budget"] <= hi
                and r["setting"] in ("none", setting, oracle) and "metrics" in r):
            by_cell[(r["solver"], r["schedule"], r["nfe_budget"], r["seed_set"])][r["setting"]] = \
                r["metrics"].get(headline(testbed), math.nan)
    shares, cells = [], set()
    for seed_set in EVAL_SETS:
        gained = recovered = 0.0
        for (solver, schedule, nfe, k), values in by_cell.items():
            if (k != seed_set or not {"none", setting, oracle} <= values.keys()
                    or not all(v > 0 and math.isfinite(v) for v in values.values())):
                continue
            oracle_gain = math.log(values["none"] / values[oracle])
            if oracle_gain <= 0:
                continue
            gained += oracle_gain
            recovered += math.log(values["none"] / values[setting])
            cells.add((solver, schedule, nfe))
        if gained > 0:
            shares.append(recovered / gained)
    if not shares:
        return None
    return statistics.fmean(shares), statistics.stdev(shares) if len(shares) > 1 else 0.0, len(cells)


def recovery_table(records: list[dict], cells: dict, settings: list[str]) -> list[str]:
    """One table: a row per setting, a column per test-bed, the share of the oracle's gain recovered
    (``recovered_share``: mean ± sd over seed sets, and the cells it sums over)."""
    lo, hi = RECOVERY_NFE
    testbeds = [t for t in sorted({k[0] for k in cells}) if oracle_of(cells, t)]
    head = [f"{t} ({oracle_of(cells, t)})" for t in testbeds]
    lines = [f"Share of the oracle's gain recovered at NFE {lo}-{hi}, mean ± sd over the seed sets [cells summed]; "
             "the oracle each test-bed is measured against in brackets.", "",
             "| setting | " + " | ".join(head) + " |", "|---|" + "---|" * len(testbeds)]
    for setting in settings:
        if setting.startswith("oracle") or setting == "none":
            continue
        shares = [recovered_share(records, t, setting, oracle_of(cells, t)) for t in testbeds]
        if any(shares):
            lines.append(f"| {setting} | " + " | ".join(f"{sh[0]:+.2f} ± {sh[1]:.2f} [{sh[2]}]" if sh else "-"
                                                         for sh in shares) + " |")
    return lines


#: the learned test-beds of issue 16's criterion for recommending a variant
LEARNED = ("ring2d_mlp", "aniso32_mlp", "digits")
RECOMMEND_SHARE = 0.5  # at least half of the oracle's gain on every learned test-bed


def recommendation(records: list[dict], cells: dict, settings: list[str]) -> tuple[list[str], list[str]]:
    """Issue 16's criterion for each Stein-family variant and the calibrated schedule: it recovers at least
    ``RECOMMEND_SHARE`` of the oracle's gain on every learned test-bed (``LEARNED``) at NFE 5-10 (mean over the
    seed sets) and is worse than the base solver beyond the spread in no recorded cell (any test-bed, any NFE).
    Returns (table lines, the settings that meet it)."""
    lo, hi = RECOVERY_NFE
    lines = ["| setting | " + " | ".join(f"{t}: share, NFE {lo}-{hi}" for t in LEARNED)
             + " | worse than uncorrected (cells, any test-bed and NFE) | meets the criterion |",
             "|---|" + "---|" * len(LEARNED) + "---|---|"]
    meets = []
    for setting in [s for s in settings if s.startswith("stein") or s == "calibrated"]:
        shares = []
        for testbed in LEARNED:
            oracle = oracle_of(cells, testbed)
            shares.append(recovered_share(records, testbed, setting, oracle) if oracle else None)
        counts = _counts(cells, setting, min_nfe=0)  # every recorded cell: all test-beds, all NFE
        worse, compared = counts["worse"], sum(counts.values())
        ok = all(sh is not None and sh[0] >= RECOMMEND_SHARE for sh in shares) and worse == 0
        meets += [setting] if ok else []
        shown = [f"{sh[0]:+.2f} ± {sh[1]:.2f}" if sh else "not recorded" for sh in shares]
        lines.append(f"| {setting} | " + " | ".join(shown) + f" | {worse} of {compared} | {'yes' if ok else 'no'} |")
    return lines, meets


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


#: the table groups of each test-bed: (title, settings); a group's tables show the settings that are recorded
DEFAULT_STEIN = "stein_tight"  # the setting corrector=stein's defaults reproduce (conf/sample/corrector/stein.yaml)
GROUPS = (
    ("the paper's setting, ours, the default, the controls", ["none", "stein_paper", "stein_ours", DEFAULT_STEIN,
                                                              "oracle", "oracle_trajectory", "constant", "eps_scaling",
                                                              "calibrated"]),
    ("candidates for the default of corrector=stein", ["none", "stein_ours", "stein_narrow", "stein_window",
                                                       "stein_narrow_window", "stein_narrow_rademacher",
                                                       DEFAULT_STEIN]),
    ("estimator variants (issue 16; each stein_ours with one switch changed)",
     ["none", "stein_ours", "stein_rademacher", "stein_orthogonal", "stein_flow", "stein_shrinkage",
      "stein_smoothing", "stein_renoised", "stein_paper", "stein_exact_terms", "calibrated"]),
)


def _counts(cells: dict, setting: str, testbed: str | None = None, min_nfe: int = MIN_NFE) -> dict[str, int]:
    """better / same / worse of a setting against the base solver at equal NFE over the recorded cells at NFE >=
    ``min_nfe`` (of one test-bed, or all)."""
    counts = defaultdict(int)
    for k, cell in cells.items():
        base = cells.get((*k[:4], "none"))
        if k[4] == setting and k[3] >= min_nfe and base is not None and testbed in (None, k[0]):
            counts[verdict(cell, base)] += 1
    return counts


def _compute_counts(cells: dict, setting: str, testbed: str | None = None) -> dict[str, int]:
    """As ``_counts``, against the base solver at equal compute (``equal_compute``)."""
    counts = defaultdict(int)
    for k, cell in cells.items():
        if k[4] == setting and k[3] >= MIN_NFE and testbed in (None, k[0]):
            found = equal_compute(cells, k)
            if found is not None:
                counts[verdict(cell, found[1])] += 1
    return counts


def _worse_keys(cells: dict, setting: str) -> list[tuple]:
    """(testbed, solver, schedule, nfe) of the cells at NFE >= MIN_NFE where a setting is worse than the base
    solver, sorted."""
    return sorted(k[:4] for k, c in cells.items() if k[4] == setting and k[3] >= MIN_NFE
                  and (*k[:4], "none") in cells and verdict(c, cells[(*k[:4], "none")]) == "worse")


def _worse_where(cells: dict, setting: str) -> str:
    """The cells (NFE >= MIN_NFE) where a setting is worse than the base solver, named with both means."""
    worse = [f"{b[0]} {b[1]} NFE {b[3]} ({cells[(*b, 'none')]['mean']:.3g} -> {cells[(*b, setting)]['mean']:.3g})"
             for b in _worse_keys(cells, setting)]
    return ", ".join(worse) or "nowhere"


def _same_losses(cells: dict) -> str:
    """Whether the calibrated schedule is worse exactly where its target, the trajectory oracle, is (on the cells
    where both are recorded)."""
    both = {k[:4] for k in cells if k[4] == "calibrated" and k[3] >= MIN_NFE and (*k[:4], "oracle_trajectory") in cells
            and (*k[:4], "none") in cells}
    worse = {s: set(_worse_keys(cells, s)) & both for s in ("calibrated", "oracle_trajectory")}
    if not both:
        return ""
    if worse["calibrated"] == worse["oracle_trajectory"]:
        return (f"On the {len(both)} cells where both are recorded, the calibrated schedule is worse exactly where "
                "its target is: the fault is the target (the step closest in mean squared distance to the reference, "
                "one scalar gamma per step), not the calibration.")
    return (f"On the {len(both)} cells where both are recorded, the calibrated schedule is worse in "
            f"{len(worse['calibrated'])} and its target in {len(worse['oracle_trajectory'])}, "
            f"{len(worse['calibrated'] & worse['oracle_trajectory'])} of them the same.")


def _say(counts: dict[str, int]) -> str:
    return f"better in {counts['better']}, the same in {counts['same']}, worse in {counts['worse']}"


def conclusion(records: list[dict], cells: dict) -> list[str]:
    """The study's conclusion, its numbers computed from the records (a rerun with more records updates them)."""
    recorded = sorted({k[0] for k in cells})
    paper, ours, default = (_counts(cells, s) for s in ("stein_paper", "stein_ours", DEFAULT_STEIN))
    stein_settings = sorted({k[4] for k in cells if k[4].startswith("stein")})
    compute_best = max((_compute_counts(cells, s)["better"], s) for s in stein_settings) if stein_settings else (0, "-")
    oracle = _counts(cells, "oracle")
    shares = []
    for testbed in recorded:
        reference = oracle_of(cells, testbed)
        for setting in ("stein_ours", DEFAULT_STEIN, "calibrated", "constant"):
            share = recovered_share(records, testbed, setting, reference) if reference else None
            if share is not None:
                shares.append((setting, testbed, share[0], share[1]))

    def share_range(setting: str) -> str:
        found = [f"{t} {m:+.2f} ± {sd:.2f}" for s, t, m, sd in shares if s == setting]
        return "(" + ", ".join(found) + ")" if found else "(not recorded)"

    worst_paper = max((c["mean"] / cells[(*k[:4], "none")]["mean"] for k, c in cells.items()
                       if k[4] == "stein_paper" and k[3] >= MIN_NFE and (*k[:4], "none") in cells
                       and cells[(*k[:4], "none")]["mean"] > 0), default=math.nan)
    helps = sorted((cells[(*k[:4], "none")]["mean"] / c["mean"], k) for k, c in cells.items()
                   if k[4] in ("stein_paper", "stein_ours") and (*k[:4], "none") in cells
                   and verdict(c, cells[(*k[:4], "none")]) == "better")[::-1][:4]
    where = ", ".join(f"{k[0]} {k[1]} NFE {k[3]} ({k[4]}: {cells[(*k[:4], 'none')]['mean']:.3g} -> "
                      f"{cells[k]['mean']:.3g})" for _, k in helps) or "nowhere"
    return [
        "## Conclusion", "",
        f"Counted over the recorded cells at NFE >= {MIN_NFE} (test-beds {', '.join(recorded)}), each against the "
        "uncorrected solver at equal NFE, beyond twice the standard error over the 3 evaluation seed sets:", "",
        f"- **The paper's setting** (state reading, batch statistics, 5 Gaussian Hutchinson probes, gamma >= 0) is "
        f"{_say(paper)} (its worst cell: {worst_paper:.3g} times the uncorrected metric).",
        f"- **Our data reading with the clip [0.5, 1.5]** (`corrector=stein_clipped`) is {_say(ours)}.",
        f"- **The default of `corrector=stein`** (the data reading, gamma clipped to [0.95, 1.05], the first of the "
        f"candidates ranked below) is {_say(default)}: it rarely hurts because gamma stays within 5 % of 1, and it "
        "rarely helps for the same reason.",
        f"- **At equal compute** (the corrector's backward passes counted) the best Stein-family setting is better in "
        f"{compute_best[0]} cells ({compute_best[1]}): the uncorrected solver given the same time wins almost "
        "everywhere.",
        f"- **The posterior oracle** (the coefficient Stein's identity estimates, computed with the exact posterior "
        f"mean) is {_say(oracle)}: the objective is sound. The share of the oracle's gain recovered (1 = all of it, "
        f"negative = worse than uncorrected; digits, which has no posterior oracle: of the trajectory oracle's gain): "
        f"stein_ours {share_range('stein_ours')}; the default "
        f"{share_range(DEFAULT_STEIN)}; the calibrated schedule {share_range('calibrated')}; the tuned constant "
        f"{share_range('constant')}.",
        f"- **The calibrated schedule** (`corrector=calibrated`, ours: one gamma per step fitted once against the "
        f"trajectory oracle, no cost at sampling time) is {_say(_counts(cells, 'calibrated'))}; it recovers "
        "more than the posterior oracle's gain on the mixtures because it targets the ODE's own solution. Where it "
        f"is worse at NFE >= {MIN_NFE}: {_worse_where(cells, 'calibrated')}.",
        f"- **The trajectory oracle** (the gamma that best follows a high-accuracy solution of the same ODE; the "
        f"calibrated schedule's target) is {_say(_counts(cells, 'oracle_trajectory'))}; where it is worse at NFE "
        f">= {MIN_NFE}: {_worse_where(cells, 'oracle_trajectory')}. {_same_losses(cells)}",
        f"- **Where Stein helps most** (the paper's or our clipped setting, largest ratios): {where}: where the "
        "uncorrected solver has broken down.",
        "- **Why**: Stein's identity holds on the forward marginal, and the sampler's states at small sigma are off "
        "it; the estimate is then biased, not merely noisy (docs/results/estimator_error_*.png: the error stays after "
        "variance reduction removes the probe noise; benchmarks/results/stein_variants.md).", ""]


def coverage(cells: dict) -> list[str]:
    """What the records hold so far and what the study's plan still lacks (the study is resumable and grows)."""
    have_tb, have_set = sorted({k[0] for k in cells}), sorted({k[4] for k in cells})
    lacking_tb = [t for t in TESTBEDS if t not in have_tb]
    lacking_set = [s for s in [*SETTINGS, *TUNED] if s not in have_set]
    return [f"Recorded: test-beds {', '.join(have_tb) or '(none)'}; settings {', '.join(have_set) or '(none)'}. "
            f"Not recorded yet: test-beds {', '.join(lacking_tb) or '(none)'}; settings "
            f"{', '.join(lacking_set) or '(none)'} (a test-bed's cells may be partial too: the tables show what "
            "exists; "
            "the estimator variants, the oracles and the calibrated schedule cover Euler, Heun and DPM-Solver++(2M) "
            "on the EDM grid, at NFE 4-10 on the mixtures and NFE 6 and 8 on digits)."]


def _recommendation_section(records: list[dict], cells: dict, settings: list[str]) -> list[str]:
    table, meets = recommendation(records, cells, settings)
    verdict_line = (f"Meets it: {', '.join(meets)}." if meets else
                    "No setting meets it, so the README recommends none (each is described with where it helps and "
                    "where it hurts).")
    return ["### Is any variant recommended? (issue 16's criterion)", "",
            f"A variant is recommended when it recovers at least {RECOMMEND_SHARE:g} of the oracle's gain on every "
            f"learned test-bed ({', '.join(LEARNED)}; mean over the seed sets, NFE {RECOVERY_NFE[0]}-"
            f"{RECOVERY_NFE[1]}) and is worse than the uncorrected solver beyond the spread in no recorded cell. "
            "Digits has no posterior oracle: its share is of the trajectory oracle's gain.", "",
            *table, "", verdict_line, ""]


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
             "uncorrected solver is so cheap that a corrector with backward passes is mostly paired with NFE 15-20. "
             "Samples per cell and seed set: 2000 on the mixtures (the uncorrected cells' sd of energy distance over "
             "seed sets: median 5-7 % of the mean, about 0.003 at the noise floor), 1000 on digits (median sd of "
             "digits-FID 4.6, up to 22: differences of a few FID points are reported as the same). No GPU was lent "
             "to this study: digits at 10,000 samples per seed set and "
             "the larger learned test-bed the issue names are not here.",
             "", *coverage(cells), "", *conclusion(records, cells),
             "## The default of corrector=stein", "",
             "The candidates (data reading, batch statistics, 5 Hutchinson probes; names in benchmarks/study.py) "
             "ranked "
             "by cells better minus worse than the uncorrected solver; the first is `corrector=stein`'s default.", "",
             *ranking_table(cells, [s for s in GROUPS[1][1] if s != "none" and s in settings]), "",
             "## Summary", "", *summary_table(cells, settings[1:]),
             "", "### Share of the oracle's gain recovered", "",
             "1 = the oracle's gain, 0 = the base solver's quality, negative = worse than the base solver; summed "
             "over the cells where the oracle improves on the base solver (log ratios of the metric).", "",
             *recovery_table(records, cells, settings[1:]), "", *_recommendation_section(records, cells, settings)]
    for testbed in sorted({k[0] for k in cells}):
        lines += ["", f"### {testbed}"]
        for title, group in GROUPS:
            shown = [g for g in group if g in settings]
            if len(shown) > 1 and any(k[0] == testbed and k[4] in shown[1:] for k in cells):
                lines += ["", f"**{testbed}: {title}**", *testbed_tables(cells, testbed, shown)]
    lines += ["", paper_section(level=2), ""]
    figures.mkdir(parents=True, exist_ok=True)
    main = {k: c for k, c in cells.items() if k[4] in GROUPS[0][1]}  # the figures show the main group only
    lines += ["## Figures", "", "Quality against NFE and against sampling time, and gamma per step, for the settings "
              f"of the first table group ({', '.join(GROUPS[0][1])}):", "",
              *draw_figures(main, figures, results_md.parent)]
    extra = [("lipschitz.png", "the step map's Lipschitz estimate per step at NFE 6, 10 and 100 (the paper's Fig. 4; "
              "`python benchmarks/study_lipschitz.py`)")]
    extra += [(p.name, "the error of each Stein estimator variant against the oracle per step, "
               f"{p.stem.split('_', 2)[2]} (`python benchmarks/estimator_error.py report`)")
              for p in sorted(figures.glob("estimator_error_*.png"))]
    for name, what in extra:
        if (figures / name).is_file():
            lines += [f"![{name}]({(figures / name).relative_to(results_md.parent).as_posix()})", "", f"{what}.", ""]
    results_md.write_text("\n".join(lines) + "\n")
    print(f"wrote {results_md} ({len(cells)} cells)")
    return 0
