"""Denoiser training: EDM's loss, the EMA, the Lightning module (loss decreases, resume continues the
step count, export loads), the data modules, and steindiff-train as a subprocess (export, one-line errors)."""

import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from steindiff.cli.app import conf_dir
from steindiff.cli.train import ConfigError, validate
from steindiff.lightning.data import DigitsDataModule, MixtureDataModule, PatchesDataModule
from steindiff.lightning.training import EDMTrainingModule, edm_loss
from steindiff.models.checkpoint import load_denoiser, read_spec

TRAIN_CONF_DIR = conf_dir("train")
TINY_MLP = {"class_name": "MLP", "kwargs": {"dim": 2, "hidden": 32, "num_blocks": 1, "embedding_channels": 16}}


def _module(**kw):
    options = dict(network_spec=TINY_MLP, sigma_data=1.4, shape=(2,), lr=1e-2, warmup_steps=5,
                   ema_halflife_images=2000)
    options.update(kw)
    return EDMTrainingModule(**options)


def _data(batch_size=128):
    return MixtureDataModule("ring2d", num_train=2048, num_val=512, batch_size=batch_size)


def _trainer(tmp_path, max_steps, **kw):
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "checkpoints"), save_last=True,
                                              every_n_train_steps=5)
    return pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, callbacks=[checkpoint],
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, default_root_dir=str(tmp_path), **kw)


def _fixed_loss(denoiser, data, sigma_data):
    """EDM's loss on the validation data at fixed noise (the same draw for every call)."""
    gen = torch.Generator().manual_seed(0)
    x = data.val_data
    sigma = (torch.randn(len(x), generator=gen) * 1.2 - 1.2).exp()
    noise = torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        return float(edm_loss(denoiser, x, sigma, noise, sigma_data).mean())


def test_edm_loss_is_zero_for_the_true_data_and_weighted():
    x = torch.randn(8, 2)
    sigma = torch.full((8,), 0.5)
    noise = torch.randn(8, 2)
    assert torch.allclose(edm_loss(lambda x_, s: x, x, sigma, noise, 0.5), torch.zeros(8))
    # the identity denoiser's error is sigma * noise; weight (sigma^2 + s_d^2) / (sigma s_d)^2 = 8 at sigma = s_d = 0.5
    loss = edm_loss(lambda x_, s: x_, x, sigma, noise, 0.5)
    assert torch.allclose(loss, 8 * (0.5 * noise).square().mean(1))


def test_ema_half_life_follows_edm():
    module = _module(ema_halflife_images=1000, ema_rampup_ratio=None)
    assert module.ema_beta(1000) == pytest.approx(0.5)
    module = _module(ema_halflife_images=1000, ema_rampup_ratio=0.5)
    module.images_seen += 400  # ramp-up: half-life min(1000, 0.5 * 400) = 200 images
    assert module.ema_beta(100) == pytest.approx(0.5 ** 0.5)


def test_warmup_and_cosine_learning_rate():
    module = _module(warmup_steps=10, lr_decay="cosine", max_steps=100)
    assert module.lr_factor(0) == pytest.approx(0.1 * 1.0)
    assert module.lr_factor(50) == pytest.approx(0.5, abs=1e-9)
    assert module.lr_factor(100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_decay"):
        _module(lr_decay="step")


def test_training_decreases_the_loss_and_resume_continues(tmp_path):
    torch.manual_seed(0)
    data = _data()
    data.setup()
    module = _module()
    before = _fixed_loss(module.denoiser, data, module.sigma_data)
    _trainer(tmp_path, 150).fit(module, datamodule=data)
    after = _fixed_loss(module.denoiser, data, module.sigma_data)
    assert module.global_step == 150 and after < 0.85 * before, (before, after)
    assert int(module.images_seen) == 150 * 128
    assert not torch.equal(next(module.ema.parameters()), next(module.denoiser.parameters()))

    last = tmp_path / "checkpoints" / "last.ckpt"
    resumed = _module()
    _trainer(tmp_path, 160).fit(resumed, datamodule=data, ckpt_path=str(last))
    assert resumed.global_step == 160 and int(resumed.images_seen) == 160 * 128
    assert resumed.seconds_before > 0

    # the Lightning checkpoint and the export load as the same EMA denoiser
    exported = resumed.export(tmp_path / "ring2d.safetensors", {"command": "test"})
    from_export = load_denoiser(exported)
    from_ckpt = load_denoiser(last)
    x = torch.randn(16, 2)
    with torch.no_grad():
        assert torch.equal(from_export(x, 0.5), resumed.ema(x, 0.5))
        assert torch.equal(from_ckpt(x, 0.5), from_export(x, 0.5))  # last.ckpt holds the EMA of step 160
    assert read_spec(exported)["training"]["steps"] == 160 and from_export.spec.shape == (2,)


def test_data_modules_give_shapes_and_sigma_data():
    digits = DigitsDataModule(size=16, batch_size=32)
    assert digits.shape == (1, 16, 16) and 0.5 < digits.sigma_data < 0.8
    (batch,) = next(iter(digits.train_dataloader()))
    assert batch.shape == (32, 1, 16, 16) and batch.min() >= -1 and batch.max() <= 1
    patches = PatchesDataModule(num_train=8, num_val=4, batch_size=4, sigma_data=0.5)
    assert patches.shape == (3, 16, 16) and patches.sigma_data == 0.5
    mixture = MixtureDataModule("aniso32", num_train=100, num_val=10)
    assert mixture.shape == (32,) and mixture.val_data.shape == (10, 32)
    with pytest.raises(ValueError, match="data.size"):
        DigitsDataModule(size=12)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (TRAIN_CONF_DIR / "experiment").glob("*.yaml")))
def test_every_training_experiment_composes_and_validates(experiment):
    with initialize_config_dir(config_dir=str(TRAIN_CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    validate(cfg)


@pytest.mark.parametrize("override,message", [
    ("max_steps=0", "max_steps=0 is not accepted"), ("optim.lr=-1", "optim.lr=-1"),
    ("net.class_name=ResNet", "net.class_name='ResNet'"), ("experiment=digits data.size=12", "data: data.size=12"),
    ("experiment=patches net.kwargs.channel_mult=[1,2,2,2,2,2]", "net: img_resolution=16"),
])
def test_bad_values_are_config_errors(override, message):
    with initialize_config_dir(config_dir=str(TRAIN_CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=override.split())
    with pytest.raises(ConfigError, match=message) as err:
        validate(cfg)
    assert "\n" not in str(err.value)


def _env(tmp_path):
    env = dict(os.environ)
    env.update(STEINDIFF_RUNS_DIR=str(tmp_path / "runs"), WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    return env


TINY_RUN = ["experiment=ring2d_mlp", "max_steps=6", "batch_size=64", "net.kwargs.hidden=16", "net.kwargs.num_blocks=1",
            "data.num_train=512", "data.num_val=64", "val_every_steps=3", "checkpoint_every_steps=3", "progress=false"]


def _train(tmp_path, *overrides):
    return subprocess.run([sys.executable, "-m", "steindiff.cli.train", *overrides], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)


def test_steindiff_train_exports_a_loadable_denoiser(tmp_path):
    proc = _train(tmp_path, *TINY_RUN, "name=tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "train" / "tiny"
    denoiser = load_denoiser(run_dir / "denoiser.safetensors")
    training = read_spec(run_dir / "denoiser.safetensors")["training"]
    assert denoiser.spec.shape == (2,) and training["steps"] == 6
    assert "max_steps=6" in training["command"]
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "csv" / "version_0" / "metrics.csv").exists()
    assert load_denoiser(run_dir / "checkpoints" / "last.ckpt").spec.shape == (2,)


@pytest.mark.slow
def test_steindiff_train_resumes_in_the_same_folder(tmp_path):
    assert _train(tmp_path, *TINY_RUN, "name=tiny").returncode == 0
    run_dir = tmp_path / "runs" / "train" / "tiny"
    # the same command with more steps in the same folder resumes from last.ckpt
    proc = _train(tmp_path, *[o for o in TINY_RUN if not o.startswith("max_steps")], "max_steps=9", "name=tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stderr
    assert read_spec(run_dir / "denoiser.safetensors")["training"]["steps"] == 9
    assert (run_dir / "csv" / "version_0" / "metrics.csv").exists()  # the first session's log is kept
    assert (run_dir / "csv" / "version_1" / "metrics.csv").exists()
    # another configuration in the same folder is refused in one line
    proc = _train(tmp_path, *TINY_RUN, "name=tiny", "optim.lr=0.1")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "another configuration" in lines[0], proc.stderr


@pytest.mark.parametrize("overrides,message", [(["max_steps=0"], "max_steps=0 is not accepted"),
                                               (["experiment=nope"], "Could not find 'experiment/nope'"),
                                               (["max_stepz=3"], "Could not override 'max_stepz'")])
def test_bad_command_lines_exit_2_with_one_line(tmp_path, overrides, message):
    proc = _train(tmp_path, *overrides)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("steindiff-train: error:"), proc.stderr
    assert not (tmp_path / "runs").exists()
