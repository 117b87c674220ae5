"""steindiff-sample, the Hydra app: composition, one-line errors, runs, DDP, W&B, sweeps."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from steindiff.build import build_run, compose_sample_config
from steindiff.cli.app import conf_dir
from steindiff.lightning import load_samples, seed_batches

SHARED_GROUPS = ("logger", "trainer")  # in steindiff/conf/shared/, found through sample.yaml's hydra.searchpath
GROUPS = {g: sorted(p.stem for p in (conf_dir("shared" if g in SHARED_GROUPS else "sample") / g).glob("*.yaml"))
          for g in ("denoiser", "schedule", "solver", "corrector", "metrics", "decoder", "logger", "trainer",
                    "experiment")}


def _env(tmp_path):
    env = dict(os.environ)
    env.update(STEINDIFF_RUNS_DIR=str(tmp_path / "runs"), WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"),
               WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_SILENT="true", OMP_NUM_THREADS="1")
    return env


def run_app(tmp_path, *overrides, check=True):
    proc = subprocess.run([sys.executable, "-m", "steindiff.cli.sample", *overrides], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_config_group_option_composes_and_builds(group, option):
    overrides = [f"experiment={option}"] if group == "experiment" else [f"{group}={option}"]
    cfg = compose_sample_config(overrides)
    # options with a mandatory value (???, a checkpoint or statistics file) are built with real files in
    # test_loaders.py and test_app_images.py; metrics=mixture needs a mixture denoiser
    if "???" in str(cfg[group] if group != "experiment" else "") or (group, option) in (("metrics", "fid"),):
        return
    if group == "metrics" and option == "digits_fid":
        cfg = compose_sample_config([*overrides, "denoiser=digits_unet"])
    if group == "denoiser" and option in ("digits_unet", "ring2d_mlp", "aniso32_mlp"):
        cfg = compose_sample_config([*overrides, "metrics=none"])
    run = build_run(cfg)
    assert run.grid.num_steps >= 1 and run.solver is not None and run.corrector is not None


@pytest.mark.parametrize("overrides,message", [(["solver=rk4"], "Could not find 'solver/rk4'"),
                                               (["schedule=foo"], "Could not find 'schedule/foo'"),
                                               (["corrector=foo"], "Could not find 'corrector/foo'"),
                                               (["nfee=3"], "Could not override 'nfee'"),
                                               (["nfe=0"], "nfe=0 is not accepted")])
def test_bad_command_lines_exit_2_with_one_line(tmp_path, overrides, message):
    proc = run_app(tmp_path, *overrides, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("steindiff-sample: error:")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("results.json"))


def test_seed_batches_shard_without_duplicates():
    seeds = list(range(103))
    for world in (1, 2, 3, 8):
        got = sorted(s for r in range(world) for b in seed_batches(seeds, 10, r, world) for s in b)
        assert got == seeds


def test_default_run_writes_everything(tmp_path):
    run_app(tmp_path, "num_samples=300", "batch_size=100", "corrector=stein", "corrector.gamma_min=0.5",
            "diagnostics.lipschitz=true", "hydra.run.dir=run")
    out = tmp_path / "run"
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and results["nfe"] == results["expected_nfe"] == 8
    assert 0 < results["timing"]["first_batch_s"] < 600 and results["timing"]["sampling_s"] >= 0
    assert set(results["metrics"]) >= {"energy_distance", "nll"}
    assert len(results["trace"]) == 8 and all("gamma" in t and "lipschitz_mean" in t for t in results["trace"])
    for name in ("scatter.png", "gamma.png", "lipschitz.png", "config.yaml", "csv/version_0/metrics.csv"):
        assert (out / name).exists(), name
    seeds, samples = load_samples(out)
    assert seeds.tolist() == list(range(300)) and samples.shape == (300, 2)
    assert "energy_distance" in (out / "csv" / "version_0" / "metrics.csv").read_text()


@pytest.mark.slow
def test_ddp_two_processes_equal_one(tmp_path):
    common = ["num_samples=200", "batch_size=40", "solver=dpmpp_2m", "corrector=stein", "corrector.statistics=group",
              "corrector.group_size=20", "corrector.gamma_min=0.5", "corrector.gamma_max=1.5"]
    run_app(tmp_path, *common, "hydra.run.dir=one")
    run_app(tmp_path, *common, "trainer=ddp", "trainer.devices=2", "hydra.run.dir=two")
    s1, x1 = load_samples(tmp_path / "one")
    s2, x2 = load_samples(tmp_path / "two")
    assert np.array_equal(s1, s2) and len(s1) == 200
    np.testing.assert_array_equal(x1, x2)  # bit-identical: group statistics do not couple across batches
    m1 = json.loads((tmp_path / "one" / "results.json").read_text())["metrics"]
    m2 = json.loads((tmp_path / "two" / "results.json").read_text())["metrics"]
    assert m1.keys() == m2.keys()
    for k in m1:  # same samples; the metric states are gathered in another order (float summation)
        assert m1[k] == pytest.approx(m2[k], rel=1e-9, abs=1e-12), k


@pytest.mark.slow
def test_wandb_offline_run_logs_metrics(tmp_path):
    run_app(tmp_path, "num_samples=100", "logger=wandb", "hydra.run.dir=wb")
    files = list((tmp_path / "wb").rglob("*.wandb"))
    assert files, "no offline W&B run file"
    blob = files[0].read_bytes()
    for key in (b"energy_distance", b"nll", b"trace", b"scatter"):
        assert key in blob, key


def test_sweep_2x2_and_report(tmp_path):
    run_app(tmp_path, "-m", "solver=euler,dpmpp_2m", "nfe=4,6", "num_samples=100", "batch_size=100",
            "hydra.sweep.dir=sweep")
    found = sorted((tmp_path / "sweep").rglob("results.json"))
    assert len(found) == 4
    settings = {json.loads(p.read_text())["setting"] for p in found}
    assert settings == {"euler / none", "dpmpp_2m / none"}
    proc = subprocess.run([sys.executable, "-m", "steindiff.cli.report", str(tmp_path / "sweep")], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "sweep" / "report"
    md = (report / "report.md").read_text()
    assert "euler / none" in md and "NFE 4" in md and "NFE 6" in md
    assert (report / "results.csv").read_text().count("\n") == 5
    assert list(report.glob("*.png"))


def test_multirun_with_ddp_is_refused(tmp_path):
    proc = run_app(tmp_path, "-m", "trainer=ddp", "num_samples=10", "batch_size=5",
                    "hydra.sweep.dir=sweep", check=False)
    assert proc.returncode != 0
    assert "not supported" in proc.stderr
    assert not list((tmp_path / "sweep").rglob("results.json"))


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    run_app(tmp_path, "-m", "hydra/launcher=local", "solver=euler,heun", "nfe=4", "num_samples=50",
            "hydra.sweep.dir=sweep")
    found = sorted((tmp_path / "sweep").rglob("results.json"))
    assert len(found) == 2
    assert {json.loads(p.read_text())["solver"] for p in found} == {"euler", "heun"}


def test_typed_schema_refuses_wrong_types(tmp_path):
    proc = run_app(tmp_path, "nfe=abc", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1
    assert "nfe=abc" in lines[0] and "Integer" in lines[0]


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboardX")
    run_app(tmp_path, "num_samples=50", "logger=tensorboard", "hydra.run.dir=tb")
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and b"energy_distance" in events[0].read_bytes()
