"""The results of a sampling run: results.json, config.yaml, plots and logger extras, written by a callback.

``RunResults`` runs when ``trainer.test`` ends: every rank waits until all shards are on disk, then
rank 0 checks the folder (every requested seed present once), writes ``results.json`` (setting,
metrics, measured and expected NFE, sigma grid, per-step trace summary, ``complete``) atomically,
``config.yaml``, the plots (scatter.png for 2-D samples, samples.png for images, gamma.png with a
corrector, lipschitz.png with the Lipschitz observer), and logs the trace and plots to W&B.

The per-step trace is read back from the shards (each carries its batch's trace, as numbers), so results.json
and the plots cover every rank's batches and are the same for any device count. results.json also records
what ``steindiff-verify`` recomputes: the run's ``fingerprint``, ``samples_sha256`` (the shards' checksums in seed
order: the metrics' inputs), the NFE the shards measured, and a ``checksum`` of these claims with the metrics.
At the start (``setup``) every logger receives the resolved config as hyperparameters (W&B config,
hparams.yaml of TensorBoard and CSV).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from steindiff.io import atomic_write_text
from steindiff.plots import draws_gamma, image_grid, lipschitz_plot, run_title, scatter_plot, trace_plot
from steindiff.shards import load_samples, results_checksum, shard_traces, trace_summary, verify_run

__all__ = ["RunResults", "trace_summary", "shard_traces"]


class RunResults(pl.Callback):
    """Writes a sampling run's results once every rank has finished (rank 0 writes).

    Args:
        out_dir: the run folder.
        info: what the app knows and the module does not: setting (label), solver and corrector (the
            config choices), nfe_budget, seed_set, config (the resolved config as a dict).
        config_yaml: the resolved config as YAML (written as config.yaml).
        plots: draw the plots.
    """

    def __init__(self, out_dir: str | Path, info: dict, config_yaml: str, plots: bool = True):
        self.out_dir, self.info, self.config_yaml, self.plots = Path(out_dir), dict(info), config_yaml, bool(plots)
        self.results: dict = {}

    def hyperparams(self) -> dict:
        """What the loggers record as the run's hyperparameters: the resolved config (nested: W&B shows dotted
        keys, TensorBoard and the CSV logger's hparams.yaml keep the tree), the setting label and the solver and
        corrector chosen (``choice``: the config holds their arguments, not their names). Not the loggers' own
        settings: where logs go is no hyperparameter (and holds this machine's paths)."""
        config = {k: v for k, v in self.info.get("config", {}).items() if k != "logger"}
        return {**config, "setting": self.info.get("setting"),
                "choice": {"solver": self.info.get("solver"), "corrector": self.info.get("corrector")}}

    def setup(self, trainer: pl.Trainer, module, stage: str) -> None:
        for logger in trainer.loggers:  # at the start, so that a run that fails still says what it was
            logger.log_hyperparams(self.hyperparams())  # rank 0 only (Lightning's loggers)

    def on_test_end(self, trainer: pl.Trainer, module) -> None:
        trainer.strategy.barrier()  # every rank's shards are on disk before rank 0 reads them
        if trainer.global_rank != 0:
            return
        run = module.run
        traces = shard_traces(self.out_dir, run.seeds)  # every rank's batches, not only this rank's
        metric_notes = [f"{name}: {note}" for name, metric in (module.metrics or {}).items()  # too few samples
                        for note in getattr(metric, "notes", None) or []]
        fingerprint = (module.fingerprint or {}).get("run")
        check = verify_run(self.out_dir, run.seeds, batch_size=run.batch_size, fingerprint=fingerprint)
        nfe = check["nfe"][0] if len(check["nfe"]) == 1 else module.nfe  # what every shard measured
        results = {**self.info, "nfe": nfe, "expected_nfe": run.expected_nfe,
                   "num_steps": run.grid.num_steps, "final_step": run.grid.final_step, "process": repr(run.process),
                   "num_samples": len(run.seeds), "seeds": f"{run.seeds[0]}..{run.seeds[-1]}",
                   "metrics": module.computed_metrics, "sigmas": run.grid.tolist(),
                   "trace": trace_summary(traces), "solver_repr": repr(run.solver),
                   "corrector_repr": repr(run.corrector), "observers": [repr(o) for o in run.observers],
                   "notes": [*run.notes, *metric_notes], "complete": check["complete"],
                   "resumed_batches": module.resumed_batches, "timing": dict(module.timing),
                   "fingerprint": fingerprint, "samples_sha256": check["samples_sha256"]}
        results["checksum"] = results_checksum(results)
        atomic_write_text(self.out_dir / "config.yaml", self.config_yaml)
        if self.plots:
            self._plot(module, results, traces)
        atomic_write_text(self.out_dir / "results.json", json.dumps(results, indent=1, default=str))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                _log_wandb(logger, results, self.out_dir)
            if isinstance(logger, TensorBoardLogger):  # the HParams tab: the config with the final metrics
                logger.log_hyperparams(self.hyperparams(), metrics=results["metrics"])
        shown = ", ".join(f"{k} {v:.4g}" + (" (raw MMD^2, not x1000)" if k.endswith("kid") else "")
                          for k, v in results["metrics"].items())
        print(f"{results['setting']}: NFE {results['nfe']} ({results['num_steps']} steps, final step "
              f"{results['final_step']}); {shown}; wrote {self.out_dir}")
        for note in metric_notes:
            print(f"steindiff-sample: warning: {note}", file=sys.stderr)
        if not check["complete"]:
            print(f"steindiff-sample: warning: {self.out_dir} is not complete ({_problems(check)}); results.json says "
                  "complete: false; rerun the same command to resume, steindiff-verify names the files",
                  file=sys.stderr)
        self.results = results

    def _plot(self, module, results: dict, traces: list[dict]) -> None:
        _, samples = load_samples(self.out_dir)
        title, trace = run_title(results), traces  # per batch: the plots show the spread over batches
        if samples.ndim == 2 and samples.shape[1] == 2:
            exact = module.metrics["energy_distance"].data if module.metrics is not None \
                and "energy_distance" in module.metrics else None
            scatter_plot(self.out_dir / "scatter.png", samples, exact, title)
        if samples.ndim == 4 or module.decoder is not None:
            image_grid(self.out_dir / "samples.png", module.decoded(samples[:64]), title)
        if draws_gamma(trace):  # a corrector's gamma or the estimator observer's numbers (named estimates too)
            trace_plot(self.out_dir / "gamma.png", trace, "gamma", title)
        if any("lipschitz_mean" in t for t in trace):
            lipschitz_plot(self.out_dir / "lipschitz.png", trace, title)


def _problems(check: dict) -> str:
    """What ``verify_run`` found wrong, counted."""
    counts = {"missing seeds": len(check["missing"]), "duplicated seeds": len(check["duplicated"]),
              "bad shards": len(check["bad_shards"]), "shards of another run": len(check["mismatched"]),
              "unknown files": len(check["unknown_files"]), "unexpected seeds": len(check["unexpected"])}
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "?"


def _log_wandb(logger: WandbLogger, results: dict, out_dir: Path) -> None:
    """The per-step trace as a table and line plots, the plots as uint8 images, the final metrics."""
    import wandb  # start-up: only runs with a W&B logger import it (0.4 s)
    from PIL import Image  # start-up: as above (Pillow comes with matplotlib)

    run, trace = logger.experiment, results["trace"]
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
            run.log({name: wandb.Image(np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8))})
    run.summary.update({f"final/{k}": v for k, v in results["metrics"].items()})
    run.summary.update({"nfe": results["nfe"], "num_steps": results["num_steps"]})
