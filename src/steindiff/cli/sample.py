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

import json
import os
import sys
from pathlib import Path

import torch

from steindiff.cli.config import (
    CONF_DIR,
    ConfigError,
    check_run_folder,
    label_setting,
    load_dotenv,
    one_line,
    precheck,
    validate,
)

_FIRST_MISTAKE = 2


def run(cfg) -> dict:
    """Compose core objects from the config, evaluate with Lightning, write results."""
    import pytorch_lightning as pl
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from steindiff.core import make_process, num_steps_for_nfe, parse_seeds
    from steindiff.core.probes import ContractivityProbe
    from steindiff.lightning import SamplingModule

    validate(cfg)
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    denoiser = instantiate(cfg.denoiser)
    solver = instantiate(cfg.solver)
    corrector = instantiate(cfg.corrector) if cfg.corrector else None
    if cfg.diagnostics.lipschitz:
        corrector = ContractivityProbe(corrector, iters=cfg.diagnostics.lipschitz_iters)
    # a network trained on a process (diffusers' betas) brings it: its prior and time map win over cfg.process
    process = getattr(denoiser, "process", None) or make_process(cfg.process)
    final_step = cfg.schedule.final_step
    steps = int(cfg.steps) if cfg.steps is not None else num_steps_for_nfe(solver, int(cfg.nfe), final_step)
    sigma_kw = {"process": process} if cfg.schedule.schedule.startswith("time_") else {}
    sigmas = instantiate(cfg.schedule, **_trained_range(cfg.schedule, denoiser))(num_steps=steps, **sigma_kw)
    if cfg.seeds is not None:
        seeds = parse_seeds(str(cfg.seeds))
    else:
        seeds = list(range(cfg.seed_set * cfg.num_samples, (cfg.seed_set + 1) * cfg.num_samples))
    shape = _sample_shape(cfg, denoiser)
    decoder = instantiate(cfg.decoder) if cfg.get("decoder") else None
    metrics = _metrics(cfg, denoiser, instantiate)  # bad reference files fail here, before the folder is used
    check_run_folder(cfg, out_dir, seeds)
    loggers = []
    if cfg.logger:
        logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
        if "WandbLogger" in logger_cfg["_target_"]:
            logger_cfg["group"] = logger_cfg.get("group") or Path(hc.sweep.dir).name
            logger_cfg["name"] = label_setting(cfg, hc)
        loggers.append(_start_logger(instantiate, logger_cfg))
        loggers = [lg for lg in loggers if lg is not None]
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), logger=loggers or False,
                         use_distributed_sampler=False, inference_mode=False, enable_checkpointing=False,
                         enable_model_summary=False, default_root_dir=str(out_dir))
    stop = _StopFlag()
    module = SamplingModule(denoiser, solver, corrector, sigmas, seeds=seeds, shape=shape,
                            batch_size=cfg.batch_size, final_step=final_step, process=process,
                            dtype=getattr(torch, cfg.dtype), metrics=metrics, out_dir=out_dir,
                            throttle_s=cfg.debug.throttle_s, stop_requested=stop, decoder=decoder)
    try:
        stop.install()
        try:
            trainer.test(module, verbose=False)
        except SystemExit as err:  # Lightning turns SIGTERM into SIGTERMException(SystemExit) between batches
            if stop.raised:
                from steindiff.lightning import RunInterrupted

                raise RunInterrupted("stopped by signal between batches; rerun the same command in the same "
                                     "folder to resume") from err
            raise
        trainer.strategy.barrier()  # every rank's shards are on disk before rank 0 reads them
        results = {}
        if trainer.global_rank == 0:
            results = _results(cfg, hc, module, solver, corrector, steps, sigmas, seeds, out_dir)
            _log_extras(loggers, results, out_dir)
    finally:
        stop.uninstall()
        for logger in loggers:
            if hasattr(logger, "experiment") and "Wandb" in type(logger).__name__:
                import wandb

                wandb.finish()
    return results


def _trained_range(schedule_cfg, denoiser) -> dict:
    """Schedule bounds clipped to the sigma range a learned denoiser was trained on (said once)."""
    bounds = {}
    low, high = getattr(denoiser, "sigma_min", None), getattr(denoiser, "sigma_max", None)
    if low is not None and schedule_cfg.get("sigma_min") is not None and schedule_cfg.sigma_min < low:
        bounds["sigma_min"] = float(low)
    if high is not None and schedule_cfg.get("sigma_max") is not None and schedule_cfg.sigma_max > high:
        bounds["sigma_max"] = float(high)
    if bounds:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in bounds.items())
        print(f"steindiff-sample: schedule clipped to the denoiser's trained range: {shown}", file=sys.stderr)
    return bounds


def _sample_shape(cfg, denoiser) -> tuple[int, ...]:
    """The shape of one sample: ``shape`` in the config, else the denoiser's ``shape`` or ``dim``."""
    if cfg.shape is not None:
        return tuple(int(s) for s in cfg.shape)
    if getattr(denoiser, "shape", None) is not None:
        return tuple(int(s) for s in denoiser.shape)
    if getattr(denoiser, "dim", None) is not None:
        return (int(denoiser.dim),)
    raise ConfigError(f"shape=null but the denoiser {type(denoiser).__name__} does not say its sample shape: "
                      "give shape=[C,H,W] (images) or shape=[d]")


def _metrics(cfg, denoiser, instantiate):
    """The metric collection: mixture metrics get the exact (knob-free) mixture, image metrics their config."""
    if not cfg.metrics:
        return None
    if str(cfg.metrics.get("_target_", "")).endswith("mixture_metrics"):
        from omegaconf import OmegaConf

        from steindiff.core.mixture import mixture_preset

        options = OmegaConf.to_container(cfg.metrics, resolve=True)
        preset = options.pop("preset", None)
        if preset is not None:
            exact = mixture_preset(preset)
        elif hasattr(denoiser, "with_knobs"):
            exact = denoiser.with_knobs(temperature=1.0, residual_scale=1.0, sigma_scale=1.0)
        else:
            raise ConfigError("metrics=mixture needs the exact mixture: give metrics.preset=ring2d (or aniso32) for "
                              "a learned mixture denoiser, or use metrics=none, digits_fid or fid")
        return instantiate(options, data=exact)
    return instantiate(cfg.metrics)


class _StopFlag:
    """SIGTERM/SIGINT set a flag; the module finishes the batch in progress, then stops."""

    def __init__(self):
        self.raised, self._previous = False, {}

    def __call__(self) -> bool:
        return self.raised

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def install(self) -> None:
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _start_logger(instantiate, logger_cfg: dict):
    """Instantiate a logger; W&B that cannot start leaves the run with files only (said once)."""
    try:
        logger = instantiate(logger_cfg)
        if "Wandb" in type(logger).__name__:
            _ = logger.experiment  # starts the W&B run now, so a failure is seen here
        return logger
    except Exception as err:  # W&B misconfigured or unreachable, a logger package missing
        print(f"steindiff-sample: warning: logger {logger_cfg['_target_'].rsplit('.', 1)[-1]} unavailable "
              f"({' '.join(str(err).split())[:200]}); continuing with files only", file=sys.stderr)
        return None


def _trace_summary(traces: list[dict]) -> list[dict]:
    """Per step: the mean over batches of every numeric trace entry."""
    steps: dict[int, dict[str, list[float]]] = {}
    for t in traces:
        row = steps.setdefault(t["step"], {})
        for k, v in t.items():
            if isinstance(v, int | float) and k not in ("batch", "step"):
                row.setdefault(k, []).append(float(v))
    return [{"step": i, **{k: sum(v) / len(v) for k, v in row.items()}} for i, row in sorted(steps.items())]


def _results(cfg, hc, module, solver, corrector, steps, sigmas, seeds, out_dir: Path) -> dict:
    from omegaconf import OmegaConf

    from steindiff.lightning import load_samples, verify_run

    metrics = getattr(module, "computed_metrics", {})
    trace = _trace_summary(module.traces)
    results = {
        "setting": label_setting(cfg, hc),
        "solver": hc.runtime.choices.get("solver"),
        "corrector": hc.runtime.choices.get("corrector") if cfg.corrector else "none",
        "nfe_budget": None if cfg.steps is not None else int(cfg.nfe),
        "nfe": module.nfe, "expected_nfe": solver.nfe(steps, cfg.schedule.final_step),
        "num_steps": steps, "final_step": cfg.schedule.final_step, "process": repr(module.process),
        "seed_set": cfg.seed_set, "num_samples": len(seeds), "seeds": f"{seeds[0]}..{seeds[-1]}",
        "metrics": metrics, "sigmas": [float(s) for s in sigmas], "trace": trace,
        "solver_repr": repr(solver), "corrector_repr": repr(corrector),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    check = verify_run(out_dir, seeds)
    found, samples = load_samples(out_dir)
    results["complete"] = check["complete"]
    results["resumed_batches"] = module.resumed_batches
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.plots:
        from steindiff.cli.plots import lipschitz_plot, scatter_plot, trace_plot

        if samples.ndim == 2 and samples.shape[1] == 2:
            exact = module.metrics["energy_distance"].data if module.metrics is not None else None
            scatter_plot(out_dir / "scatter.png", samples, exact, results["setting"])
        if samples.ndim == 4 or module.decoder is not None:
            from steindiff.cli.plots import image_grid

            images = module.decoded(samples[:64])
            image_grid(out_dir / "samples.png", images, results["setting"])
        if any("gamma" in t for t in trace):
            trace_plot(out_dir / "gamma.png", trace, "gamma", results["setting"])
        if any("lipschitz_mean" in t for t in trace):
            lipschitz_plot(out_dir / "lipschitz.png", trace, results["setting"])
    tmp = out_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out_dir / "results.json")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    print(f"{results['setting']}: NFE {results['nfe']} ({steps} steps, final step {results['final_step']}); "
          f"{shown}; wrote {out_dir}")
    return results



def _log_extras(loggers, results: dict, out_dir: Path) -> None:
    """W&B: the per-step trace as a table and line plots, and the sample plots as images."""
    for logger in loggers:
        if "Wandb" not in type(logger).__name__:
            continue
        import wandb

        run = logger.experiment
        trace = results["trace"]
        if trace:
            columns = sorted({k for t in trace for k in t})
            table = wandb.Table(columns=columns, data=[[t.get(c) for c in columns] for t in trace])
            run.log({"trace": table})
            for key in ("gamma", "lipschitz_mean"):
                if key in columns:
                    run.log({f"{key}_per_step": wandb.plot.line(table, "step", key, title=f"{key} per step")})
        for name in ("scatter", "samples", "gamma", "lipschitz"):
            path = out_dir / f"{name}.png"
            if path.exists():
                import numpy as np
                from PIL import Image

                run.log({name: wandb.Image(np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8))})
        run.summary.update({f"final/{k}": v for k, v in results["metrics"].items()})
        run.summary.update({"nfe": results["nfe"], "num_steps": results["num_steps"]})


def main() -> int:
    """Entry point: one-line errors for config mistakes, then the Hydra app."""
    import hydra
    from hydra.errors import HydraException

    load_dotenv(Path.cwd() / ".env")
    conf_dir = os.environ.get("STEINDIFF_CONF", str(CONF_DIR))

    @hydra.main(config_path=conf_dir, config_name="sample", version_base="1.3")
    def app(cfg) -> None:
        from steindiff.lightning import RunInterrupted

        try:
            run(cfg)
        except RunInterrupted as err:
            print(f"steindiff-sample: interrupted: {err}", file=sys.stderr)
            sys.exit(3)
        except (ConfigError, ValueError, HydraException, FileNotFoundError) as err:
            print(f"steindiff-sample: error: {one_line(err)}", file=sys.stderr)
            sys.exit(_FIRST_MISTAKE)

    refused = precheck("steindiff-sample", conf_dir, "sample", validate)
    if refused is not None:
        return refused
    app()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
