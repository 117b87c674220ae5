"""steindiff-sample on image data: digits-FID / KID / IS in results.json, an image grid, and one-line
errors for bad reference statistics or metrics that do not fit the samples (nothing complete-looking left)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from steindiff.metrics.fid import ReferenceStats, save_reference

REPO = Path(__file__).resolve().parents[1]
GAUSSIAN = "denoiser._target_=tests.fake_modules.DigitsGaussian"


def run_app(tmp_path, *overrides):
    env = dict(os.environ, STEINDIFF_RUNS_DIR=str(tmp_path / "runs"), WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "steindiff.cli.sample", f"hydra.run.dir={tmp_path / 'run'}",
                           *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_image_run_with_digits_metrics(tmp_path):
    proc = run_app(tmp_path, "~denoiser.name", "~denoiser.temperature", "~denoiser.residual_scale",
                   "~denoiser.sigma_scale", GAUSSIAN, "metrics=digits_fid", "metrics.kid_subset_size=50",
                   "solver=heun", "nfe=9", "num_samples=60", "batch_size=32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["metrics"]) == {"fid", "kid", "inception_score"} and results["complete"]
    assert results["metrics"]["fid"] > 0 and np.isfinite(results["metrics"]["kid"])
    assert (tmp_path / "run" / "samples.png").is_file()


@pytest.mark.parametrize("case", ["missing", "truncated", "dimension"])
def test_bad_reference_statistics_stop_before_sampling(tmp_path, case):
    path = tmp_path / f"{case}.npz"
    if case != "missing":
        save_reference(path, ReferenceStats(np.zeros(2048 if case == "dimension" else 64), np.eye(2048 if case ==
                                            "dimension" else 64), 10))
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    proc = run_app(tmp_path, "~denoiser.name", "~denoiser.temperature", "~denoiser.residual_scale",
                   "~denoiser.sigma_scale", GAUSSIAN, "metrics=fid", "metrics.features=digits",
                   f"metrics.reference={path}", "num_samples=8")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("steindiff-sample: error:")]
    assert len(lines) == 1 and str(path) in lines[0], proc.stderr[-2000:]
    assert {"missing": "not found", "truncated": "not a readable npz", "dimension": "2048 features"}[case] in lines[0]
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "samples").exists()


def test_image_metrics_on_mixture_samples_is_one_line(tmp_path):
    proc = run_app(tmp_path, "metrics=digits_fid", "num_samples=8")
    assert proc.returncode == 2
    assert "steindiff-sample: error:" in proc.stderr and "expect (N, 1, 8k, 8k) images" in proc.stderr
    assert not (tmp_path / "run" / "results.json").exists()
