"""The run's first batch, sampled in a background thread while the app is still starting up.

``steindiff-sample`` spends seconds importing Lightning and starting the trainer before its first
``test_step``. ``FirstBatch(run, seeds)`` starts ``run.sample(seeds)`` on a second thread as soon as the
run is built; the sampling module then takes the result (``take``) instead of sampling that batch again.
Torch releases the GIL in its kernels, so on a machine with a spare core the imports and the sampling
overlap. The samples, NFE and trace are those of sampling in ``test_step`` (same function, same seeds:
tested bit for bit); the thread only moves the work earlier. It is used for single-process CPU runs
(``SamplingModule`` samples on the trainer's device, which a GPU run only knows later).

``cancel()`` stops the thread at its next step (the app calls it when it fails before sampling), so a
one-line error never waits for a batch to finish.
"""

from __future__ import annotations

import threading

from steindiff.clock import since_process_start
from steindiff.core.observers import Observer

__all__ = ["FirstBatch"]


class _Cancelled(Exception):
    """The app no longer wants the batch."""


class _CancelPoint(Observer):
    """An observer that adds nothing to the trace and raises once the batch is cancelled."""

    def __init__(self, event: threading.Event):
        self.event = event

    def observe(self, x, output, context) -> dict:
        if self.event.is_set():
            raise _Cancelled
        return {}


class FirstBatch:
    """``run.sample(seeds)`` on a daemon thread, started at construction.

    Args:
        run: a built ``steindiff.build.Run`` (its denoiser on the CPU).
        seeds: the seeds of the batch (the first batch of this process).
    """

    def __init__(self, run, seeds: list[int]):
        self.seeds = list(seeds)
        self._result, self._error = None, None
        self.ready_s: float | None = None  # seconds from process start to the batch's samples
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(run,), name="steindiff-first-batch", daemon=True)
        self._thread.start()

    def _work(self, run) -> None:
        try:
            observers = [*run.observers, _CancelPoint(self._cancel)]
            self._result = run.sample(seeds=self.seeds, observers=observers)
            self.ready_s = since_process_start()
        except _Cancelled:
            pass
        except BaseException as err:  # re-raised in the main thread by take()
            self._error = err

    def take(self, seeds: list[int]):
        """The ``SampleResult`` of ``seeds`` once ready (waits), or None when these are not its seeds."""
        if list(seeds) != self.seeds or self._cancel.is_set():
            return None
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        result, self._result = self._result, None
        return result

    def cancel(self) -> None:
        """Stop the thread at its next step and wait for it (at most one solver step)."""
        self._cancel.set()
        self._thread.join()
