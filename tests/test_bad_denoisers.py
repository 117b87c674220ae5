"""A denoiser that returns the wrong shape or NaN: the error names the step and sigma; the app exits 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from steindiff.core import build_sigmas, make_solver, sample
from steindiff.core.denoiser import DenoiserOutputError
from tests.fake_modules import nan_ring, wrong_shape_ring

REPO = Path(__file__).resolve().parents[1]


def test_wrong_shape_names_step_and_sigma():
    sigmas = build_sigmas("edm", 6)
    with pytest.raises(DenoiserOutputError) as err:
        sample(wrong_shape_ring(), sigmas, make_solver("euler"), seeds=range(4), shape=(2,))
    first_bad = next(i for i, s in enumerate(sigmas.tolist()) if s < 1.0)
    message = str(err.value)
    assert "WrongShapeBelow returned (4, 1) for input (4, 2)" in message
    assert f"at step {first_bad} (sigma {float(sigmas[first_bad]):.4g})" in message and "\n" not in message


def test_nan_step_is_marked_in_the_trace_without_a_corrector():
    sigmas = build_sigmas("edm", 6)
    result = sample(nan_ring(), sigmas, make_solver("euler"), seeds=range(4), shape=(2,))
    marked = [t["step"] for t in result.trace if t.get("nonfinite")]
    first_bad = next(i for i, s in enumerate(sigmas.tolist()) if s < 1.0)
    assert marked and marked[0] == first_bad and not torch.isfinite(result.samples).all()


def test_app_wrong_shape_is_one_line_and_writes_nothing(tmp_path):
    env = dict(os.environ, STEINDIFF_RUNS_DIR=str(tmp_path / "runs"), WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "steindiff.cli.sample", f"hydra.run.dir={tmp_path / 'run'}",
                           "denoiser._target_=tests.fake_modules.wrong_shape_ring", "num_samples=20"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("steindiff-sample: error:")]
    assert len(lines) == 1 and "returned (20, 1) for input (20, 2) at step" in lines[0] and "sigma" in lines[0]
    assert not (tmp_path / "run" / "results.json").exists()
    assert not list((tmp_path / "run").glob("samples/*.npz"))


def _run_app(tmp_path, *overrides):
    env = dict(os.environ, STEINDIFF_RUNS_DIR=str(tmp_path / "runs"), WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "steindiff.cli.sample", f"hydra.run.dir={tmp_path / 'run'}",
                           "metrics=none", *overrides], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("case", ["diffusers_missing", "diffusers_truncated", "pickle_wrong_format",
                                  "pickle_no_opt_in"])
def test_app_bad_checkpoints_are_one_line(tmp_path, case):
    if case.startswith("diffusers"):
        diffusers = pytest.importorskip("diffusers")
        folder = tmp_path / "pipe"
        if case == "diffusers_truncated":
            torch.manual_seed(0)
            diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                  layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                                  up_block_types=("UpBlock2D",) * 2).save_pretrained(folder / "unet")
            diffusers.DDPMScheduler().save_pretrained(folder / "scheduler")
            weights = next((folder / "unet").glob("diffusion_pytorch_model.*"))
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
            named = weights.parent
        else:
            named = folder
        overrides = ["denoiser=diffusers_unet", f"denoiser.path={folder}"]
    else:
        named = tmp_path / "net.pkl"
        named.write_text("this is not a pickle")
        overrides = ["denoiser=edm_pickle", f"denoiser.path={named}"]
        if case == "pickle_wrong_format":
            overrides.append("denoiser.allow_pickle=true")
    proc = _run_app(tmp_path, *overrides)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("steindiff-sample: error:")]
    assert len(lines) == 1 and str(named) in lines[0], proc.stderr[-2000:]
    assert "Error in call to target" not in lines[0]  # the loader's own message, not Hydra's wrapper
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "samples").exists()
