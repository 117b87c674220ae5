"""The sampling app's checks that need the built run, made before Hydra creates the run folder.

``check_sample_run`` is the ``check`` that ``steindiff-sample`` hands ``hydra_app``: the plain values
(``steindiff.config.check_values``), the accelerator present on this machine, then every config group built as
the run will build it (shapes against the denoiser, the seeds, the sigma grid), then what the metrics need of
their inputs (enough samples, reference statistics that are finite with a positive semi-definite covariance).
A mistake is one line and exit 2 with nothing written. The run it built is kept for ``run()``
(``take_prebuilt``), so the check costs no second build.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from steindiff.config import check_devices_present, check_values
from steindiff.errors import CheckpointError, ConfigError

__all__ = ["MIN_SAMPLES", "check_batches_per_rank", "check_metric_inputs", "check_reference_statistics",
           "check_sample_run", "planned_world_size", "take_prebuilt"]

#: metrics (by the function their config names) -> the fewest samples they are defined for (a covariance needs 2)
MIN_SAMPLES = {"image_metrics": 2}
#: a covariance's eigenvalues may fall below zero by this fraction of the largest one (float rounding)
_PSD_TOLERANCE = 1e-4

_prebuilt: dict[str, object] = {}


def _key(cfg) -> str:
    return OmegaConf.to_yaml(cfg)


def check_sample_run(cfg) -> None:
    """Everything about a steindiff-sample config that can be checked before the run folder exists."""
    check_values(cfg)
    check_devices_present(cfg.get("trainer"))
    from steindiff.build import build_run  # start-up: imports torch and the core; --help never needs it

    built = build_run(cfg, metrics=False)
    check_metric_inputs(cfg, len(built.seeds))
    check_batches_per_rank(cfg.get("trainer") or {}, len(built.seeds), built.batch_size)
    from steindiff.cli.baseline import check_baseline  # start-up: cheap

    check_baseline(cfg, planned_world_size(cfg.get("trainer") or {}))
    _prebuilt.clear()
    _prebuilt[_key(cfg)] = built


def planned_world_size(trainer) -> int | None:
    """devices x num_nodes of a trainer config, or None when the device count is not a plain number (auto, a list)."""
    devices = str(trainer.get("devices", 1))
    return int(devices) * int(trainer.get("num_nodes", 1) or 1) if devices.isdigit() else None


def check_batches_per_rank(trainer, num_samples: int, batch_size: int) -> None:
    """Under DDP every rank needs at least one batch (a rank without one leaves the others waiting in a collective):
    a one-line error naming a batch size that gives each rank one."""
    world = planned_world_size(trainer)
    if world is None:
        return  # "auto" or a list: Lightning decides; the launch itself says what is wrong
    batches = -(-num_samples // batch_size)
    if world > 1 and batches < world:
        fits = max(1, num_samples // world)
        raise ConfigError(f"{world} DDP ranks but {batches} batch{'es' if batches > 1 else ''} of seeds "
                          f"(num_samples={num_samples}, batch_size={batch_size}): every rank needs one; give "
                          f"batch_size={fits} or less, or fewer trainer.devices")


def take_prebuilt(cfg):
    """The run ``check_sample_run`` built for this very config (once), or None."""
    return _prebuilt.pop(_key(cfg), None)


def check_metric_inputs(cfg, num_samples: int) -> None:
    """A one-line error when the metrics cannot be computed from this run: too few samples, or reference
    statistics that are missing, hold NaN/Inf, or have a covariance that is not positive semi-definite."""
    metrics = cfg.get("metrics") or {}
    target = str(metrics.get("_target_", "")).rsplit(".", 1)[-1]
    least = MIN_SAMPLES.get(target)
    if least is not None and num_samples < least:
        raise ConfigError(f"num_samples={num_samples} is too few for metrics {target} (FID and KID need a covariance "
                          f"of at least {least} samples): give num_samples={least} or more, or metrics=none")
    if metrics.get("reference"):
        check_reference_statistics(Path(str(metrics.get("reference"))).expanduser())


def check_reference_statistics(path: Path) -> None:
    """mu and sigma of a reference npz finite, sigma symmetric and positive semi-definite (within rounding);
    the loader (``steindiff.metrics.frechet.load_reference``) checks the format and shapes."""
    import numpy as np  # start-up: numpy is cheap, but only runs with reference statistics need it

    if not path.is_file():
        raise CheckpointError(f"{path}: reference statistics not found (make them with steindiff-stats)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                return  # the loader names what is missing
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    except Exception as err:  # noqa: BLE001 - any reason a file is not an npz: truncated, text, pickled
        reason = " ".join(str(err).split())[:120]
        raise CheckpointError(f"{path}: not a readable npz of reference statistics (truncated or another format: "
                              f"{reason})") from None
    for name, array in (("mu", mu), ("sigma", sigma)):
        bad = int(np.size(array) - np.isfinite(array).sum())
        if bad:
            raise CheckpointError(f"{path}: reference statistics {name} holds {bad} NaN or Inf values: remake them "
                                  "with steindiff-stats")
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1] or not sigma.size:
        return
    scale = max(float(np.abs(sigma).max()), 1e-30)
    if not np.allclose(sigma, sigma.T, rtol=1e-5, atol=1e-6 * scale):
        raise CheckpointError(f"{path}: reference covariance sigma is not symmetric: remake it with steindiff-stats")
    smallest = float(np.linalg.eigvalsh(sigma).min())
    if smallest < -_PSD_TOLERANCE * scale:
        raise CheckpointError(f"{path}: reference covariance sigma is not positive semi-definite (smallest eigenvalue "
                              f"{smallest:.4g}): remake it with steindiff-stats")
