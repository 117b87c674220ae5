"""The results study's tooling (benchmarks/study.py, study_report.py): a cell means what the same overrides mean
on the command line, the records resume, the tuned baselines are chosen on the tuning seed set only, the
verdicts and equal-compute pairing follow their stated rules, and the report is written from the records."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import study  # noqa: E402
import study_report  # noqa: E402

from steindiff.build import build_run, compose_sample_config  # noqa: E402


@pytest.fixture
def small(monkeypatch, tmp_path):
    """The study on a 200-sample ring2d, recording into a temporary file."""
    monkeypatch.setitem(study.TESTBEDS, "ring2d", (["denoiser=ring2d"], 200))
    monkeypatch.setattr(study, "RECORDS", tmp_path / "study.jsonl")
    threads = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(threads)  # the study sets one thread


def test_a_cell_is_the_command_lines_run(small):
    record = study.evaluate("ring2d", "dpmpp_2m", "edm", 6, "none", 1, ["corrector=none"])
    run = build_run(compose_sample_config(record["overrides"]))
    samples = run.sample().samples
    run.metrics.update(samples)
    assert record["metrics"]["energy_distance"] == float(run.metrics.compute()["energy_distance"])
    assert record["nfe"] == 6 and record["num_samples"] == 200 and record["seed_set"] == 1
    assert record["overrides"][-2:] == ["seed_set=1", "num_samples=200"]


def test_a_refused_cell_is_recorded_with_its_error_and_a_missing_config_is_not(small):
    refused = study.evaluate("ring2d", "dpmpp_2m", "edm", 6, "x", 1, ["corrector=stein", "corrector.num_probes=0"])
    assert "num_probes" in refused["error"] and "metrics" not in refused
    missing = study.evaluate("ring2d", "dpmpp_2m", "edm", 6, "x", 1, ["corrector=no_such_corrector"])
    assert "no_such_corrector" in missing["missing"]


def _args(**kw):
    base = dict(testbeds=("ring2d",), solvers=("euler",), schedules=("edm",), nfe=(4,), settings=("none",),
                seed_sets=(1, 2))
    return type("Args", (), {**base, **kw})


def test_the_study_resumes_and_skips_a_truncated_line(small):
    assert study.run_study(_args()) == 0
    lines = study.RECORDS.read_text().splitlines()
    assert len(lines) == 2
    study.RECORDS.write_text("\n".join(lines) + "\n" + lines[0][:40])  # an interrupted write
    assert len(study.read_records()) == 2
    study.RECORDS.write_text("\n".join(lines) + "\n")
    study.run_study(_args(seed_sets=(1, 2, 3)))
    records = study.read_records()
    assert [r["seed_set"] for r in records] == [1, 2, 3]  # only the new seed set was evaluated


def test_a_refused_cell_is_tried_again_by_a_rerun_and_its_refusal_recorded_once(small, monkeypatch):
    monkeypatch.setitem(study.SETTINGS, "x", ["corrector=stein", "corrector.num_probes=0"])
    for _ in range(2):
        study.run_study(_args(settings=("x",), seed_sets=(1,)))
    assert [("error" in r) for r in study.read_records()] == [True]
    monkeypatch.setitem(study.SETTINGS, "x", ["corrector=none"])  # the checkout changed: the cell now runs
    study.run_study(_args(settings=("x",), seed_sets=(1,)))
    records = study.read_records()
    assert len(records) == 2 and "metrics" in records[1]
    assert study.planned_cells(_args(settings=("x",), seed_sets=(1,)), records) == []


def test_a_tuned_value_is_chosen_on_the_tuning_set_only():
    base = ("ring2d", "euler", "edm", 4)
    def rec(value, seed_set, ed):
        return {"testbed": "ring2d", "solver": "euler", "schedule": "edm", "nfe_budget": 4, "setting": "constant",
                "value": value, "seed_set": seed_set, "metrics": {"energy_distance": ed}}
    records = [rec(0.9, 0, 0.5), rec(1.0, 0, 0.3), rec(1.1, 0, math.nan), rec(0.9, 1, 0.01)]
    assert study._best_value(records, base, "constant") == 1.0  # seed set 1's 0.01 is not looked at
    assert study._best_value([], base, "constant") is None


def _cell(mean, sd, n=3, seconds=1.0):
    return {"mean": mean, "sd": sd, "n": n, "seconds": seconds, "value": None, "nfe": 6, "gamma": None}


def test_verdicts_need_twice_the_standard_error():
    base = _cell(1.0, 0.1)
    se = math.sqrt(2 * 0.1**2 / 3)
    assert study_report.verdict(_cell(1.0 - 2.1 * se, 0.1), base) == "better"
    assert study_report.verdict(_cell(1.0 - 1.9 * se, 0.1), base) == "same"
    assert study_report.verdict(_cell(1.0 + 2.1 * se, 0.1), base) == "worse"
    assert study_report.verdict(_cell(math.inf, 0.0), base) == "worse"


def test_equal_compute_takes_the_largest_affordable_nfe():
    cells = {("t", "euler", "edm", n, "none"): _cell(1.0 / n, 0.0, seconds=0.1 * n) for n in (4, 6, 8, 10)}
    cells[("t", "euler", "edm", 4, "stein")] = _cell(0.2, 0.0, seconds=0.85)
    nfe, cell = study_report.equal_compute(cells, ("t", "euler", "edm", 4, "stein"))
    assert nfe == 8 and cell["mean"] == 1.0 / 8
    cells[("t", "euler", "edm", 4, "cheap")] = _cell(0.2, 0.0, seconds=0.01)
    assert study_report.equal_compute(cells, ("t", "euler", "edm", 4, "cheap")) is None


def test_the_report_is_written_from_the_records(small):
    study.run_study(_args(nfe=(4, 6), settings=("none", "stein_ours"), seed_sets=(1, 2, 3)))
    out = small / "results.md"
    assert study_report.write_report(study.read_records(), out, small / "figures") == 0
    text = out.read_text()
    assert "| ring2d | stein_ours |" in text and "| euler | 6 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| euler | 6 |")]
    mean = sum(r["metrics"]["energy_distance"] for r in study.read_records()
               if r["setting"] == "none" and r["nfe_budget"] == 6) / 3
    assert f"{mean:.3g}" in rows[0]
    assert (small / "figures" / "ring2d_vs_nfe.png").stat().st_size > 1000
    assert (small / "figures" / "ring2d_gamma.png").stat().st_size > 1000  # stein_ours records gamma at NFE 6
    assert json.loads(study.RECORDS.read_text().splitlines()[0])["testbed"] == "ring2d"


def test_the_calibrated_setting_calibrates_once_and_evaluates_with_the_file(small, monkeypatch):
    monkeypatch.setattr(study, "ROOT", small)
    monkeypatch.setattr(study, "CALIBRATION_SEEDS", "0-63")
    overrides = study.calibrated_overrides("ring2d", "euler", "edm", 6)
    path = small / "docs" / "results" / "calibration" / "ring2d-euler-edm-nfe6.json"
    assert overrides == ["corrector=calibrated", "corrector.path=docs/results/calibration/ring2d-euler-edm-nfe6.json"]
    stamp = path.stat().st_mtime_ns
    assert study.calibrated_overrides("ring2d", "euler", "edm", 6) == overrides and path.stat().st_mtime_ns == stamp
    schedule = json.loads(path.read_text())
    monkeypatch.chdir(small)
    record = study.evaluate("ring2d", "euler", "edm", 6, "calibrated", 1, overrides)
    assert record["gamma"] == pytest.approx(schedule["gamma"])  # the run applied the file's gamma per step
    assert "/" not in record["overrides"][-3].split("=", 1)[1][:1]  # a relative path: no machine path recorded


def test_the_stein_ranking_counts_better_minus_worse_on_common_cells():
    cells = {}
    for nfe in (6, 8, 10):
        cells[("t", "euler", "edm", nfe, "none")] = _cell(1.0, 0.01)
        cells[("t", "euler", "edm", nfe, "stein_a")] = _cell(0.5, 0.01)  # better everywhere
        cells[("t", "euler", "edm", nfe, "stein_b")] = _cell(1.0, 0.01)  # the same everywhere
    cells[("t", "euler", "edm", 10, "stein_a")] = _cell(2.0, 0.01)  # a: 2 better, 1 worse
    cells[("t", "euler", "edm", 4, "stein_a")] = _cell(9.0, 0.01)  # NFE < 6 is not counted
    assert study_report.stein_ranking(cells, ["stein_b", "stein_a", "constant"]) == [
        ("stein_a", 2, 0, 1), ("stein_b", 0, 3, 0)]
    cells.pop(("t", "euler", "edm", 8, "stein_b"))  # only cells where every candidate is recorded
    assert study_report.stein_ranking(cells, ["stein_a", "stein_b"]) == [("stein_b", 0, 2, 0), ("stein_a", 1, 0, 1)]


def test_the_recovered_share_is_one_for_the_oracle_and_zero_for_the_base():
    records = []
    for seed_set in (1, 2, 3):
        for nfe, (none, oracle) in {6: (1.0, 0.25), 8: (0.5, 0.5 / 4)}.items():
            for setting, value in (("none", none), ("oracle", oracle), ("half", none / 2), ("same", none)):
                records.append({"testbed": "t", "solver": "euler", "schedule": "edm", "nfe_budget": nfe,
                                "setting": setting, "seed_set": seed_set, "metrics": {"energy_distance": value}})
    assert study_report.recovered_share(records, "t", "oracle", "oracle")[:2] == (1.0, 0.0)
    assert study_report.recovered_share(records, "t", "same", "oracle")[0] == 0.0
    share, sd, cells = study_report.recovered_share(records, "t", "half", "oracle")
    assert share == pytest.approx(0.5) and sd == pytest.approx(0.0) and cells == 2  # log 2 of log 4 in each cell


def test_a_variant_is_recommended_only_with_half_the_gain_everywhere_and_no_loss(monkeypatch):
    """Issue 16's criterion: share >= 0.5 on every learned test-bed and worse in no recorded cell."""
    monkeypatch.setattr(study_report, "LEARNED", ("t1", "t2"))
    records = []
    for testbed in ("t1", "t2", "t3"):
        for seed_set in (1, 2, 3):
            wobble = 1 + 0.01 * seed_set  # a spread over the seed sets, so verdicts have a standard error
            values = {"none": 1.0, "oracle": 0.25, "stein_good": 0.4, "stein_lossy": 0.4, "stein_weak": 0.8}
            if testbed == "t3":  # not learned: a loss here disqualifies, a missing share does not
                values["stein_lossy"] = 2.0
            for setting, value in values.items():
                records.append({"testbed": testbed, "solver": "euler", "schedule": "edm", "nfe_budget": 6,
                                "setting": setting, "seed_set": seed_set, "value": None, "nfe": 6, "seconds": 1.0,
                                "metrics": {"energy_distance": value * wobble}})
    cells = study_report.aggregate(records)
    lines, meets = study_report.recommendation(records, cells, ["none", "oracle", "stein_good", "stein_lossy",
                                                                "stein_weak"])
    assert meets == ["stein_good"]
    row = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert "| 1 of 3 | no |" in row["stein_lossy"] and "| 0 of 3 | yes |" in row["stein_good"]
    assert f"{math.log(1 / 0.8) / math.log(4):+.2f}" in row["stein_weak"]  # its share: log 1.25 of log 4
    monkeypatch.setattr(study_report, "LEARNED", ("t1", "t2", "t_missing"))
    assert study_report.recommendation(records, cells, ["stein_good"])[1] == []  # a learned test-bed not recorded


def test_the_calibrated_schedule_is_checked_against_its_targets_losses():
    cells = {}
    for nfe in (6, 8):
        cells[("t", "euler", "edm", nfe, "none")] = _cell(1.0, 0.01)
        cells[("t", "euler", "edm", nfe, "oracle_trajectory")] = _cell(2.0 if nfe == 6 else 0.5, 0.01)
        cells[("t", "euler", "edm", nfe, "calibrated")] = _cell(2.0 if nfe == 6 else 0.5, 0.01)
    assert "worse exactly where its target is" in study_report._same_losses(cells)
    cells[("t", "euler", "edm", 8, "calibrated")] = _cell(3.0, 0.01)  # worse where the oracle is not
    assert "worse in 2 and its target in 1, 1 of them the same" in study_report._same_losses(cells)
