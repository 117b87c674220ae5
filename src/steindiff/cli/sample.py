"""steindiff-sample: the Hydra app that runs one evaluation (or a sweep with -m).

    steindiff-sample                                   # embedded default: ring2d, DPM-Solver++(2M), NFE 8
    steindiff-sample solver=dpmpp_2m nfe=6 corrector=stein corrector.target=state
    steindiff-sample experiment=ring2d_stein trainer=ddp trainer.devices=2
    steindiff-sample -m solver=euler,heun nfe=4,8 corrector=none,stein   # then steindiff-report

A run folder holds config.yaml (resolved), samples/ (npz shards with seeds), results.json
(metrics, measured NFE, sigma grid, per-step trace summary) and plots (scatter.png for 2-D data,
samples.png, a grid of the first 64 images, for image data; gamma.png, lipschitz.png when recorded), plus
the logger's files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

from steindiff.cli.app import USER_ERRORS, ErrorRules, hydra_app
from steindiff.cli.checks import check_sample_run, planned_world_size, take_prebuilt
from steindiff.cli.config import check_multirun_ddp, label_setting
from steindiff.cli.loggers import logger_configs, quiet_lightning
from steindiff.config import RESUMABLE_KEYS
from steindiff.runfolder import claim_run_folder, is_rank_zero, lock_run_folder

#: exit code of a run stopped by SIGTERM/SIGINT (the batch in progress was written; rerun to resume)
_INTERRUPTED = 3
_RESUME = "rerun the same command in the same folder to resume"


def run(cfg) -> dict:
    """Build the run, claim its folder, sample and evaluate with Lightning; ``RunResults`` writes the results.
    With ``baseline=true`` the same seeds are then sampled uncorrected into ``baseline/`` and both are printed.

    The first batch starts sampling (``steindiff.prefetch``) as soon as the sampler is built, while the metrics
    are built and Lightning is imported: on a machine with a spare core the start-up costs no time.
    """
    import torch  # start-up: 1.2 s; --help, --cfg and one-line errors never pay it

    from steindiff.cli.baseline import BASELINE_DIR, baseline_config, compare_with_baseline  # start-up: cheap

    check_multirun_ddp(cfg)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    info = _run_info(cfg, hc)
    results = _run_in(cfg, out_dir, info, take_prebuilt(cfg))  # built by check_sample_run before Hydra started
    twin = baseline_config(cfg)
    if twin is None:
        return results
    solver = info["setting"].split(" / ", 1)[0]
    twin_info = {**info, "setting": f"{solver} / none (baseline)", "corrector": "none",
                 "config": OmegaConf.to_container(twin, resolve=True)}
    uncorrected = _run_in(twin, out_dir / BASELINE_DIR, twin_info, None)
    return {**results, "baseline": compare_with_baseline(results, uncorrected, out_dir)}


def _run_in(cfg, out_dir: Path, info: dict, built) -> dict:
    """One run of ``cfg`` in ``out_dir`` (``built``: the sampler built already, or None to build it here)."""
    from steindiff.build import build_metrics, build_run  # start-up: hydra instantiate, the core

    built = built or build_run(cfg, metrics=False)
    first_batch = _start_first_batch(cfg, built, out_dir)
    try:
        built.metrics = build_metrics(cfg, built.denoiser)  # reference statistics fail here, before the folder
        for note in built.notes:
            print(f"steindiff-sample: {note}", file=sys.stderr)
        # rank 0 holds the folder's lock for the whole run; the ranks Lightning starts share it
        with lock_run_folder(out_dir) if is_rank_zero() else contextlib.nullcontext():
            claim_run_folder(out_dir, "run.json", OmegaConf.to_container(cfg, resolve=False), RESUMABLE_KEYS,
                             extra={"seeds": built.seeds}, orphans="samples/seeds-*.npz", stale=("results.json",))
            return _evaluate(cfg, info, built, out_dir, first_batch)
    finally:
        if first_batch is not None:
            first_batch.cancel()  # a no-op once taken; else the thread stops at its next step


def _start_first_batch(cfg, built, out_dir: Path):
    """A ``FirstBatch`` sampling this process's first batch now (``debug.prefetch``), for a CPU run (one process
    or DDP ranks) whose first shard is not on disk yet; else None (GPU runs place the denoiser only later)."""
    import torch  # start-up: imported already by build_run

    from steindiff.core.sampling import seed_batches  # start-up: imports torch
    from steindiff.prefetch import FirstBatch  # start-up: imports torch
    from steindiff.shards import shard_path  # start-up: numpy

    trainer = cfg.trainer or {}
    accelerator = str(trainer.get("accelerator", "cpu"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()
                                      and not torch.backends.mps.is_available())
    rank, world = _rank_and_world(trainer)
    batches = seed_batches(built.seeds, built.batch_size, rank, world) if world else []
    if not (cfg.debug.prefetch and on_cpu and batches) or shard_path(out_dir, batches[0]).exists():
        return None
    return FirstBatch(built, batches[0])


def _rank_and_world(trainer) -> tuple[int, int | None]:
    """This process's global rank and the world size, before Lightning starts: from the variables its launcher
    sets in the ranks it starts, else (the launching process) rank 0 of devices x num_nodes. (0, None) when
    the device count is not a plain number (``auto``, a list): no prefetch then."""
    if os.environ.get("WORLD_SIZE") and os.environ.get("LOCAL_RANK"):
        per_node = int(os.environ["WORLD_SIZE"]) // max(int(trainer.get("num_nodes", 1) or 1), 1)
        rank = int(os.environ.get("NODE_RANK", 0)) * per_node + int(os.environ["LOCAL_RANK"])
        return rank, int(os.environ["WORLD_SIZE"])
    return 0, planned_world_size(trainer)


def _evaluate(cfg, info: dict, built, out_dir: Path, first_batch) -> dict:
    """Lightning's test loop over the run's seed batches, with its loggers, the ``RunResults`` callback and the
    ranks' common stop decision (``StopPolicy``, after ``RunResults``)."""
    stop = _StopFlag()
    stop.install()  # from here a signal only sets the flag (Lightning's own handler is kept off)
    try:
        import pytorch_lightning as pl  # start-up: 2.5 s, while the first batch samples

        from steindiff.lightning import RunResults, SamplingModule  # start-up: imports Lightning
        from steindiff.lightning.signals import StopPolicy, keep_lightning_off_signals  # start-up: Lightning

        quiet_lightning()
        loggers = [lg for lg in map(_start_logger, logger_configs(cfg.logger)) if lg is not None]
        results = RunResults(out_dir, info, OmegaConf.to_yaml(cfg, resolve=True), plots=cfg.plots)
        policy = StopPolicy(stop)
        trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), logger=loggers or False,
                             callbacks=[results, policy], use_distributed_sampler=False, inference_mode=False,
                             enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(out_dir))
        keep_lightning_off_signals(trainer)
        module = SamplingModule(built, out_dir, throttle_s=cfg.debug.throttle_s, stop_requested=policy,
                                first_batch=first_batch)
        try:
            _test(trainer, module, stop, policy)
        finally:
            _finish_wandb(loggers)
    finally:
        stop.uninstall()
    return results.results


def _run_info(cfg, hc) -> dict:
    """What the results record of the run's setting that only the Hydra runtime knows."""
    return {"setting": label_setting(cfg, hc), "solver": hc.runtime.choices.get("solver"),
            "corrector": hc.runtime.choices.get("corrector") if cfg.corrector else "none",
            "nfe_budget": None if cfg.steps is not None else int(cfg.nfe), "seed_set": cfg.seed_set,
            "config": OmegaConf.to_container(cfg, resolve=True)}


def _test(trainer, module, stop, policy) -> None:
    """``trainer.test``; a signal on any rank ends it as RunInterrupted on every rank (the app exits 3). Rank 0 of
    a DDP launch waits for the ranks it started (``StopPolicy.reap``) and exits 3 if one was interrupted."""
    from steindiff.lightning import RunInterrupted  # start-up: imports Lightning

    try:
        trainer.test(module, verbose=False)
    except SystemExit as err:  # Lightning's SIGTERMException, should its own handler run after all
        if stop.raised:
            raise RunInterrupted(f"stopped by signal between batches; {_RESUME}") from err
        raise
    finally:
        codes = policy.reap()
    if stop.raised or _INTERRUPTED in codes:  # a signal after the last decision point: the results are written
        raise RunInterrupted(f"stopped by signal at the end of the run (the results are complete); {_RESUME}")


class _StopFlag:
    """SIGTERM/SIGINT set this process's flag, nothing else (no collective, no I/O): ``StopPolicy`` turns the flags
    of all ranks into one decision between batches; the batch in progress is finished and written, then every
    rank stops."""

    def __init__(self):
        self.raised, self._previous = False, {}

    def __call__(self) -> bool:
        return self.raised

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _start_logger(logger_cfg):
    """Instantiate a logger and start it now (``experiment``), so that a logger that cannot start (W&B
    misconfigured or unreachable, a package missing) leaves the run with files only, said once."""
    try:
        logger = instantiate(logger_cfg)
        _ = logger.experiment
        return logger
    except Exception as err:
        name = str(logger_cfg.get("_target_", "?")).rsplit(".", 1)[-1]
        print(f"steindiff-sample: warning: logger {name} unavailable ({' '.join(str(err).split())[:200]}); "
              "continuing with files only", file=sys.stderr)
        return None


def _finish_wandb(loggers) -> None:
    """Close the W&B run in any case (else a sweep logs only its first job)."""
    from pytorch_lightning.loggers import WandbLogger  # start-up: imports Lightning

    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb  # start-up: only W&B runs import it

        wandb.finish()


def main() -> int:
    """Entry point: one-line errors for config mistakes, then the Hydra app."""
    return hydra_app("steindiff-sample", "sample", run, check=check_sample_run, errors=_errors)


def _errors() -> ErrorRules:
    """The user's errors; called only when run() raises, so --help never imports Lightning."""
    from steindiff.lightning import RunInterrupted  # start-up: lightning takes 2.5 s to import

    return {RunInterrupted: (_INTERRUPTED, "interrupted"), **USER_ERRORS}


if __name__ == "__main__":
    raise SystemExit(main())
