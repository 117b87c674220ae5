"""steindiff-train: the Hydra app that trains a small EDM denoiser and exports its EMA weights.

    steindiff-train experiment=digits                    # U-Net on 8x8 digits, a few minutes on 2 CPU cores
    steindiff-train experiment=ring2d_mlp                # MLP on the 2-D ring mixture
    steindiff-train experiment=digits export=src/steindiff/assets/digits_unet.safetensors

Configs ship in the package: steindiff/conf/train/ (net/, data/, experiment/) and the groups shared with
steindiff-sample in steindiff/conf/shared/ (logger/, trainer/); STEINDIFF_CONF names a folder laid out the
same way to use instead. The run folder (``runs/train/<name>``, or ``hydra.run.dir=...``) holds config.yaml,
checkpoints/ (last.ckpt: rerunning the same command in the same folder resumes), the logger's files and the
exported denoiser (``export``, by default denoiser.safetensors), which
``steindiff.models.checkpoint.load_denoiser`` reads. Mistakes are one line and exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from steindiff.cli.app import hydra_app
from steindiff.cli.config import register_resolvers
from steindiff.cli.loggers import logger_configs, quiet_lightning
from steindiff.config import int_at_least
from steindiff.errors import ConfigError
from steindiff.io import atomic_write_text
from steindiff.runfolder import claim_run_folder

register_resolvers()  # train.yaml names each rank's log file with ${steindiff_log_file:train}

__all__ = ["ConfigError", "RESUMABLE_KEYS", "main", "run", "validate"]

PROG = "steindiff-train"
#: keys that do not change what a run computes: a run folder may be resumed with them changed
RESUMABLE_KEYS = ("logger", "trainer", "progress", "num_threads", "export", "val_every_steps",
                  "checkpoint_every_steps", "max_steps", "run_name", "run_group")
_DATA_ONLY_KEYS = ("channels", "dim")  # read by the net config, not passed to the DataModule


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) on the first invalid value of a composed training config."""
    for key, low in (("max_steps", 1), ("batch_size", 1), ("seed", 0), ("val_every_steps", 1),
                     ("checkpoint_every_steps", 1)):
        int_at_least(cfg, key, low)
    int_at_least(cfg, "num_threads", 1, allow_none=True)
    _positive(cfg.optim.get("lr"), "optim.lr")
    if cfg.optim.get("lr_decay") not in ("none", "cosine"):
        raise ConfigError(f"optim.lr_decay={cfg.optim.get('lr_decay')!r} is not accepted: expected none or cosine")
    _positive(cfg.loss.get("P_std"), "loss.P_std")
    _check_net_and_data(cfg)


def _positive(value, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{key}={value!r} is not accepted: expected a number > 0")


def _check_net_and_data(cfg: DictConfig) -> None:
    """The constructors check their own arguments (cheap: the data are loaded in setup)."""
    from steindiff.models.checkpoint import NETWORKS, build_network  # start-up: torch, 1.2 s; --help needs none

    if cfg.net.get("class_name") not in NETWORKS:
        raise ConfigError(f"net.class_name={cfg.net.get('class_name')!r} is not accepted: "
                          f"expected one of {', '.join(NETWORKS)}")
    try:
        instantiate(_data_config(cfg))
    except Exception as err:  # hydra wraps the constructor's error
        raise ConfigError(f"data: {' '.join(str(err.__cause__ or err).split())}") from None
    try:
        build_network(OmegaConf.to_container(cfg.net, resolve=True))
    except Exception as err:
        raise ConfigError(f"net: {' '.join(str(err).split())}") from None


def _data_config(cfg: DictConfig) -> dict:
    return {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in _DATA_ONLY_KEYS}


def run(cfg: DictConfig) -> dict:
    """Build data, module and trainer from the config; fit (resuming from last.ckpt); export the EMA."""
    validate(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    claim_run_folder(out_dir, "train.json", OmegaConf.to_container(cfg, resolve=False), RESUMABLE_KEYS,
                     binding="checkpoints/last.ckpt", kind="a training run",
                     hint="use a new folder (hydra.run.dir=...) or name=...")
    _seed(cfg)
    datamodule = instantiate(_data_config(cfg))
    datamodule.setup("fit")
    module = _training_module(cfg, datamodule)
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    trainer = _trainer(cfg, out_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    resumed = last.exists()
    if resumed:
        print(f"{PROG}: resuming from {last}", file=sys.stderr)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resumed else None)
    if trainer.global_step % int(cfg.checkpoint_every_steps):  # the final state is in last.ckpt too
        trainer.save_checkpoint(str(last))
    summary = _export(cfg, trainer, module, out_dir)
    _report(cfg, summary, out_dir)
    return summary


def _seed(cfg: DictConfig) -> None:
    import pytorch_lightning as pl  # start-up: lightning takes 2.5 s to import; --help needs none of it
    import torch  # start-up: 1.2 s

    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)


def _training_module(cfg: DictConfig, datamodule):
    """The EDM training module for the config's net, loss, optimiser and EMA, with the run's provenance."""
    import torch  # start-up: 1.2 s

    from steindiff.lightning.training import EDMTrainingModule  # start-up: imports lightning (2.5 s)

    info = {"command": " ".join([PROG, *sys.argv[1:]]), "data": datamodule.describe(),
            "torch": str(torch.__version__), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return EDMTrainingModule(
        OmegaConf.to_container(cfg.net, resolve=True), sigma_data=datamodule.sigma_data, shape=datamodule.shape,
        lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), warmup_steps=cfg.optim.warmup_steps,
        lr_decay=cfg.optim.lr_decay, max_steps=cfg.max_steps, P_mean=cfg.loss.P_mean, P_std=cfg.loss.P_std,
        ema_halflife_images=cfg.ema.halflife_images, ema_rampup_ratio=cfg.ema.rampup_ratio, training_info=info)


def _trainer(cfg: DictConfig, out_dir: Path):
    """Lightning's Trainer with the config's logger and a checkpoint every checkpoint_every_steps."""
    import pytorch_lightning as pl  # start-up: lightning takes 2.5 s to import; --help needs none of it

    quiet_lightning()
    loggers = [instantiate(OmegaConf.to_container(c, resolve=True)) for c in logger_configs(cfg.logger)]
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(out_dir / "checkpoints"), filename="step{step:06d}",
                                              auto_insert_metric_name=False, save_last=True, save_top_k=1,
                                              every_n_train_steps=int(cfg.checkpoint_every_steps))
    return pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), max_steps=int(cfg.max_steps),
                      max_epochs=-1, logger=loggers or False, callbacks=[checkpoint],
                      val_check_interval=int(cfg.val_every_steps), check_val_every_n_epoch=None,
                      num_sanity_val_steps=0, log_every_n_steps=min(50, int(cfg.max_steps)),
                      enable_progress_bar=bool(cfg.progress), enable_model_summary=False,
                      default_root_dir=str(out_dir))


def _export(cfg: DictConfig, trainer, module, out_dir: Path) -> dict:
    """Export the EMA denoiser (rank 0) and write train_summary.json; returns the summary."""
    summary = {"name": cfg.name, **module.info(), "run_dir": str(out_dir), "export": None}
    if trainer.global_rank != 0:
        return summary
    if cfg.export:
        summary["export"] = str(module.export(Path(str(cfg.export))))
    atomic_write_text(out_dir / "train_summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def _report(cfg: DictConfig, summary: dict, out_dir: Path) -> None:
    loss = summary["final_val_loss"] if summary["final_val_loss"] is not None else summary["final_train_loss"]
    print(f"{PROG}: {cfg.name}: {summary['steps']} steps in {summary['train_seconds']:.0f} s, "
          f"EMA val loss {loss if loss is None else f'{loss:.4g}'}; wrote {summary['export'] or out_dir}")


def main() -> int:
    """Entry point: one-line errors for config mistakes, then the Hydra app."""
    return hydra_app(PROG, "train", run, check=validate)


if __name__ == "__main__":
    raise SystemExit(main())
