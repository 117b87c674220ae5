"""The apps' loggers: the ``logger`` group as a list of logger configs, and Lightning's noise left out.

Each file of the shared ``logger/`` group puts its logger under its own key (``csv:``, ``tensorboard:``,
``wandb:``), so ``logger=[csv,tensorboard]`` composes to ``{csv: ..., tensorboard: ...}`` and gives both
(flat files would merge into one node, and the last ``_target_`` would win). A user's logger file written
flat (``_target_`` at the top) is one logger.
"""

from __future__ import annotations

import logging
import warnings

from omegaconf import DictConfig

__all__ = ["logger_configs", "quiet_lightning", "wandb_logger"]


def logger_configs(logger_cfg) -> list:
    """The logger configs of a composed ``logger`` node (None or empty: none), in the order composed."""
    if not logger_cfg:
        return []
    if "_target_" in logger_cfg:
        return [logger_cfg]
    return [c for c in logger_cfg.values() if isinstance(c, DictConfig | dict) and c and "_target_" in c]


def wandb_logger(init_timeout: float | None = None, **kwargs):
    """Lightning's ``WandbLogger(**kwargs)`` without the ``anonymous=None`` it always passes to ``wandb.init``:
    W&B >= 0.19 prints "The anonymous setting has no effect" for any value given (wandb.yaml names this).

    init_timeout: seconds ``wandb.init`` waits for the server (W&B's default 90 s, then more retries: an online
    run with no reachable server blocked about 100 s before the app fell back to files only)."""
    from pytorch_lightning.loggers import WandbLogger  # start-up: only runs with a W&B logger import it

    if init_timeout is not None and "settings" not in kwargs:
        import wandb  # start-up: only runs with a W&B logger import it

        kwargs["settings"] = wandb.Settings(init_timeout=float(init_timeout))
    logger = WandbLogger(**kwargs)
    if getattr(logger, "_wandb_init", {}).get("anonymous", False) is None:
        del logger._wandb_init["anonymous"]
    return logger


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


_LITLOGGER_TIP = _DropMessage("litlogger")


def quiet_lightning() -> None:
    """Leave out two messages Lightning 2.6 prints at every run that say nothing about it: the "Tip: ... try
    installing litlogger" advertisement, and the FutureWarning its own ``_pytree`` helper triggers in torch
    2.13 (``isinstance(treespec, LeafSpec)``). Only these two: every other message and warning still shows.
    Called by the apps before they build the Trainer; idempotent."""
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if _LITLOGGER_TIP not in rank_zero.filters:
        rank_zero.addFilter(_LITLOGGER_TIP)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"pytorch_lightning\.utilities\._pytree")
