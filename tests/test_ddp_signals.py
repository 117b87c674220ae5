"""One signal policy under DDP (issue 14): SIGTERM on any rank, at any moment, stops every rank after the same
batch; the launching process exits 3 within seconds, no rank is left running, and a rerun in the same folder
completes with the samples of an uninterrupted run.

The job: the mixture default with 3 batches on 2 ranks (rank 0 samples batches 0 and 2, rank 1 batch 1) and
``debug.throttle_s`` holding each rank after each batch. So rank 1 waits for rank 0 at the end while rank 0
holds with every shard on disk: the moment at which Lightning's own SIGTERM handler (a broadcast inside the
other rank's collective) hung the job.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.core.sampling import seed_batches
from steindiff.lightning import RunInterrupted, load_samples, verify_run
from steindiff.lightning.signals import StopPolicy

REPO = Path(__file__).resolve().parents[1]
JOB = ["num_samples=1500", "batch_size=500"]
DDP = ["trainer=ddp", "trainer.devices=2"]
HOLD = "debug.throttle_s=2"  # each rank sleeps after each batch: the moments of the signal last 2 s
EXIT_WITHIN_S = 20


# ---- the decision points, without Lightning: every rank stops at the same point, whoever got the signal ----
class _Ranks:
    """Ranks as threads of this process with an any-reduce between them (what ``reduce_boolean_decision`` does
    under DDP); a rank left waiting for the others breaks the barrier after 5 s, where a process would hang."""

    def __init__(self, world: int):
        self.world, self.flags, self.counts = world, [False] * world, [0] * world
        self.barrier = threading.Barrier(world, timeout=5)

    def strategy(self, rank: int) -> SimpleNamespace:
        def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
            strategy.collectives += 1
            self.flags[rank] = bool(decision)
            self.barrier.wait()
            decided = any(self.flags)
            self.barrier.wait()  # nobody writes a flag before every rank has read them
            return decided

        def reduce(value: torch.Tensor, reduce_op: str) -> torch.Tensor:  # "max": the most batches of any rank
            strategy.collectives += 1
            self.counts[rank] = int(value)
            self.barrier.wait()
            most = max(self.counts)
            self.barrier.wait()
            return torch.tensor(most)

        strategy = SimpleNamespace(launcher=None, collectives=0, root_device="cpu", reduce=reduce,
                                   reduce_boolean_decision=reduce_boolean_decision)
        return strategy


def _hooks(n_batches: int) -> list[str]:
    """The hooks a rank with ``n_batches`` batches calls, in Lightning's order (test_step: the module's poll)."""
    return ["on_test_epoch_start", *["test_step", "on_test_batch_end"] * n_batches, "on_test_epoch_end",
            "on_test_end"]


def _stop_point(rank: int, world: int, strategy, signal_at: tuple[int, int] | None) -> tuple[str, int]:
    """Run one rank's hooks with SIGTERM arriving on rank ``signal_at[0]`` before its hook ``signal_at[1]``;
    returns (the hook that raised RunInterrupted or "finished", the collectives this rank ran)."""
    run = SimpleNamespace(seeds=list(range(1500)), batch_size=500)  # rank 0: batches 0 and 2; rank 1: batch 1
    n_batches = len(seed_batches(run.seeds, run.batch_size, rank, world))
    trainer = SimpleNamespace(global_rank=rank, world_size=world, strategy=strategy, num_test_batches=[n_batches])
    flag = {"raised": False}
    policy = StopPolicy(lambda: flag["raised"])
    for i, hook in enumerate(_hooks(n_batches)):
        if signal_at == (rank, i):
            flag["raised"] = True
        try:
            if hook == "test_step":
                if policy():
                    raise RunInterrupted("the module stops before this batch")
            elif hook == "on_test_batch_end":
                policy.on_test_batch_end(trainer, SimpleNamespace(run=run), None, None, 0)
            else:
                getattr(policy, hook)(trainer, SimpleNamespace(run=run))
        except RunInterrupted:
            return hook, strategy.collectives
        except threading.BrokenBarrierError:
            return "hangs", strategy.collectives
    return "finished", strategy.collectives


def _two_ranks(signal_at) -> list[tuple[str, int]]:
    ranks, points = _Ranks(2), [None, None]

    def rank(r: int) -> None:
        points[r] = _stop_point(r, 2, ranks.strategy(r), signal_at)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return points


def test_every_rank_stops_at_the_same_decision_point():
    scenarios = [None, *[(0, i) for i in range(len(_hooks(2)))], *[(1, i) for i in range(len(_hooks(1)))]]
    points = {at: _two_ranks(at) for at in scenarios}
    for at, ((hook0, turns0), (hook1, turns1)) in points.items():
        assert "hangs" not in (hook0, hook1) and turns0 == turns1, (at, points[at])  # nobody left waiting
        assert (hook0 == "finished") == (hook1 == "finished") == (at is None), (at, points[at])
    # epoch start (the most batches, then the flags), 2 batch ends (rank 1 takes its second late), the end
    assert points[None] == [("finished", 5), ("finished", 5)]
    assert points[(1, 0)] == [("test_step", 2), ("test_step", 2)]  # in start-up: no batch begins
    assert points[(0, 4)] == [("on_test_batch_end", 4), ("on_test_epoch_end", 4)]  # rank 0's last batch: before
    assert points[(1, 3)] == [("on_test_batch_end", 4), ("on_test_epoch_end", 4)]  # rank 1 waiting for rank 0
    assert points[(0, 6)] == [("on_test_end", 5), ("on_test_end", 5)]  # during the results: after them


def test_one_process_stops_after_the_batch_in_progress():
    strategy = SimpleNamespace(launcher=None, collectives=0, root_device="cpu", reduce=lambda value, reduce_op: value,
                               reduce_boolean_decision=lambda decision, all: decision)
    assert [_stop_point(0, 1, strategy, (0, i))[0] for i in range(len(_hooks(3)))] == [
        "test_step", *["on_test_batch_end"] * 6, "on_test_end", "on_test_end"]  # after the last batch: results, 3
    assert _stop_point(0, 1, strategy, None) == ("finished", 0)


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "STEINDIFF_RUNS_DIR": str(tmp_path / "runs"), "WANDB_MODE": "disabled",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _cmd(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "steindiff.cli.sample", *JOB, *overrides]


def _shards(folder: Path) -> int:
    return len(list((folder / "samples").glob("seeds-*.npz"))) if (folder / "samples").exists() else 0


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _alive(pid: int) -> bool:
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(out) and not out.startswith("Z")


def _wait(predicate, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before the moment of the signal"
        assert time.monotonic() < deadline, "the moment of the signal never came"
        time.sleep(0.02)


def _interrupt(tmp_path: Path, moment, target: str, *overrides: str) -> tuple[subprocess.Popen, str, float, list[int]]:
    """Start the DDP job in tmp_path/run, send SIGTERM to ``target`` ("launcher" or "rank1") once ``moment(folder)``
    holds; returns (process, stderr, seconds from the signal to the launcher's exit, the ranks it started)."""
    folder = tmp_path / "run"
    proc = subprocess.Popen(_cmd(*DDP, *overrides, "hydra.run.dir=run"), cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _children(proc.pid), proc)
        ranks = _children(proc.pid)
        _wait(lambda: moment(folder), proc)
        os.kill(proc.pid if target == "launcher" else ranks[0], signal.SIGTERM)
        sent = time.monotonic()
        try:
            _, err = proc.communicate(timeout=EXIT_WITHIN_S + 40)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run hangs: still running {EXIT_WITHIN_S + 40} s after SIGTERM to the {target}")
        return proc, err, time.monotonic() - sent, ranks
    finally:
        for pid in [*_children(proc.pid), proc.pid]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _reference(overrides=()) -> tuple[np.ndarray, np.ndarray]:
    """Seeds and samples of the uninterrupted job, sampled here batch by batch as the app does (one thread)."""
    run = build_run(compose_sample_config([*JOB, *overrides]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batches = seed_batches(run.seeds, run.batch_size, 0, 1)
        return np.array(sum(batches, [])), np.concatenate([run.sample(b).samples.numpy() for b in batches])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference():
    return _reference()


def _check_stopped(tmp_path: Path, proc, err: str, took_s: float, ranks: list[int]) -> dict:
    assert proc.returncode == 3, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err, err[-3000:]
    print(f"exit {proc.returncode} {took_s:.1f} s after the signal")  # shown with -s
    assert took_s < EXIT_WITHIN_S, f"exit 3 came {took_s:.1f} s after the signal"
    assert not [pid for pid in ranks if _alive(pid)], "a rank outlived the launching process"
    return verify_run(tmp_path / "run", list(range(1500)))


def _rerun_completes(tmp_path: Path, reference, monkeypatch) -> None:
    """The same job rerun in the same folder, here in one process (the trainer may change on resume)."""
    from steindiff.cli.sample import main  # start-up: imports Hydra and the app

    monkeypatch.chdir(tmp_path)
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["steindiff-sample", *JOB, "hydra.run.dir=run"])
    threads = torch.get_num_threads()
    try:
        assert main() == 0
    finally:
        torch.set_num_threads(threads)  # the app sets num_threads=1
    assert verify_run(tmp_path / "run", list(range(1500)))["complete"]
    seeds, samples = load_samples(tmp_path / "run")
    assert np.array_equal(seeds, reference[0])
    np.testing.assert_array_equal(samples, reference[1])  # bit-identical


@pytest.mark.slow
def test_sigterm_to_the_launcher_mid_run(tmp_path, reference, monkeypatch):
    proc, err, took, ranks = _interrupt(tmp_path, lambda folder: _shards(folder) >= 1, "launcher", HOLD)
    report = _check_stopped(tmp_path, proc, err, took, ranks)
    assert 0 < report["present"] < 1500 and not report["duplicated"] and not report["bad_shards"]
    assert not (tmp_path / "run" / "results.json").exists()
    _rerun_completes(tmp_path, reference, monkeypatch)


@pytest.mark.slow
def test_sigterm_to_the_launcher_once_every_shard_is_on_disk(tmp_path, reference, monkeypatch):
    """Rank 1 is waiting for rank 0 at the end of its epoch, rank 0 holds after its last batch: SIGTERM hung here."""
    proc, err, took, ranks = _interrupt(tmp_path, lambda folder: _shards(folder) == 3, "launcher", HOLD)
    report = _check_stopped(tmp_path, proc, err, took, ranks)
    assert report["complete"] and not (tmp_path / "run" / "results.json").exists()
    _rerun_completes(tmp_path, reference, monkeypatch)


@pytest.mark.slow
def test_sigterm_to_rank_1_only(tmp_path, reference, monkeypatch):
    proc, err, took, ranks = _interrupt(tmp_path, lambda folder: _shards(folder) >= 1, "rank1", HOLD)
    report = _check_stopped(tmp_path, proc, err, took, ranks)
    assert 0 < report["present"] < 1500 and not (tmp_path / "run" / "results.json").exists()
    _rerun_completes(tmp_path, reference, monkeypatch)


@pytest.mark.slow
def test_sigterm_to_the_launcher_while_the_results_are_written(tmp_path, reference):
    """After the last batch a signal lets the results finish (a few seconds) and still ends the run with exit 3."""
    proc, err, took, ranks = _interrupt(tmp_path, lambda folder: (folder / "config.yaml").exists(), "launcher")
    report = _check_stopped(tmp_path, proc, err, took, ranks)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert report["complete"] and results["complete"] and results["num_samples"] == 1500
    seeds, samples = load_samples(tmp_path / "run")
    assert np.array_equal(seeds, reference[0])
    np.testing.assert_array_equal(samples, reference[1])
