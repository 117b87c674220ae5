"""steindiff-report: tables, CSV and plots of a fake Hydra multirun folder."""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from steindiff.cli.report import main

SOLVERS = ("euler", "heun")
CORRECTORS = ("none", "stein")
BUDGETS = (4, 8)
SEEDS = (0, 1)


def energy(solver: str, corrector: str, budget: int, seed: int) -> float:
    return (2.0 if solver == "euler" else 1.0) / budget * (0.5 if corrector == "stein" else 1.0) + 0.01 * seed


def setting(solver: str, corrector: str) -> str:
    return solver if corrector == "none" else f"{solver} / stein(target=data, statistics=batch)"


def write_job(folder: Path, idx: int, **fields) -> Path:
    job = folder / str(idx)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("a: 1\n")
    (job / "results.json").write_text(json.dumps(fields))
    return job


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    folder = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    idx = 0
    for solver in SOLVERS:
        for corrector in CORRECTORS:
            for budget in BUDGETS:
                for seed in SEEDS:
                    # heun at budget 4 measures 3 NFE (odd budget rounding): shown as "(3)"
                    nfe = budget - 1 if solver == "heun" and budget == 4 else budget
                    write_job(folder, idx, setting=setting(solver, corrector), solver=solver, corrector=corrector,
                              nfe_budget=budget, nfe=nfe, num_steps=budget // 2, final_step="zero", seed_set=seed,
                              num_samples=1000, complete=True, config={"x": 1}, sigmas=[1.0, 0.0], trace=[],
                              metrics={"energy_distance": energy(solver, corrector, budget, seed), "nll": 3.0 + seed})
                    idx += 1
    # an incomplete job (would spoil the euler/none NFE 4 cell) and a job that crashed before writing results
    write_job(folder, idx, setting="euler", solver="euler", corrector="none", nfe_budget=4, nfe=4, complete=False,
              metrics={"energy_distance": 99.0, "nll": 99.0})
    (folder / str(idx + 1) / ".hydra").mkdir(parents=True)
    (folder / "multirun.yaml").write_text("hydra: {}\n")
    return folder


def test_report_outputs(multirun: Path, capsys) -> None:
    assert main([str(multirun)]) == 0
    out = multirun / "report"
    stdout = capsys.readouterr().out
    assert stdout.strip().splitlines()[-1] == f"wrote {out}"

    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 2 * 2 + 1
    assert list(rows[0]) == ["setting", "solver", "corrector", "nfe_budget", "nfe", "num_steps", "final_step",
                             "seed_set", "num_samples", "complete", "energy_distance", "nll", "path"]
    assert sum(r["complete"] == "False" for r in rows) == 1
    assert {r["path"] for r in rows} >= {"0", "16"}

    md = (out / "report.md").read_text()
    assert md.strip() in stdout
    assert "## energy_distance" in md and "## nll" in md
    assert "| setting | NFE 4 | NFE 8 |" in md
    # euler/none at NFE 4, by hand: 0.5 and 0.51 (the incomplete job's 99.0 is excluded)
    vals = [energy("euler", "none", 4, s) for s in SEEDS]
    cell = f"{statistics.mean(vals):.4g} ± {statistics.stdev(vals):.2g}"
    assert cell == "0.505 ± 0.0071"
    euler_row = next(line for line in md.splitlines() if line.startswith("| euler |"))
    assert cell in euler_row
    # heun measured 3 NFE at budget 4
    heun_row = next(line for line in md.splitlines() if line.startswith("| heun |"))
    assert heun_row.split("|")[2].strip().endswith("(3)")
    assert heun_row.split("|")[3].strip().count("(") == 0
    # corrector "none" rows first
    table = md.split("## energy_distance")[1].split("## nll")[0]
    rows_md = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows_md[:2] == ["euler", "heun"] and all("stein" in r for r in rows_md[2:])
    assert "99" not in table
    assert "17 jobs, 1 incomplete (excluded: `16`)." in md

    for m in ("energy_distance", "nll"):
        png = out / f"{m}_vs_nfe.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_metric_filter_and_out(multirun: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    assert main([str(multirun), "--out", str(out), "--metric", "nll"]) == 0
    md = (out / "report.md").read_text()
    assert "## nll" in md and "## energy_distance" not in md
    assert sorted(p.name for p in out.iterdir()) == ["nll_vs_nfe.png", "report.md", "results.csv"]
    assert not (multirun / "report").exists()


def test_single_run_folder_and_nonfinite(tmp_path: Path, capsys) -> None:
    common = dict(solver="euler", corrector="none", complete=True, setting="euler")
    write_job(tmp_path, 0, nfe_budget=2, nfe=2, metrics={"energy_distance": math.inf}, **common)
    assert main([str(tmp_path / "0")]) == 0
    assert "| euler | inf |" in capsys.readouterr().out
    write_job(tmp_path, 1, nfe_budget=4, nfe=4, metrics={"energy_distance": 0.2}, **common)
    write_job(tmp_path, 2, nfe_budget=4, nfe=4, metrics={"energy_distance": math.nan}, **common)
    assert main([str(tmp_path)]) == 0
    assert "| euler | inf | nan |" in capsys.readouterr().out
    assert (tmp_path / "report" / "energy_distance_vs_nfe.png").stat().st_size > 5000


def _break(folder: Path, how: str) -> list[str]:
    """Damage the multirun folder; return the CLI arguments and the expected message fragments."""
    if how == "missing_folder":
        shutil.rmtree(folder)
        return [str(folder)], ["folder not found"]
    if how == "no_results":
        for f in folder.rglob("results.json"):
            f.unlink()
        return [str(folder)], ["no results.json"]
    if how == "bad_json":
        (folder / "3" / "results.json").write_text("{not json")
        return [str(folder)], [str(folder / "3" / "results.json"), "not valid JSON"]
    if how == "missing_key":
        path = folder / "5" / "results.json"
        data = json.loads(path.read_text())
        del data["nfe_budget"]
        path.write_text(json.dumps(data))
        return [str(folder)], [str(path), "'nfe_budget'"]
    return [str(folder), "--metric", "fid"], ["'fid'", "energy_distance, nll"]


@pytest.mark.parametrize("how", ["missing_folder", "no_results", "bad_json", "missing_key", "unknown_metric"])
def test_errors(multirun: Path, tmp_path: Path, capsys, how: str) -> None:
    args, fragments = _break(multirun, how)
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("steindiff-report: error: ")
    assert all(f in lines[0] for f in fragments)
    assert not out.exists() and not (multirun / "report").exists()


def test_console_script(multirun: Path) -> None:
    exe = shutil.which("steindiff-report")
    if exe is None:
        pytest.skip("steindiff-report not installed (pip install -e .)")
    proc = subprocess.run([exe, str(multirun)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"wrote {multirun / 'report'}")
    assert (multirun / "report" / "results.csv").exists()
