"""LightningDataModules for denoiser training: data x_star as tensors (no labels), all in memory.

- ``DigitsDataModule``: scikit-learn's digits (train split for training, test split for validation),
  (1, size, size) in [-1, 1], size 8 or 16 (bilinear upscale).
- ``PatchesDataModule``: random 16x16 crops of scikit-image's RGB photographs, (3, size, size).
- ``MixtureDataModule``: exact samples of a Gaussian-mixture preset (``ring2d``, ``aniso32``, ...),
  (dim,), drawn once with fixed seeds (validation from another seed).

Each exposes ``shape`` (one sample) and ``sigma_data`` (EDM's data standard deviation: given, or
measured on the training data when null).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from steindiff.core.mixture import mixture_preset
from steindiff.datasets import digits_images, image_patches

__all__ = ["DigitsDataModule", "MixtureDataModule", "PatchesDataModule", "TensorDataModule"]


class TensorDataModule(pl.LightningDataModule):
    """Training and validation tensors (N, *shape) served in shuffled batches; subclasses fill ``make``.

    Args:
        batch_size: training batch size (validation batches hold at least 256).
        sigma_data: EDM's data standard deviation (None: measured on the training data).
        num_workers: DataLoader worker processes.
    """

    def __init__(self, batch_size: int = 128, sigma_data: float | None = None, num_workers: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is not accepted: expected an integer >= 1")
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self._sigma_data = sigma_data
        self.train_data: Tensor | None = None
        self.val_data: Tensor | None = None

    def make(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_data is None:
            self.train_data, self.val_data = (t.float().contiguous() for t in self.make())

    @property
    def shape(self) -> tuple[int, ...]:
        self.setup()
        return tuple(self.train_data.shape[1:])

    @property
    def sigma_data(self) -> float:
        if self._sigma_data is not None:
            return float(self._sigma_data)
        self.setup()
        return float(self.train_data.std())

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(self.train_data), batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.val_data), batch_size=max(self.batch_size, 256), shuffle=False,
                          num_workers=self.num_workers)

    def describe(self) -> dict:
        return {"name": type(self).__name__, "shape": list(self.shape), "num_train": len(self.train_data)}


class DigitsDataModule(TensorDataModule):
    """Handwritten digits (1, size, size): train split (1500) for training, test split (297) for validation.

    Args:
        size: 8 (as stored) or 16 (bilinear upscale).
        batch_size, sigma_data, num_workers: as in ``TensorDataModule``.
    """

    def __init__(self, size: int = 8, batch_size: int = 128, sigma_data: float | None = None, num_workers: int = 0):
        super().__init__(batch_size, sigma_data, num_workers)
        self.size = int(size)
        if self.size not in (8, 16):
            raise ValueError(f"data.size={size!r} is not accepted: expected 8 or 16")

    def make(self) -> tuple[Tensor, Tensor]:
        return digits_images("train", self.size), digits_images("test", self.size)

    def describe(self) -> dict:
        return {**super().describe(), "dataset": "digits", "size": self.size}


class PatchesDataModule(TensorDataModule):
    """Natural-image crops (3, size, size): ``num_train`` crops from ``seed``, ``num_val`` from ``seed + 1``.

    Args:
        size: the crop size.
        num_train, num_val: the numbers of training and validation crops.
        seed: the seed of the training crops (validation: seed + 1).
        batch_size, sigma_data, num_workers: as in ``TensorDataModule``.
    """

    def __init__(self, size: int = 16, num_train: int = 20000, num_val: int = 1000, seed: int = 0,
                 batch_size: int = 128, sigma_data: float | None = None, num_workers: int = 0):
        super().__init__(batch_size, sigma_data, num_workers)
        self.size, self.num_train, self.num_val, self.seed = int(size), int(num_train), int(num_val), int(seed)

    def make(self) -> tuple[Tensor, Tensor]:
        return (image_patches(self.num_train, self.size, self.seed),
                image_patches(self.num_val, self.size, self.seed + 1))

    def describe(self) -> dict:
        return {**super().describe(), "dataset": "patches", "size": self.size, "seed": self.seed}


class MixtureDataModule(TensorDataModule):
    """Exact samples of the mixture preset ``name``: ``num_train`` from ``seed``, ``num_val`` from ``seed + 1``.

    Args:
        name: the mixture preset (``steindiff.core.mixture_preset``), e.g. "ring2d" or "aniso32".
        num_train, num_val: the numbers of training and validation samples.
        seed: the seed of the training samples (validation: seed + 1).
        batch_size, sigma_data, num_workers: as in ``TensorDataModule``.
    """

    def __init__(self, name: str = "ring2d", num_train: int = 100000, num_val: int = 5000, seed: int = 0,
                 batch_size: int = 512, sigma_data: float | None = None, num_workers: int = 0):
        super().__init__(batch_size, sigma_data, num_workers)
        self.name, self.num_train, self.num_val, self.seed = name, int(num_train), int(num_val), int(seed)
        self.mixture = mixture_preset(name)

    def make(self) -> tuple[Tensor, Tensor]:
        train = self.mixture.sample(self.num_train, generator=torch.Generator().manual_seed(self.seed))
        val = self.mixture.sample(self.num_val, generator=torch.Generator().manual_seed(self.seed + 1))
        return train, val

    def describe(self) -> dict:
        return {**super().describe(), "dataset": "mixture", "preset": self.name, "seed": self.seed}
