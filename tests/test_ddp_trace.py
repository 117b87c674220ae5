"""Under DDP the per-step trace (results.json, gamma.png, lipschitz.png) covers every rank's batches, and a
DDP run prints no warning of ours (Lightning's sync_dist advice, its litlogger tip, its _pytree warning)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.core.sampling import seed_batches
from steindiff.lightning import trace_summary

# group statistics: a batch's samples and trace do not depend on the other batches, so on the device count
COMMON = ["num_samples=120", "batch_size=20", "corrector=stein", "corrector.statistics=group",
          "corrector.group_size=10", "corrector.gamma_min=0.5", "corrector.gamma_max=1.5",
          "diagnostics.lipschitz=true", "diagnostics.lipschitz_iters=2"]


def run_app(tmp_path, *overrides):
    env = {**os.environ, "STEINDIFF_RUNS_DIR": str(tmp_path / "runs"), "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "steindiff.cli.sample", *COMMON, *overrides], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def one_device_rows(rank: int = 0, world: int = 1) -> list[dict]:
    """The trace rows a run computes for the batches of ``rank`` (all of them with world=1), in this process."""
    run = build_run(compose_sample_config(COMMON))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app (num_threads=1): the same reductions, the same floats
    try:
        batches = seed_batches(run.seeds, run.batch_size, rank, world)
        return [row for batch in batches for row in run.sample(batch).trace]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_ddp_trace_is_every_ranks_and_equals_one_device(tmp_path):
    proc = run_app(tmp_path, "trainer=ddp", "trainer.devices=2", "hydra.run.dir=two")
    trace = json.loads((tmp_path / "two" / "results.json").read_text())["trace"]
    expected = trace_summary(one_device_rows())
    assert expected != trace_summary(one_device_rows(rank=0, world=2))  # rank 0's shard alone differs
    assert len(trace) == 8 and all("gamma" in t and "lipschitz_mean" in t for t in trace)
    assert trace == expected  # the same floats as one device
    assert (tmp_path / "two" / "gamma.png").exists() and (tmp_path / "two" / "lipschitz.png").exists()
    output = proc.stdout + proc.stderr
    for noise in ("sync_dist", "litlogger", "LeafSpec", "Warning"):
        assert noise not in output, noise


@pytest.mark.slow
def test_ddp_results_and_plots_equal_one_device(tmp_path):
    run_app(tmp_path, "hydra.run.dir=one")
    run_app(tmp_path, "trainer=ddp", "trainer.devices=2", "hydra.run.dir=two")
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert one["trace"] == two["trace"]
    for plot in ("gamma.png", "lipschitz.png"):  # drawn from the per-batch rows: the same rows, the same image
        assert (tmp_path / "one" / plot).read_bytes() == (tmp_path / "two" / plot).read_bytes(), plot
