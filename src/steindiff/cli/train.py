"""steindiff-train: the Hydra app that trains a small EDM denoiser and exports its EMA weights.

    steindiff-train experiment=digits                    # U-Net on 8x8 digits, a few minutes on 2 CPU cores
    steindiff-train experiment=ring2d_mlp                # MLP on the 2-D ring mixture
    steindiff-train experiment=digits export=src/steindiff/assets/digits_unet.safetensors

Configs live in conf/train/ (their own config root: net/, data/, logger/, trainer/, experiment/).
The run folder (``runs/train/<name>``, or ``hydra.run.dir=...``) holds config.yaml, checkpoints/
(last.ckpt: rerunning the same command in the same folder resumes), the logger's files and the
exported denoiser (``export``, by default denoiser.safetensors), which
``steindiff.models.checkpoint.load_denoiser`` reads. Mistakes are one line and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from steindiff.cli.config import CONF_DIR, ConfigError, int_at_least, load_dotenv, one_line, precheck

_FIRST_MISTAKE = 2
TRAIN_CONF_DIR = CONF_DIR / "train"
#: keys that do not change what a run computes: a run folder may be resumed with them changed
RESUMABLE_KEYS = ("logger", "trainer", "progress", "num_threads", "export", "val_every_steps",
                  "checkpoint_every_steps", "max_steps")
_DATA_ONLY_KEYS = ("channels", "dim")  # read by the net config, not passed to the DataModule


def validate(cfg) -> None:
    """Raise ConfigError (one line) on the first invalid value of a composed training config."""
    for key, low in (("max_steps", 1), ("batch_size", 1), ("seed", 0), ("val_every_steps", 1),
                     ("checkpoint_every_steps", 1)):
        int_at_least(cfg, key, low)
    int_at_least(cfg, "num_threads", 1, allow_none=True)
    lr = cfg.optim.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(f"optim.lr={lr!r} is not accepted: expected a number > 0")
    if cfg.optim.get("lr_decay") not in ("none", "cosine"):
        raise ConfigError(f"optim.lr_decay={cfg.optim.get('lr_decay')!r} is not accepted: expected none or cosine")
    p_std = cfg.loss.get("P_std")
    if isinstance(p_std, bool) or not isinstance(p_std, int | float) or not p_std > 0:
        raise ConfigError(f"loss.P_std={p_std!r} is not accepted: expected a number > 0")
    from steindiff.models.checkpoint import NETWORKS

    if cfg.net.get("class_name") not in NETWORKS:
        raise ConfigError(f"net.class_name={cfg.net.get('class_name')!r} is not accepted: "
                          f"expected one of {', '.join(NETWORKS)}")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from steindiff.models.checkpoint import build_network

    try:  # the constructors check their own arguments (cheap: data are loaded in setup)
        instantiate(_data_config(cfg))
    except Exception as err:  # hydra wraps the constructor's error
        raise ConfigError(f"data: {' '.join(str(err.__cause__ or err).split())}") from None
    try:
        build_network(OmegaConf.to_container(cfg.net, resolve=True))
    except Exception as err:
        raise ConfigError(f"net: {' '.join(str(err).split())}") from None


def _data_config(cfg) -> dict:
    from omegaconf import OmegaConf

    return {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in _DATA_ONLY_KEYS}


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_run_folder(cfg, out_dir: Path) -> None:
    """Refuse to resume a folder whose checkpoints come from another configuration; record this one."""
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=False)
    current = {k: v for k, v in _flatten(container).items() if k.split(".", 1)[0] not in RESUMABLE_KEYS}
    record = out_dir / ".steindiff" / "train.json"
    if record.exists() and (out_dir / "checkpoints" / "last.ckpt").exists():
        saved = json.loads(record.read_text())["config"]
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            shown = ", ".join(f"{k} ({saved.get(k)!r} -> {current.get(k)!r})" for k in differing[:6])
            raise ConfigError(f"{out_dir} holds a training run with another configuration: {shown}; "
                              "use a new folder (hydra.run.dir=...) or name=...")
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(".train.json.tmp")
    tmp.write_text(json.dumps({"config": current}, default=str))
    tmp.replace(record)


def run(cfg) -> dict:
    """Build data, module and trainer from the config; fit (resuming from last.ckpt); export the EMA."""
    import pytorch_lightning as pl
    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from steindiff.lightning.training import EDMTrainingModule

    validate(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    check_run_folder(cfg, out_dir)
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = instantiate(_data_config(cfg))
    datamodule.setup("fit")
    command = " ".join(["steindiff-train", *sys.argv[1:]])
    info = {"command": command, "data": datamodule.describe(), "torch": str(torch.__version__),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    module = EDMTrainingModule(
        OmegaConf.to_container(cfg.net, resolve=True), sigma_data=datamodule.sigma_data, shape=datamodule.shape,
        lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), warmup_steps=cfg.optim.warmup_steps,
        lr_decay=cfg.optim.lr_decay, max_steps=cfg.max_steps, P_mean=cfg.loss.P_mean, P_std=cfg.loss.P_std,
        ema_halflife_images=cfg.ema.halflife_images, ema_rampup_ratio=cfg.ema.rampup_ratio, training_info=info)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    loggers = [instantiate(OmegaConf.to_container(cfg.logger, resolve=True))] if cfg.logger else []
    ckpt_dir = out_dir / "checkpoints"
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), filename="step{step:06d}",
                                              auto_insert_metric_name=False, save_last=True, save_top_k=1,
                                              every_n_train_steps=int(cfg.checkpoint_every_steps))
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), max_steps=int(cfg.max_steps),
                         max_epochs=-1, logger=loggers or False, callbacks=[checkpoint],
                         val_check_interval=int(cfg.val_every_steps), check_val_every_n_epoch=None,
                         num_sanity_val_steps=0, log_every_n_steps=min(50, int(cfg.max_steps)),
                         enable_progress_bar=bool(cfg.progress), enable_model_summary=False,
                         default_root_dir=str(out_dir))
    last = ckpt_dir / "last.ckpt"
    resumed = last.exists()
    if resumed:
        print(f"steindiff-train: resuming from {last}", file=sys.stderr)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resumed else None)
    if trainer.global_step % int(cfg.checkpoint_every_steps):  # the final state is in last.ckpt too
        trainer.save_checkpoint(str(last))
    summary = {"name": cfg.name, **module.info(), "run_dir": str(out_dir), "export": None}
    if cfg.export and trainer.global_rank == 0:
        path = module.export(Path(str(cfg.export)))
        summary["export"] = str(path)
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    loss = summary["final_val_loss"] if summary["final_val_loss"] is not None else summary["final_train_loss"]
    print(f"steindiff-train: {cfg.name}: {summary['steps']} steps in {summary['train_seconds']:.0f} s, "
          f"EMA val loss {loss if loss is None else f'{loss:.4g}'}; wrote {summary['export'] or out_dir}")
    return summary


def main() -> int:
    """Entry point: one-line errors for config mistakes, then the Hydra app."""
    import hydra
    from hydra.errors import HydraException

    load_dotenv(Path.cwd() / ".env")
    conf_root = os.environ.get("STEINDIFF_CONF")
    conf_dir = str(Path(conf_root) / "train") if conf_root else str(TRAIN_CONF_DIR)

    @hydra.main(config_path=conf_dir, config_name="train", version_base="1.3")
    def app(cfg) -> None:
        from steindiff.models.errors import CheckpointError

        try:
            run(cfg)
        except (ConfigError, CheckpointError, ValueError, HydraException, FileNotFoundError) as err:
            print(f"steindiff-train: error: {one_line(err)}", file=sys.stderr)
            sys.exit(_FIRST_MISTAKE)

    refused = precheck("steindiff-train", conf_dir, "train", validate)
    if refused is not None:
        return refused
    app()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
