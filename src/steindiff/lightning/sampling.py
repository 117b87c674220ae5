"""Sampling and evaluation as a LightningModule, with EDM-style seed sharding.

``SamplingModule`` holds the denoiser, the sigma grid, the solver and the corrector, and generates
samples in ``test_step`` from batches of seeds. Seeds are split into batches of ``batch_size``
and the batches dealt round-robin to ranks (``SeedBatches``): N requested samples are exactly N
distinct samples whatever the world size (the trainer must use ``use_distributed_sampler=False``;
Lightning's default sampler pads with duplicates). Each batch is written as an npz shard
(seeds, samples) under ``<out_dir>/samples/``; metrics are torchmetrics objects updated in the
steps and computed on every rank.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from steindiff.core.sampling import sample

__all__ = ["SeedBatches", "SamplingModule", "seed_batches", "load_samples"]


def seed_batches(seeds: list[int], batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """The batches of ``rank``: consecutive batches of the seed list, dealt round-robin."""
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    return batches[rank::world_size]


class SeedBatches(Dataset):
    def __init__(self, seeds: list[int], batch_size: int, rank: int = 0, world_size: int = 1):
        self.batches = seed_batches(list(seeds), int(batch_size), rank, world_size)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(self.batches[i], dtype=torch.int64)


class SamplingModule(pl.LightningModule):
    def __init__(self, denoiser, solver, corrector, sigmas: torch.Tensor, *, seeds: list[int], shape,
                 batch_size: int, final_step: str, process, dtype: torch.dtype = torch.float32,
                 metrics=None, out_dir: str | Path = "."):
        super().__init__()
        self.denoiser = denoiser
        self.solver, self.corrector = solver, corrector
        self.register_buffer("sigmas", sigmas.double(), persistent=False)
        self.seeds, self.shape, self.batch_size = list(seeds), tuple(shape), int(batch_size)
        self.final_step, self.process, self.sample_dtype = final_step, process, dtype
        self.metrics = metrics
        self.out_dir = Path(out_dir)
        self.traces: list[dict] = []
        self.nfe: int | None = None
        self._batches_done = 0
        self._samples_done = 0
        self._t0 = None

    def test_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        return DataLoader(SeedBatches(self.seeds, self.batch_size, rank, world), batch_size=None, shuffle=False)

    def on_test_epoch_start(self) -> None:
        self._t0 = time.perf_counter()
        (self.out_dir / "samples").mkdir(parents=True, exist_ok=True)

    def test_step(self, seeds: torch.Tensor, batch_idx: int):
        seed_list = seeds.tolist()
        res = sample(self.denoiser, self.sigmas, self.solver, self.corrector, seeds=seed_list, shape=self.shape,
                     final_step=self.final_step, process=self.process, dtype=self.sample_dtype, device=self.device)
        self.nfe = res.nfe
        for t in res.trace:
            t["batch"] = int(seed_list[0])  # batches are named by their first seed
        self.traces.extend(res.trace)
        samples = res.samples.detach()
        if self.metrics is not None:
            self.metrics.update(samples)
        self._write_shard(seed_list, samples)
        self._samples_done += len(seed_list)
        rate = self._samples_done / max(time.perf_counter() - self._t0, 1e-9)
        self.log("samples_per_s", rate, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(seed_list),
                 rank_zero_only=True)
        return None

    def _write_shard(self, seeds: list[int], samples: torch.Tensor) -> None:
        path = self.out_dir / "samples" / f"seeds-{seeds[0]:08d}-{seeds[-1]:08d}.npz"
        tmp = path.with_name(".tmp-" + path.name)  # written whole, then renamed
        np.savez(tmp, seeds=np.asarray(seeds, dtype=np.int64), samples=samples.float().cpu().numpy())
        tmp.replace(path)

    def on_test_epoch_end(self) -> None:
        if self.metrics is None:
            return
        values = self.metrics.compute()  # every rank: states are synced across processes
        for name, value in values.items():
            self.log(name, float(value), sync_dist=False, rank_zero_only=True)
        self.computed_metrics = {k: float(v) for k, v in values.items()}
        self.metrics.reset()


def load_samples(out_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All shards of a run folder, sorted by seed: (seeds, samples)."""
    shards = sorted(Path(out_dir, "samples").glob("seeds-*.npz"))
    if not shards:
        raise FileNotFoundError(f"no sample shards under {Path(out_dir, 'samples')}")
    seeds, samples = [], []
    for shard in shards:
        with np.load(shard) as f:
            seeds.append(f["seeds"])
            samples.append(f["samples"])
    seeds_all, samples_all = np.concatenate(seeds), np.concatenate(samples)
    order = np.argsort(seeds_all, kind="stable")
    return seeds_all[order], samples_all[order]
