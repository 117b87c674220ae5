"""Loggers of steindiff-sample: the resolved config as hyperparameters (W&B, TensorBoard, CSV), run names
and groups a dashboard can use, several loggers at once, nothing deleted on a re-run, no Lightning noise."""

import json
import logging
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from hydra.types import RunMode

from steindiff.build import compose_sample_config
from steindiff.cli.config import run_group, run_name
from steindiff.cli.loggers import logger_configs, quiet_lightning
from steindiff.lightning.results import shard_traces, trace_summary
from steindiff.shards import write_shard
from tests.test_app import run_app
from tests.wandb_records import run_summary

NOISE = ("litlogger", "LeafSpec", "sync_dist", "anonymous setting")




def _hydra(overrides, mode=RunMode.RUN, sweep_dir="runs/multirun/2026-12-03/10-45-00"):
    """A stand-in for HydraConfig.get(): what run_name and run_group read of it."""
    choices = {"solver": "dpmpp_2m", "corrector": "none"}
    choices.update(o.split("=", 1) for o in overrides if o.split("=", 1)[0] in ("solver", "corrector"))
    return SimpleNamespace(mode=mode, sweep=SimpleNamespace(dir=sweep_dir),
                           overrides=SimpleNamespace(task=list(overrides)), runtime=SimpleNamespace(choices=choices))


# --- names and groups ------------------------------------------------------------------------------------


def test_run_name_says_setting_overrides_nfe_and_seeds():
    overrides = ["solver=euler", "corrector=stein", "corrector.gamma_min=0.5", "schedule=logsnr", "nfe=4",
                 "seed_set=2", "num_samples=100", "trainer.devices=1", "logger=wandb", "num_threads=2",
                 "denoiser.path=/some/where/net.safetensors"]
    cfg = compose_sample_config(overrides[:-1])
    hc = _hydra(overrides)
    setting = "euler · stein(gamma_min=0.5) · schedule=logsnr, denoiser.path=net.safetensors · NFE 4"
    assert run_name(cfg, hc) == setting + " · seeds 200-299"
    assert run_group(cfg, hc) == setting  # a single run: the runs of its setting that differ only in seeds


def test_run_name_with_steps_and_explicit_seeds():
    cfg = compose_sample_config(["steps=5", "seeds='0-9,20'"])
    assert run_name(cfg, _hydra(["steps=5", "seeds='0-9,20'"])) == "dpmpp_2m · none · 5 steps · seeds 0-9,20"
    assert run_name(cfg, None) == "DPMSolverPP · NoCorrector · 5 steps · seeds 0-9,20"  # no Hydra runtime: classes


def test_multirun_group_is_the_sweep_not_a_clock_time_alone():
    cfg = compose_sample_config(["nfe=4"])
    assert run_group(cfg, _hydra(["nfe=4"], RunMode.MULTIRUN)) == "2026-12-03_10-45-00"
    assert run_group(cfg, _hydra(["nfe=4"], RunMode.MULTIRUN, "studies/temperature")) == "temperature"


def test_names_are_safe_as_file_names():
    cfg = compose_sample_config(["corrector=stein", 'corrector.divergence="a/b:c"'])
    name = run_name(cfg, _hydra(["corrector=stein", "corrector.divergence=a/b:c"]))
    assert "/" not in name and ":" not in name and len(name) <= 128


# --- several loggers ---------------------------------------------------------------------------------------


def test_a_list_of_loggers_composes_to_every_logger():
    targets = [c["_target_"] for c in logger_configs(compose_sample_config(["logger=[csv,tensorboard]"]).logger)]
    assert targets == ["pytorch_lightning.loggers.CSVLogger", "pytorch_lightning.loggers.TensorBoardLogger"]
    assert len(logger_configs(compose_sample_config([]).logger)) == 1  # the default: csv
    assert logger_configs(compose_sample_config(["~logger"]).logger) == []
    assert logger_configs({"_target_": "my.Logger"}) == [{"_target_": "my.Logger"}]  # a user's flat file


# --- the trace of every rank -------------------------------------------------------------------------------


def test_shard_traces_read_every_batch_in_seed_order(tmp_path):
    rows = {first: [{"step": 0, "gamma": float(first), "batch": first}] for first in (0, 4, 8)}
    for first in (8, 0, 4):  # written out of order, as ranks finish
        write_shard(tmp_path, list(range(first, first + 4)), np.zeros((4, 2)), rows[first])
    write_shard(tmp_path, [100, 101], np.zeros((2, 2)), [{"step": 0, "gamma": 99.0, "batch": 100}])  # not ours
    traces = shard_traces(tmp_path, list(range(12)))
    assert traces == rows[0] + rows[4] + rows[8]
    assert trace_summary(traces) == [{"step": 0, "gamma": 4.0}]


# --- noise ---------------------------------------------------------------------------------------------------


def test_quiet_lightning_drops_only_its_two_messages(caplog):
    quiet_lightning()
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=log.name):
        log.info("💡 Tip: ... try installing [litlogger](https://pypi.org/project/litlogger/) ...")
        log.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_lightning()
        for message in ("`isinstance(treespec, LeafSpec)` is deprecated, use ...", "something else"):
            warnings.warn_explicit(message, FutureWarning, "_pytree.py", 21,
                                   module="pytorch_lightning.utilities._pytree")
    assert [str(w.message) for w in caught] == ["something else"]


# --- the app ---------------------------------------------------------------------------------------------------


def test_csv_tensorboard_and_wandb_log_the_config_and_a_rerun_keeps_earlier_metrics(tmp_path):
    pytest.importorskip("tensorboardX")
    common = ["solver=euler", "nfe=6", "num_samples=50", "seed_set=1", "plots=false", "hydra.run.dir=run"]
    proc = run_app(tmp_path, *common, "logger=[csv,tensorboard,wandb]")
    out = tmp_path / "run"
    assert not [n for n in NOISE if n in proc.stdout + proc.stderr]
    [wandb_file] = out.glob("wandb/offline-run-*/run-*.wandb")
    wb = run_summary(wandb_file)
    assert wb["name"] == "euler · none · NFE 6 · seeds 50-99"
    assert wb["group"] == "euler · none · NFE 6"
    for hparams in (wb["config"], yaml.safe_load((out / "tensorboard" / "hparams.yaml").read_text()),
                    yaml.safe_load((out / "csv" / "version_0" / "hparams.yaml").read_text())):
        assert hparams["nfe"] == 6 and hparams["num_samples"] == 50 and hparams["seed_set"] == 1
        assert hparams["solver"]["_target_"] == "steindiff.core.solvers.EulerSolver"
        assert hparams["denoiser"]["name"] == "ring2d" and hparams["schedule"]["name"] == "edm"
        assert hparams["choice"] == {"solver": "euler", "corrector": "none"}
        assert hparams["setting"] == "euler / none" and hparams["run_name"] == wb["name"]
        assert "logger" not in hparams and "hydra" not in hparams
    events = b"".join(p.read_bytes() for p in (out / "tensorboard").glob("events.out.tfevents.*"))
    assert b"_hparams_/session_start_info" in events and b"energy_distance" in events
    first = (out / "csv" / "version_0" / "metrics.csv").read_text()
    assert "energy_distance" in first
    rerun = run_app(tmp_path, *common, "logger=csv")  # a resume in the same folder (every shard is there)
    assert "energy_distance" in (out / "csv" / "version_1" / "metrics.csv").read_text()
    assert (out / "csv" / "version_0" / "metrics.csv").read_text() == first  # versioned: the first is kept
    assert not [n for n in NOISE if n in rerun.stdout + rerun.stderr]


def test_sweep_runs_are_named_apart_and_grouped_by_the_sweep(tmp_path):
    run_app(tmp_path, "-m", "solver=euler,dpmpp_2m", "nfe=4", "num_samples=20", "plots=false",
            "hydra.sweep.dir=sweeps/nfe4")
    configs = [yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "sweeps" / "nfe4").glob("*/config.yaml"))]
    assert [c["run_name"] for c in configs] == ["euler · none · NFE 4 · seeds 0-19",
                                                "dpmpp_2m · none · NFE 4 · seeds 0-19"]
    assert [c["run_group"] for c in configs] == ["nfe4", "nfe4"]
    hparams = yaml.safe_load((tmp_path / "sweeps" / "nfe4" / "0" / "csv" / "version_0" / "hparams.yaml").read_text())
    assert hparams["run_group"] == "nfe4" and hparams["choice"]["solver"] == "euler"
    results = json.loads((tmp_path / "sweeps" / "nfe4" / "1" / "results.json").read_text())
    assert results["setting"] == "dpmpp_2m / none"  # the setting label of reports stays as it was
