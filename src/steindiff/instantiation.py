"""One config group built from its Hydra node (``built``), each failure a one-line ``ConfigError`` naming the
group: used by ``steindiff.build`` for the app's pieces and by ``steindiff.controls`` for the named Stein
estimators of ``diagnostics.estimator_correctors``."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf.errors import OmegaConfBaseException

from steindiff.errors import CheckpointError, ConfigError

__all__ = ["built"]


def built(group: str, node, **kwargs):
    """``instantiate`` of one config group; any failure is a one-line ConfigError naming the group."""
    try:
        return instantiate(node, **kwargs)
    except (InstantiationException, OmegaConfBaseException, ValueError, TypeError) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ is not None else err
        if isinstance(cause, FileNotFoundError | ConfigError | CheckpointError):
            raise cause from None  # the loader's own one-line message names the file
        message = " ".join(str(cause).split()).split(" full_key:")[0]
        raise ConfigError(f"{group}: {message}") from None
