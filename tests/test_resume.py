"""Long runs survive interruption and bad input (kill and resume, refused config changes, NaN, W&B)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from steindiff.lightning import load_samples, verify_run

REPO = Path(__file__).resolve().parents[1]
COMMON = ["num_samples=400", "batch_size=40", "corrector=stein_clipped", "solver=dpmpp_2m", "nfe=6"]


def _env(tmp_path):
    env = dict(os.environ)
    env.update(STEINDIFF_RUNS_DIR=str(tmp_path / "runs"), WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"),
               WANDB_SILENT="true", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def _cmd(*overrides):
    return [sys.executable, "-m", "steindiff.cli.sample", *overrides]


def run(tmp_path, *overrides, check=True):
    proc = subprocess.run(_cmd(*overrides), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def _shards(folder: Path) -> list[Path]:
    return sorted((folder / "samples").glob("seeds-*.npz")) if (folder / "samples").exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    run(tmp, *COMMON, "hydra.run.dir=ref")
    return tmp / "ref"


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(4))
def test_kill_and_resume_loses_and_duplicates_nothing(tmp_path, reference, trial):
    rng = random.Random(trial)
    sig = signal.SIGKILL if trial % 2 == 0 else signal.SIGTERM
    stop_after = rng.randint(1, 8)  # shards written before the signal
    proc = subprocess.Popen(_cmd(*COMMON, "debug.throttle_s=0.25", "hydra.run.dir=run"), cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "run"
    deadline = time.time() + 120
    while len(_shards(folder)) < stop_after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.25))  # anywhere inside the next batch
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the run finished before the signal; make it slower"
    if sig == signal.SIGTERM:
        assert proc.returncode == 3 and "interrupted" in err
    assert not (folder / "results.json").exists(), "an interrupted run left results.json"
    partial = verify_run(folder, list(range(400)))
    assert not partial["complete"] and not partial["bad_shards"] and not partial["duplicated"]
    done_before = partial["present"]
    # resume: the same command in the same folder
    run(tmp_path, *COMMON, "hydra.run.dir=run")
    final = verify_run(folder, list(range(400)))
    assert final["complete"], final
    results = json.loads((folder / "results.json").read_text())
    assert results["complete"] and results["resumed_batches"] == done_before // 40
    s_ref, x_ref = load_samples(reference)
    s_got, x_got = load_samples(folder)
    assert np.array_equal(s_ref, s_got)
    np.testing.assert_array_equal(x_ref, x_got)
    ref_metrics = json.loads((reference / "results.json").read_text())["metrics"]
    assert results["metrics"] == ref_metrics
    verify = subprocess.run([sys.executable, "-m", "steindiff.cli.verify", str(folder)], capture_output=True,
                            text=True, env=_env(tmp_path))
    assert verify.returncode == 0 and "OK" in verify.stdout


def test_changed_config_in_existing_folder_is_refused(tmp_path):
    run(tmp_path, "num_samples=80", "batch_size=40", "hydra.run.dir=run")
    before = sorted(p.name for p in _shards(tmp_path / "run"))
    (tmp_path / "run" / "results.json").rename(tmp_path / "run" / "results.keep")
    proc = run(tmp_path, "num_samples=80", "batch_size=40", "nfe=4", "solver=euler", "hydra.run.dir=run",
               check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1
    assert "another configuration" in lines[0] and "nfe (8 -> 4)" in lines[0] and "solver" in lines[0]
    assert sorted(p.name for p in _shards(tmp_path / "run")) == before
    assert not (tmp_path / "run" / "results.json").exists()


def test_corrupted_shard_is_recomputed(tmp_path):
    run(tmp_path, "num_samples=120", "batch_size=40", "hydra.run.dir=run")
    first = _shards(tmp_path / "run")[0]
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])  # truncated, as a disk error would leave it
    report = verify_run(tmp_path / "run", list(range(120)))
    assert not report["complete"] and report["bad_shards"]
    verify = subprocess.run([sys.executable, "-m", "steindiff.cli.verify", str(tmp_path / "run")],
                            capture_output=True, text=True, env=_env(tmp_path))
    assert verify.returncode == 1 and "NOT COMPLETE" in verify.stdout
    run(tmp_path, "num_samples=120", "batch_size=40", "hydra.run.dir=run")
    assert verify_run(tmp_path / "run", list(range(120)))["complete"]


def test_nan_denoiser_is_a_one_line_error_naming_seed_step_and_sigma(tmp_path):
    proc = run(tmp_path, "denoiser._target_=tests.fake_modules.nan_ring", "corrector=stein", "num_samples=40",
               "hydra.run.dir=run", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip().startswith("steindiff-sample")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "NaN or Inf for seed 0" in lines[0] and "step" in lines[0] and "sigma" in lines[0]
    assert not _shards(tmp_path / "run") and not (tmp_path / "run" / "results.json").exists()


def test_unreachable_wandb_leaves_files_only(tmp_path):
    proc = run(tmp_path, "logger=wandb", "logger.wandb._target_=tests.fake_modules.BrokenWandbLogger", "num_samples=40",
               "hydra.run.dir=run")
    assert "continuing with files only" in proc.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["complete"]


@pytest.mark.parametrize("override,message", [
    ("schedule.sigma_min=-1", "sigma_min"),
    ("corrector=stein corrector.gamma_min=2 corrector.gamma_max=1", "gamma_min"),
    ("corrector=stein corrector.sigma_window=[2,1]", "sigma_window"),
])
def test_more_bad_values_are_one_line_errors(tmp_path, override, message):
    proc = run(tmp_path, *override.split(), "hydra.run.dir=run", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-1500:]
    assert not (tmp_path / "run" / "results.json").exists()
