"""steindiff-report: rows per setting (the varying config keys as columns), spread only over seed sets,
experiments split, honest error bars; on a real small sweep and on hand-made run folders."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from steindiff.cli.report import main
from steindiff.reporting.figures import metric_figure
from steindiff.reporting.runs import load_jobs
from steindiff.reporting.settings import split_experiments

# ---------------------------------------------------------------------------------------------------------
# hand-made run folders: results.json with the fields RunResults writes and a resolved config


def make_config(solver="euler", corrector="none", denoiser="ring2d", temperature=1.0, seed_set=0, nfe=4,
                metrics="mixture", **top) -> dict:
    return {"denoiser": {"_target_": "steindiff.core.mixture.mixture_preset", "name": denoiser,
                         "temperature": temperature},
            "schedule": {"_target_": "steindiff.core.schedules.Schedule", "name": "edm", "rho": 7.0},
            "solver": {"_target_": f"steindiff.core.solvers.{solver.title()}"},
            "corrector": {"_target_": f"steindiff.core.correctors.{corrector.title()}"},
            "metrics": {"_target_": f"steindiff.metrics.{metrics}", "data": denoiser},
            "logger": {"save_dir": f"/somewhere/{seed_set}"}, "trainer": {"devices": 1}, "nfe": nfe, "steps": None,
            "num_samples": 1000, "seed_set": seed_set, "seeds": None, "batch_size": 500, "num_threads": 1,
            "run_name": f"{solver} / {corrector}", "run_group": "sweep", "plots": True, **top}


def write_job(folder: Path, name, *, metrics: dict, solver="euler", corrector="none", nfe_budget=4, nfe=None,
              seed_set=0, complete=True, config: dict | None = None, **config_keys) -> Path:
    job = folder / str(name)
    job.mkdir(parents=True)
    nfe = nfe_budget if nfe is None else nfe
    config = config or make_config(solver, corrector, seed_set=seed_set, nfe=nfe_budget, **config_keys)
    results = dict(setting=f"{solver} / {corrector}", solver=solver, corrector=corrector, nfe_budget=nfe_budget,
                   nfe=nfe, num_steps=nfe_budget // 2, final_step="zero", seed_set=seed_set,
                   seeds=f"{seed_set * 1000}..{seed_set * 1000 + 999}", num_samples=1000, complete=complete,
                   config=config, metrics=metrics, sigmas=[1.0, 0.0], trace=[])
    (job / "results.json").write_text(json.dumps(results))
    return job


SOLVERS, CORRECTORS, BUDGETS, SEEDS = ("euler", "heun"), ("none", "stein"), (4, 8), (0, 1)


def energy(solver: str, corrector: str, budget: int, seed: int) -> float:
    return (2.0 if solver == "euler" else 1.0) / budget * (0.5 if corrector == "stein" else 1.0) + 0.01 * seed


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    folder = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    idx = 0
    for solver in SOLVERS:
        for corrector in CORRECTORS:
            for budget in BUDGETS:
                for seed in SEEDS:
                    # heun at budget 4 measures 3 NFE (odd budget rounding): shown as "NFE 3" in the cell
                    nfe = budget - 1 if solver == "heun" and budget == 4 else budget
                    write_job(folder, idx, solver=solver, corrector=corrector, nfe_budget=budget, nfe=nfe,
                              seed_set=seed, metrics={"energy_distance": energy(solver, corrector, budget, seed),
                                                      "nll": 3.0 + seed})
                    idx += 1
    # an incomplete job (would spoil the euler/none NFE 4 cell) and a job that crashed before writing results
    write_job(folder, idx, nfe_budget=4, complete=False, metrics={"energy_distance": 99.0, "nll": 99.0})
    (folder / str(idx + 1) / ".hydra").mkdir(parents=True)
    (folder / "multirun.yaml").write_text("hydra: {}\n")
    return folder


def table(md: str, metric: str, section: str = "") -> list[dict[str, str]]:
    """The rows of the Markdown table of ``metric`` (in the part of ``md`` after ``section``)."""
    lines = md.split(section, 1)[1].splitlines() if section else md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### ") and f"(`{metric}`" in line)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, r)) for r in body]


def test_report_outputs(multirun: Path, capsys) -> None:
    assert main([str(multirun)]) == 0
    out = multirun / "report"
    stdout = capsys.readouterr().out
    assert stdout.strip().splitlines()[-1] == f"wrote {out}"
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 2 * 2 + 1 and sum(r["complete"] == "False" for r in rows) == 1
    assert list(rows[0])[:12] == ["setting", "solver", "corrector", "nfe_budget", "nfe", "num_steps", "final_step",
                                  "seed_set", "seeds", "num_samples", "complete", "experiment"]
    md = (out / "report.md").read_text()
    assert md.strip() in stdout
    assert "One experiment: denoiser=ring2d, metrics=mixture." in md
    assert "17 jobs, 1 incomplete (excluded from tables and plots: `16`)." in md
    rows_md = table(md, "energy_distance")
    assert list(rows_md[0]) == ["solver / corrector", "NFE 4", "NFE 8"]  # nothing but solver/corrector varies
    # corrector "none" first
    assert [r["solver / corrector"] for r in rows_md] == ["euler / none", "heun / none", "euler / stein",
                                                          "heun / stein"]
    # euler/none at NFE 4, by hand: 0.5 and 0.51 (the incomplete job's 99.0 is excluded)
    vals = [energy("euler", "none", 4, s) for s in SEEDS]
    assert rows_md[0]["NFE 4"] == f"{statistics.mean(vals):.4g} ± {statistics.stdev(vals):.2g} (n=2)" \
        == "0.505 ± 0.0071 (n=2)"
    assert rows_md[1]["NFE 4"].endswith("(n=2, NFE 3)") and rows_md[1]["NFE 8"].endswith("(n=2)")
    assert "99" not in json.dumps(rows_md)
    for m in ("energy_distance", "nll"):
        png = out / f"{m}_vs_nfe.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_metric_filter_and_out(multirun: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    assert main([str(multirun), "--out", str(out), "--metric", "nll"]) == 0
    md = (out / "report.md").read_text()
    assert "(`nll`" in md and "(`energy_distance`" not in md
    assert sorted(p.name for p in out.iterdir()) == ["nll_vs_nfe.png", "report.md", "results.csv"]
    assert not (multirun / "report").exists()


def test_single_run_folder_and_nonfinite(tmp_path: Path, capsys) -> None:
    write_job(tmp_path, 0, nfe_budget=2, metrics={"energy_distance": math.inf})
    assert main([str(tmp_path / "0")]) == 0
    assert "| euler / none | inf (n=1) |" in capsys.readouterr().out
    write_job(tmp_path, 1, nfe_budget=4, metrics={"energy_distance": 0.2})
    write_job(tmp_path, 2, nfe_budget=4, seed_set=1, metrics={"energy_distance": math.nan})
    assert main([str(tmp_path)]) == 0
    assert "| euler / none | inf (n=1) | nan (n=2) |" in capsys.readouterr().out
    assert (tmp_path / "report" / "energy_distance_vs_nfe.png").stat().st_size > 5000


def test_repeated_seed_set_counts_once(tmp_path: Path) -> None:
    write_job(tmp_path, 0, metrics={"energy_distance": 0.2})
    write_job(tmp_path, 1, seed_set=1, metrics={"energy_distance": 0.4})
    write_job(tmp_path / "copy", 0, metrics={"energy_distance": 0.2})  # the same run in another folder
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert table(md, "energy_distance")[0]["NFE 4"] == f"0.3 ± {statistics.stdev([0.2, 0.4]):.2g} (n=2)"
    assert "Jobs repeating a seed set of their setting" in md and "`copy/0`" in md


# ---------------------------------------------------------------------------------------------------------
# experiments are split, never averaged


def test_mixed_experiments_are_split(tmp_path: Path) -> None:
    write_job(tmp_path / "ring", 0, metrics={"energy_distance": 0.3})
    write_job(tmp_path / "ring", 1, seed_set=1, metrics={"energy_distance": 0.5})
    write_job(tmp_path / "aniso", 0, denoiser="aniso32", metrics={"energy_distance": 12.5})
    write_job(tmp_path / "images", 0, metrics={"fid": 40.0}, config=make_config(metrics="fid.image_metrics"))
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "These jobs are 3 experiments (they differ in denoiser.name, metrics._target_, metrics.data, " \
           "metric names): split into separate tables" in md
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections == ["## Experiment 1 of 3: denoiser=aniso32, metrics=mixture",
                        "## Experiment 2 of 3: denoiser=ring2d, metrics=image_metrics",
                        "## Experiment 3 of 3: denoiser=ring2d, metrics=mixture"]
    assert table(md, "energy_distance", sections[0])[0]["NFE 4"] == "12.5 (n=1)"
    assert table(md, "fid", sections[1])[0]["NFE 4"] == "40 (n=1)"
    ring = table(md, "energy_distance", sections[2])[0]["NFE 4"]
    assert ring == f"0.4 ± {statistics.stdev([0.3, 0.5]):.2g} (n=2)"
    assert "6.4" not in md  # the mean over both test-beds appears nowhere
    plots = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert plots == ["denoiser_aniso32_metrics_mixture__energy_distance_vs_nfe.png",
                     "denoiser_ring2d_metrics_image_metrics__fid_vs_nfe.png",
                     "denoiser_ring2d_metrics_mixture__energy_distance_vs_nfe.png"]


def test_settings_within_a_choice_are_columns(tmp_path: Path) -> None:
    """A key that differs between jobs of one group option is a column; one that comes with the option is not."""
    for i, (corrector, statistics_, batch) in enumerate([("none", None, 500), ("stein", "batch", 500),
                                                          ("stein", "group", 500), ("stein", "batch", 100)]):
        config = make_config(corrector=corrector, batch_size=batch)
        if statistics_:
            config["corrector"].update(statistics=statistics_, num_probes=5)  # num_probes: stein only, fixed
        write_job(tmp_path, i, corrector=corrector, config=config, metrics={"energy_distance": 0.1 * (i + 1)})
    assert main([str(tmp_path)]) == 0
    rows = table((tmp_path / "report" / "report.md").read_text(), "energy_distance")
    assert rows == [{"solver / corrector": "euler / none", "corrector.statistics": "–", "batch_size": "500",
                     "NFE 4": "0.1 (n=1)"},
                    {"solver / corrector": "euler / stein", "corrector.statistics": "batch", "batch_size": "100",
                     "NFE 4": "0.4 (n=1)"},
                    {"solver / corrector": "euler / stein", "corrector.statistics": "batch", "batch_size": "500",
                     "NFE 4": "0.2 (n=1)"},
                    {"solver / corrector": "euler / stein", "corrector.statistics": "group", "batch_size": "500",
                     "NFE 4": "0.3 (n=1)"}]


# ---------------------------------------------------------------------------------------------------------
# plots: error bars right on the axis they are drawn on


def _bars(ax) -> list[tuple[float, float]]:
    """(lower, upper) of every error bar drawn on ``ax``."""
    return [(float(s[0][1]), float(s[1][1])) for c in ax.containers for s in c.lines[2][0].get_segments()]


def test_error_bars_fit_their_axis(tmp_path: Path) -> None:
    values = {("euler", 0): (0.05, 0.0, -5.0), ("euler", 1): (1.0, 0.9, 3.0),  # wide spread across seed sets
              ("heun", 0): (10.0, 0.1, 2000.0), ("heun", 1): (10.5, 0.12, 2100.0)}
    for i, ((solver, seed), (ed, tv, nll)) in enumerate(values.items()):
        write_job(tmp_path, i, solver=solver, seed_set=seed,
                  metrics={"energy_distance": ed, "mode_tv": tv, "nll": nll})
    (exp,) = split_experiments(load_jobs(tmp_path))

    ax = metric_figure(exp, "energy_distance").axes[0]
    assert ax.get_yscale() == "log"  # 0.05 .. 10.5: more than a decade
    mean = statistics.mean([0.05, 1.0])
    assert mean - statistics.stdev([0.05, 1.0]) < 0  # mean ± std would cross zero
    factor = math.exp(statistics.stdev([math.log(0.05), math.log(1.0)]))
    assert _bars(ax)[0] == pytest.approx((mean / factor, mean * factor))
    assert all(lo > 0 for lo, _ in _bars(ax))
    assert "lower is better" in ax.get_ylabel() and "data units" in ax.get_ylabel()
    assert "denoiser=ring2d, metrics=mixture" in ax.get_title()

    fig = metric_figure(exp, "mode_tv")
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear" and _bars(ax)[0] == (0.0, 1.0)  # 0.45 ± 0.64
    assert all(0.0 <= lo <= hi <= 1.0 for lo, hi in _bars(ax))
    assert "clipped to the metric's range [0, 1]" in fig.texts[0].get_text()

    ax = metric_figure(exp, "nll").axes[0]
    assert ax.get_yscale() == "symlog"  # NLL can be negative: no log axis
    spread = statistics.stdev([-5.0, 3.0])
    assert _bars(ax)[0] == pytest.approx((-1.0 - spread, -1.0 + spread))  # not clipped


# ---------------------------------------------------------------------------------------------------------
# a real sweep: schedule x denoiser.temperature, two seed sets (8 jobs, about 10 s on one core: mostly the
# app's start-up and Hydra composing each job's config)


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real")
    env = dict(os.environ, STEINDIFF_RUNS_DIR=str(root / "runs"), WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "steindiff.cli.sample", "-m", "schedule=edm,logsnr",
                           "denoiser.temperature=0.5,1.0", "nfe=3", "seed_set=0,1", "num_samples=20",
                           "batch_size=20", "plots=false", "hydra.sweep.dir=sweep"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep"


def _setting(results: dict) -> tuple:
    c = results["config"]
    return c["schedule"]["name"], c["denoiser"]["temperature"], results["nfe_budget"]


def test_real_sweep_rows_per_setting(real_sweep: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(real_sweep, tmp_path / "sweep")
    # keep both seed sets of (edm, 0.5) only: its cells have n=2, the others n=1
    for path in folder.glob("*/results.json"):
        r = json.loads(path.read_text())
        if r["seed_set"] == 1 and _setting(r)[:2] != ("edm", 0.5):
            shutil.rmtree(path.parent)
    by_setting: dict[tuple, list[float]] = {}
    for path in folder.glob("*/results.json"):
        r = json.loads(path.read_text())
        by_setting.setdefault(_setting(r), []).append(r["metrics"]["energy_distance"])
    assert sorted(len(v) for v in by_setting.values()) == [1, 1, 1, 2]

    assert main([str(folder)]) == 0
    md = (folder / "report" / "report.md").read_text()
    rows = table(md, "energy_distance")
    assert [list(r)[:3] for r in rows] == [["solver / corrector", "schedule", "denoiser.temperature"]] * 4
    assert [(r["schedule"], r["denoiser.temperature"]) for r in rows] == \
        [("edm", "0.5"), ("edm", "1.0"), ("logsnr", "0.5"), ("logsnr", "1.0")]
    for r in rows:
        assert r["solver / corrector"] == "dpmpp_2m / none"
        vals = by_setting[(r["schedule"], float(r["denoiser.temperature"]), 3)]
        expected = f"{statistics.mean(vals):.4g} ± {statistics.stdev(vals):.2g} (n=2)" if len(vals) == 2 \
            else f"{vals[0]:.4g} (n=1)"
        assert r["NFE 3"] == expected
    assert "Fixed: schedule" not in md and "num_samples=20" in md
    with (folder / "report" / "results.csv").open() as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 5 and {(r["schedule"], r["denoiser.temperature"]) for r in csv_rows} == \
        {("edm", "0.5"), ("edm", "1.0"), ("logsnr", "0.5"), ("logsnr", "1.0")}


def test_real_sweep_plots(real_sweep: Path) -> None:
    (exp,) = split_experiments(load_jobs(real_sweep))
    assert exp.columns == ["solver / corrector", "schedule", "denoiser.temperature"]
    for metric in ("energy_distance", "sliced_w2", "nll", "mode_tv", "off_manifold"):
        fig = metric_figure(exp, metric)
        ax = fig.axes[0]
        bars = _bars(ax)
        assert len(ax.get_legend().get_texts()) == 4 and all("(n=2)" in t.get_text()
                                                             for t in ax.get_legend().get_texts())
        if ax.get_yscale() == "log":
            assert all(lo > 0 for lo, _ in bars), metric
        if metric in ("mode_tv", "off_manifold"):
            assert all(0.0 <= lo <= hi <= 1.0 for lo, hi in bars), metric
        assert "is better" in ax.get_ylabel() and "NFE" in ax.get_xlabel()


# ---------------------------------------------------------------------------------------------------------
# errors: one line, exit 2, nothing written


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
    path = folder / "5" / "results.json"
    data = json.loads(path.read_text())
    if how == "missing_key":
        del data["nfe_budget"]
        path.write_text(json.dumps(data))
        return [str(folder)], [str(path), "'nfe_budget'"]
    if how == "no_config":
        del data["config"]
        path.write_text(json.dumps(data))
        return [str(folder)], [str(folder / "5"), "no resolved config"]
    return [str(folder), "--metric", "fid"], ["'fid'", "energy_distance, nll"]


@pytest.mark.parametrize("how", ["missing_folder", "no_results", "bad_json", "missing_key", "no_config",
                                 "unknown_metric"])
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


def test_config_yaml_is_read_when_results_lack_it(multirun: Path) -> None:
    path = multirun / "5" / "results.json"
    data = json.loads(path.read_text())
    (multirun / "5" / "config.yaml").write_text(json.dumps(data.pop("config")))  # JSON is YAML
    path.write_text(json.dumps(data))
    assert main([str(multirun)]) == 0


def test_console_script(multirun: Path) -> None:
    exe = shutil.which("steindiff-report")
    if exe is None:
        pytest.skip("steindiff-report not installed (pip install -e .)")
    proc = subprocess.run([exe, str(multirun)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"wrote {multirun / 'report'}")
    assert (multirun / "report" / "results.csv").exists()
