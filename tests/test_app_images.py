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
    assert set(results["metrics"]) == {"digits_fid", "digits_kid", "digits_inception_score"} and results["complete"]
    assert results["metrics"]["digits_fid"] > 0 and np.isfinite(results["metrics"]["digits_kid"])
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


def test_latent_pipeline_with_decoder_end_to_end(tmp_path):
    """A tiny latent model (diffusers UNet2DModel on 4x8x8 latents) + AutoencoderKL decode stage: the shards
    keep the latents, the metrics see decoded 3x16x16 images (a TorchScript stand-in feature network)."""
    diffusers = pytest.importorskip("diffusers")
    import torch

    from steindiff.metrics.fid import FrechetDistance, feature_extractor, save_reference

    torch.manual_seed(0)
    root = tmp_path / "ldm"
    diffusers.UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                          norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                          up_block_types=("UpBlock2D",) * 2).save_pretrained(root / "unet")
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            layers_per_block=1, norm_num_groups=4, sample_size=16,
                            scaling_factor=0.25).save_pretrained(root / "vae")
    stand_in = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.Flatten(1, 3))),
                   str(stand_in))
    kwargs = {"input_size": [8, 8]}
    feature = feature_extractor("torchscript", stand_in, **kwargs)
    metric = FrechetDistance(feature)
    metric.update(torch.rand(40, 3, 16, 16) * 2 - 1, real=True)
    reference = save_reference(tmp_path / "ref.npz", metric.statistics("real"))
    proc = run_app(tmp_path, "denoiser=diffusers_unet", f"denoiser.path={root}", "decoder=autoencoder_kl",
                   f"decoder.path={root}", "metrics=fid", "metrics.features=torchscript", f"metrics.weights={stand_in}",
                   f"metrics.reference={reference}", "+metrics.feature_kwargs.input_size=[8,8]", "solver=euler",
                   "nfe=3", "num_samples=6", "batch_size=6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert np.isfinite(results["metrics"]["torchscript_fid"]) and "VPDiscrete" in results["process"]
    shard = next((tmp_path / "run" / "samples").glob("*.npz"))
    assert np.load(shard)["samples"].shape == (6, 4, 8, 8)  # latents on disk
    assert (tmp_path / "run" / "samples.png").is_file()  # decoded images in the grid


def test_learned_digits_experiment_runs(tmp_path):
    """The README's main job (experiment=digits), smaller: the committed U-Net, Heun, digits metrics."""
    proc = run_app(tmp_path, "experiment=digits", "nfe=11", "num_samples=40", "metrics.kid_subset_size=20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["nfe"] == 11 and results["solver"] == "heun" and results["complete"]
    assert set(results["metrics"]) == {"digits_fid", "digits_kid", "digits_inception_score"}
    assert (tmp_path / "run" / "samples.png").is_file()


def test_learned_mixture_denoiser_with_exact_metrics(tmp_path):
    proc = run_app(tmp_path, "experiment=ring2d_mlp", "num_samples=100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["metrics"]["energy_distance"] < 1.0 and (tmp_path / "run" / "scatter.png").is_file()
    proc = run_app(tmp_path / "run", "denoiser=ring2d_mlp", "num_samples=10")  # no preset: one line
    assert proc.returncode == 2 and "give metrics.data=ring2d" in proc.stderr
