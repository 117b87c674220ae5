"""Sampling and evaluation as a LightningModule, with EDM-style seed sharding.

``SamplingModule(run, out_dir)`` holds a built run (``steindiff.build.Run``: denoiser, sigma grid,
solver, corrector, observers, metrics, decoder, seeds) and generates samples in ``test_step`` from
batches of seeds. Seeds are split into batches of ``run.batch_size`` and the batches dealt
round-robin to ranks (``steindiff.core.seed_batches``): N requested samples are exactly N distinct
samples whatever the world size (the trainer must use ``use_distributed_sampler=False``; Lightning's
default sampler pads with duplicates). Each batch is written as an npz shard (seeds, samples) under
``<out_dir>/samples/``; metrics are torchmetrics objects updated in the steps as
``metrics.update(samples, seeds=seeds)`` and computed on every rank. A ``decoder`` (latent
diffusion: a VAE decoder) maps samples to pixels before the metrics; shards keep the samples
themselves (the latents). Results, plots and logger extras are written by the ``RunResults``
callback (``steindiff.lightning.results``).

Resume: a batch whose shard is already on disk (and passes its checksums) is loaded instead of sampled,
and still updates the metrics, so a resumed run ends with the same samples, NFE and metrics as an
uninterrupted one. A shard counts only if it carries this run's fingerprint (``run_fingerprint``: the run
record's config and a hash of the denoiser's weights, with the batch's seeds): a shard made by another config,
other weights (a checkpoint overwritten at the same path) or another batching is moved to
``<out_dir>/samples-set-aside/`` (said on stderr, never deleted) and its seeds are sampled again; anything
else in samples/ that is none of the run's batches (a stray file, a shard of another batching) goes there too.
The fingerprint goes into the run record (``.steindiff/run.json``), where ``steindiff-verify`` reads it.
``stop_requested`` (set by the app's SIGTERM/SIGINT handler) is checked between batches: the batch in
progress is finished and written, then the run stops with ``RunInterrupted``.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from steindiff.clock import since_process_start
from steindiff.core.sampling import seed_batches
from steindiff.io import TMP_PREFIX
from steindiff.runfolder import read_record, update_record
from steindiff.shards import (
    ShardError,
    batch_fingerprint,
    expected_shards,
    load_samples,
    read_shard,
    run_fingerprint,
    set_aside,
    shard_path,
    write_shard,
)

__all__ = ["SeedBatches", "SamplingModule", "seed_batches", "load_samples", "RunInterrupted", "NonFiniteSamples",
           "weights_hash"]

#: the run record of a sampling run (``steindiff.runfolder``)
RECORD = "run.json"


def weights_hash(module) -> str:
    """SHA-256 of a module's weights: name, dtype, shape and bytes of every tensor of its state_dict, in name
    order (a checkpoint overwritten with other weights at the same path changes it); "" for a non-module."""
    if not isinstance(module, torch.nn.Module):
        return ""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        if not isinstance(value, torch.Tensor):
            h.update(f"{name}={value!r};".encode())
            continue
        flat = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        h.update(flat.view(torch.uint8).numpy())
    return h.hexdigest()


class RunInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived: the batch in progress was finished and written, the run stops."""


class NonFiniteSamples(ValueError):
    """The denoiser returned NaN or Inf; the batch is not written."""


class SeedBatches(Dataset):
    """The seed batches of one rank, as int64 tensors (``seed_batches`` dealt round-robin).

    Args:
        seeds: every seed of the run; batch_size: seeds per batch; rank, world_size: this process.
    """

    def __init__(self, seeds: list[int], batch_size: int, rank: int = 0, world_size: int = 1):
        self.batches = seed_batches(list(seeds), int(batch_size), rank, world_size)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(self.batches[i], dtype=torch.int64)


class SamplingModule(pl.LightningModule):
    """Samples a built run's seeds in ``trainer.test``, writes shards, updates the metrics.

    Args:
        run: a ``steindiff.build.Run``.
        out_dir: the run folder (shards go to ``<out_dir>/samples``).
        require_finite: refuse a batch with NaN/Inf samples (nothing written for it).
        throttle_s: sleep after each batch (tests interrupt runs mid-way with it).
        stop_requested: a callable, True once SIGTERM/SIGINT arrived.
        first_batch: a ``steindiff.prefetch.FirstBatch`` already sampling one batch of seeds (the app starts it
            before Lightning is imported); that batch is taken from it instead of sampled again.

    NFE: the run's (measured per batch; ``self.nfe``).
    """

    def __init__(self, run, out_dir: str | Path = ".", *, require_finite: bool = True, throttle_s: float = 0.0,
                 stop_requested=None, first_batch=None):
        super().__init__()
        self.run = run
        # the run's modules as attributes: registered as submodules, so Lightning moves them to the device
        self.denoiser, self.metrics, self.decoder = run.denoiser, run.metrics, run.decoder
        self.out_dir = Path(out_dir)
        self.traces: list[dict] = []
        self.nfe: int | None = None
        self.computed_metrics: dict[str, float] = {}
        self._samples_done, self._t0 = 0, None
        self.require_finite, self.throttle_s = bool(require_finite), float(throttle_s)
        self.stop_requested = stop_requested
        self.resumed_batches = 0
        self.first_batch = first_batch  # a steindiff.prefetch.FirstBatch sampling this rank's first batch, or None
        self.timing: dict[str, float] = {}  # seconds: process start to the first batch's samples, sampling
        self.fingerprint: dict[str, str] | None = None  # run_fingerprint, set when the test epoch starts
        self.set_aside: list[str] = []  # what this attempt moved out of samples/ (names)

    def test_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        return DataLoader(SeedBatches(self.run.seeds, self.run.batch_size, rank, world), batch_size=None,
                          shuffle=False)

    def on_test_epoch_start(self) -> None:
        self._t0 = time.perf_counter()
        (self.out_dir / "samples").mkdir(parents=True, exist_ok=True)
        record = read_record(self.out_dir, RECORD)
        self.fingerprint = run_fingerprint(record.get("config") if record else None, weights_hash(self.denoiser))
        if self._trainer is None or self.trainer.global_rank == 0:  # every rank computes it, rank 0 writes
            if record is not None and record.get("fingerprint") != self.fingerprint:
                update_record(self.out_dir, RECORD, {"fingerprint": self.fingerprint})
            self._set_aside_unknown()

    def _set_aside_unknown(self) -> None:
        """Move what in samples/ is none of the run's batches (another batching, a stray file) aside (rank 0:
        no rank reads or writes these names)."""
        expected = expected_shards(list(self.run.seeds), int(self.run.batch_size))
        for path in sorted((self.out_dir / "samples").iterdir()):
            if path.name not in expected and not path.name.startswith(TMP_PREFIX):
                self._move_aside(path, "is none of this run's batches")

    def _move_aside(self, path: Path, why: str, then: str = "") -> None:
        moved = set_aside(self.out_dir, path)
        self.set_aside.append(path.name)
        print(f"steindiff-sample: warning: samples/{path.name} {why}; moved to {moved.relative_to(self.out_dir)} "
              f"(not used){then}", file=sys.stderr)

    def test_step(self, seeds: torch.Tensor, batch_idx: int):
        prefetched = self.first_batch is not None and self.first_batch.seeds == seeds.tolist()
        if self.stop_requested is not None and self.stop_requested() and not prefetched:  # finish a started batch
            raise RunInterrupted(f"stopped by signal after {self._samples_done} new samples; "
                                 "rerun the same command in the same folder to resume")
        seed_list = seeds.tolist()
        done = self._done_batch(seed_list)
        if done is None:  # not done before: sample and write the shard
            samples, trace = self._sample(seed_list)
        else:
            samples, trace = done
            self.resumed_batches += 1
        self.traces.extend(trace)
        if self.metrics is not None:
            self.metrics.update(self.decoded(samples), seeds=seeds.to(self.device))
        elapsed = time.perf_counter() - self._t0
        self.timing["sampling_s"] = round(elapsed, 3)  # first batch to this one, metrics updates included
        rate = self._samples_done / max(elapsed, 1e-9)
        self.log("samples_per_s", rate, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(seed_list),
                 rank_zero_only=True)
        if self.throttle_s:
            time.sleep(self.throttle_s)
        return None

    def _sample(self, seeds: list[int]):
        res = self.first_batch.take(seeds) if self.first_batch is not None else None
        ready = None if res is None else self.first_batch.ready_s
        if res is None:
            res = self.run.sample(seeds, device=self.device)
        self.timing.setdefault("first_batch_s", round(ready or since_process_start(), 3))
        self.nfe = res.nfe
        trace = [{**t, "batch": int(seeds[0])} for t in res.trace]  # batches named by their first seed
        samples = res.samples.detach()
        self._check_finite(samples, trace, seeds)
        write_shard(self.out_dir, seeds, samples.cpu().numpy(), trace, nfe=res.nfe,
                    fingerprint=batch_fingerprint(self.fingerprint["run"], seeds) if self.fingerprint else "")
        self._samples_done += len(seeds)
        return samples, trace

    def decoded(self, samples):
        """Samples as the metrics see them: through the decoder (latent models), else unchanged."""
        if self.decoder is None:
            return samples
        was_numpy = not isinstance(samples, torch.Tensor)
        latents = torch.as_tensor(samples, device=self.device)
        with torch.no_grad():
            images = self.decoder(latents)
        return images.cpu().numpy() if was_numpy else images

    def _done_batch(self, seeds: list[int]):
        """(samples, trace) of this run's batch already on disk (resume), or None: no shard, an unreadable one
        (overwritten when the batch is written again), or one of another run (moved aside)."""
        path = shard_path(self.out_dir, seeds)
        if not path.exists():
            return None
        try:
            shard = read_shard(path)
        except ShardError as err:
            print(f"steindiff: {err}; sampling these seeds again")
            return None
        expected = batch_fingerprint(self.fingerprint["run"], seeds) if self.fingerprint else ""
        if shard.seeds.tolist() != seeds or shard.fingerprint != expected or shard.nfe is None:
            why = "holds other seeds" if shard.seeds.tolist() != seeds else \
                "was made by another run (its fingerprint differs: config, denoiser weights or batching)"
            self._move_aside(path, why, "; its seeds are sampled again")
            return None
        self.nfe = shard.nfe  # the measured NFE, final denoising call included
        return torch.from_numpy(shard.samples).to(device=self.device, dtype=self.run.dtype), shard.trace

    def _check_finite(self, samples: torch.Tensor, trace: list[dict], seeds: list[int]) -> None:
        if not self.require_finite or bool(torch.isfinite(samples).all()):
            return
        bad = next((t for t in trace if t.get("nonfinite")), None)
        where = f" (first at step {bad['step']}, sigma {bad['sigma']:.4g})" if bad else ""
        row = int(torch.nonzero(~torch.isfinite(samples).flatten(1).all(1))[0])
        raise NonFiniteSamples(f"the denoiser produced NaN or Inf for seed {seeds[row]}{where}; "
                               "nothing was written for this batch")

    def on_test_epoch_end(self) -> None:
        if self.metrics is None:
            return
        values = self.metrics.compute()  # every rank: states are synced across processes
        for name, value in values.items():  # equal on every rank: the mean across ranks (sync_dist) is the value
            self.log(name, float(value), sync_dist=True)
        self.computed_metrics = {k: float(v) for k, v in values.items()}
        self.metrics.reset()
