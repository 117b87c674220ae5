"""One signal policy for every rank of a sampling run: SIGTERM/SIGINT on any rank stop all ranks after the same batch.

A signal handler only sets a flag (``steindiff.cli.sample._StopFlag``): it runs no collective and writes nothing.
``StopPolicy`` (a callback) turns the flags of all ranks into one decision at points every rank reaches in the same
order: the start of the test epoch (where they also learn the most batches any rank has), the end of every batch (a
rank with fewer batches than the others takes its missing turns at the end of its epoch), and the end of the run,
after the results are written. At each point the ranks reduce their flags (``Strategy.reduce_boolean_decision``:
one small all-reduce, nothing with one process); once the decision is "stop" it holds and no collective follows, so
a rank still finishing a batch it had started (the prefetched first batch) never waits on the others. Every rank
then raises ``RunInterrupted`` (the app exits 3): the batches finished are on disk, a rerun resumes. A signal after
the last point (the results written) ends the rank that got it with exit 3 all the same, and rank 0 exits 3
when a rank it started did.

Lightning's own SIGTERM handler is kept off (``keep_lightning_off_signals``): it forwards the signal and
runs a broadcast inside the handler, which meets whatever collective the other ranks are in (a barrier, the
metrics' gather) and hangs the job. With Lightning's subprocess launcher, rank 0 takes its child processes
out of Lightning's process observer when the decision is made (the observer SIGKILLs rank 0 as soon as a
child exits non-zero), waits for them (``reap``) and kills one that lingers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytorch_lightning as pl
import torch

from .sampling import RunInterrupted

__all__ = ["StopPolicy", "keep_lightning_off_signals"]

_RESUME = "rerun the same command in the same folder to resume"


def keep_lightning_off_signals(trainer: pl.Trainer) -> bool:
    """Keep ``trainer`` from installing its SIGTERM handler (the app's own handler stays). True if done: the
    hook is Lightning's private ``_signal_connector``; without it (another Lightning) nothing changes."""
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not hasattr(connector, "register_signal_handlers"):
        return False
    connector.register_signal_handlers = lambda: None  # its teardown then restores nothing
    return True


class StopPolicy(pl.Callback):
    """The ranks' stop decision at common points (see the module docstring). Put it after ``RunResults``.

    Args:
        flag: this process's signal flag (True once SIGTERM/SIGINT arrived).
        reap_timeout_s: how long rank 0 waits for its child processes to exit before it kills them.

    Calling the policy returns the decision so far (no collective): the module polls it between batches.
    """

    def __init__(self, flag: Callable[[], bool], reap_timeout_s: float = 15.0):
        self.flag, self.reap_timeout_s = flag, float(reap_timeout_s)
        self.stopped, self.turns, self.children = False, 0, []
        self._batches = self._most = 0

    def __call__(self) -> bool:
        return self.stopped

    def on_test_epoch_start(self, trainer, module) -> None:
        self._batches = int(sum(trainer.num_test_batches))  # this rank's; the most of any rank, reduced (max)
        mine = torch.tensor(self._batches, device=trainer.strategy.root_device)
        self._most = int(trainer.strategy.reduce(mine, reduce_op="max"))
        self._agree(trainer)  # the module stops before its first batch (unless that batch was prefetched)

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._agree(trainer):
            raise RunInterrupted(f"stopped by signal after batch {batch_idx + 1}; {_RESUME}")

    def on_test_epoch_end(self, trainer, module) -> None:
        while self.turns < 1 + self._most and not self.stopped:  # the turns of the batches this rank has not
            self._agree(trainer)
        if self.stopped:
            raise RunInterrupted(f"stopped by signal after this rank's {self._batches} batches; {_RESUME}")

    def on_test_end(self, trainer, module) -> None:
        if self._agree(trainer, last=True):
            raise RunInterrupted(f"stopped by signal while the results were written (they are complete); {_RESUME}")

    def _agree(self, trainer, last: bool = False) -> bool:
        """One decision point: every rank's flag reduced (any), unless the decision is already to stop."""
        if not self.stopped:
            self.turns += 1
            self.stopped = trainer.strategy.reduce_boolean_decision(bool(self.flag()), all=False)
        if self.stopped or last:
            self._detach_children(trainer)
        return self.stopped

    def _detach_children(self, trainer) -> None:
        """Rank 0 of a subprocess launch: take the children from Lightning's observer (it would SIGKILL this
        process when a child exits 3) and keep them to ``reap``."""
        procs = getattr(trainer.strategy.launcher, "procs", None)
        if trainer.global_rank == 0 and isinstance(procs, list) and procs:
            self.children.extend(procs)
            procs.clear()  # the observer's own list: it sees no child and ends

    def reap(self) -> list[int]:
        """Wait for the detached children (killing any still running after ``reap_timeout_s``); their exit codes."""
        deadline, codes = time.monotonic() + self.reap_timeout_s, []
        for proc in self.children:
            try:
                codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 0.1)))
            except Exception:  # subprocess.TimeoutExpired: it hangs; it must not outlive the run
                proc.kill()
                codes.append(proc.wait())
        self.children = []
        return codes
