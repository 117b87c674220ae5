"""Denoiser training with EDM's loss (Karras et al., 2022), an EMA of the weights, and export.

For data x_star, ln sigma ~ N(P_mean, P_std^2) and n ~ N(0, sigma^2 I), the loss is

    lambda(sigma) || D(x_star + n; sigma) - x_star ||^2,   lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2,

averaged over the batch and the entries, with D the EDM-preconditioned denoiser (``EDMPrecond``)
around the raw network. The exponential moving average of the weights follows EDM: a half-life of
``ema_halflife_images`` training images, ramped up to ``ema_rampup_ratio`` times the images seen so far;
validation and export use the EMA. Adam with a linear learning-rate warm-up (and optionally a cosine
decay to zero at ``max_steps``).

The Lightning checkpoints carry, next to the state_dict (``denoiser.*`` and ``ema.*``), a
``"steindiff"`` entry with the spec, so ``steindiff.models.checkpoint.load_denoiser`` reads them.
"""

from __future__ import annotations

import copy
import math
import time

import pytorch_lightning as pl
import torch
from torch import Tensor

from steindiff.core.adaptors import EDMPrecond
from steindiff.models.checkpoint import build_network, save_denoiser

__all__ = ["EDMTrainingModule", "edm_loss"]


def edm_loss(denoiser, x_star: Tensor, sigma: Tensor, noise: Tensor, sigma_data: float) -> Tensor:
    """(B,) per-sample loss lambda(sigma) * mean over entries of (D(x_star + sigma noise; sigma) - x_star)^2."""
    s = sigma.reshape(-1, *([1] * (x_star.ndim - 1)))
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2  # (B,)
    data_prediction = denoiser(x_star + s * noise, sigma)
    return weight * (data_prediction - x_star).square().flatten(1).mean(dim=1)


class EDMTrainingModule(pl.LightningModule):
    """Trains ``EDMPrecond(network)`` with EDM's loss; keeps ``ema`` (an EDMPrecond copy) for validation/export.

    Args:
        network_spec: {"class_name": "UNet" | "MLP", "kwargs": {...}} (``models.checkpoint.build_network``).
        sigma_data: EDM's data standard deviation s_d.
        shape: the shape of one sample.
        lr, betas: Adam's learning rate and betas.
        warmup_steps: steps of the linear learning-rate warm-up.
        lr_decay: "none" or "cosine" (to zero at ``max_steps``).
        max_steps: the training length (needed by the cosine decay).
        P_mean, P_std: ln sigma ~ N(P_mean, P_std^2) in the loss.
        ema_halflife_images: the EMA half-life in training images.
        ema_rampup_ratio: the half-life is at most this times the images seen (None: no ramp-up).
        training_info: informative entries saved with the checkpoint (command, ...).
    """

    def __init__(self, network_spec: dict, sigma_data: float, shape, lr: float = 1e-3, betas=(0.9, 0.999),
                 warmup_steps: int = 200, lr_decay: str = "none", max_steps: int | None = None,
                 P_mean: float = -1.2, P_std: float = 1.2, ema_halflife_images: float = 50_000,
                 ema_rampup_ratio: float | None = 0.05, training_info: dict | None = None):
        super().__init__()
        if lr_decay not in ("none", "cosine"):
            raise ValueError(f"lr_decay={lr_decay!r} is not accepted: expected none or cosine")
        if lr_decay == "cosine" and not max_steps:
            raise ValueError("lr_decay=cosine needs max_steps")
        self.network_spec = dict(network_spec)
        self.sigma_data, self.shape = float(sigma_data), tuple(int(s) for s in shape)
        self.lr, self.betas, self.warmup_steps = float(lr), tuple(betas), int(warmup_steps)
        self.lr_decay, self.max_steps = lr_decay, max_steps
        self.P_mean, self.P_std = float(P_mean), float(P_std)
        self.ema_halflife_images, self.ema_rampup_ratio = float(ema_halflife_images), ema_rampup_ratio
        self.training_info = dict(training_info or {})
        network = build_network(self.network_spec)
        self.denoiser = EDMPrecond(network, sigma_data=self.sigma_data, num_classes=network.num_classes,
                                   shape=self.shape)
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.float64))
        self.seconds_before = 0.0  # training wall time of earlier sessions (restored on resume)
        self._session_start: float | None = None
        self._batch_size = 0
        self.last_train_loss: float | None = None
        self.last_val_loss: float | None = None

    # ---- spec and export ----------------------------------------------------------------------
    def spec(self) -> dict:
        return {"network": self.network_spec, "sigma_data": self.sigma_data, "shape": list(self.shape),
                "training": self.info()}

    def train_seconds(self) -> float:
        running = time.perf_counter() - self._session_start if self._session_start is not None else 0.0
        return self.seconds_before + running

    def info(self) -> dict:
        return {**self.training_info, "steps": int(self.global_step), "images": int(self.images_seen),
                "train_seconds": round(self.train_seconds(), 1), "final_train_loss": self.last_train_loss,
                "final_val_loss": self.last_val_loss}

    def export(self, path, extra: dict | None = None):
        """Write the EMA network and the spec in the project's safetensors format (``models.checkpoint``)."""
        return save_denoiser(path, self.ema.network, self.network_spec, self.sigma_data, self.shape,
                             training={**self.info(), **(extra or {})})

    # ---- training -------------------------------------------------------------------------------
    def _loss(self, denoiser, x_star: Tensor, generator: torch.Generator | None = None) -> Tensor:
        device = x_star.device if generator is None else "cpu"  # a seeded generator draws on the CPU
        z = torch.randn(x_star.shape[0], generator=generator, dtype=x_star.dtype, device=device).to(x_star.device)
        sigma = (z * self.P_std + self.P_mean).exp()  # ln sigma ~ N(P_mean, P_std^2)
        noise = torch.randn(x_star.shape, generator=generator, dtype=x_star.dtype, device=device).to(x_star.device)
        return edm_loss(denoiser, x_star, sigma, noise, self.sigma_data).mean()

    def on_train_start(self) -> None:
        self._session_start = time.perf_counter()

    def on_train_end(self) -> None:
        self.seconds_before = self.train_seconds()
        self._session_start = None

    def training_step(self, batch, batch_idx: int) -> Tensor:
        (x_star,) = batch
        self._batch_size = x_star.shape[0]
        loss = self._loss(self.denoiser, x_star)
        self.last_train_loss = float(loss.detach())
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def ema_beta(self, batch_size: int) -> float:
        """EDM's EMA decay per step: 0.5 ** (batch / half-life), half-life min(h, rampup * images seen)."""
        halflife = self.ema_halflife_images
        if self.ema_rampup_ratio is not None:
            halflife = min(halflife, float(self.images_seen) * self.ema_rampup_ratio)
        return 0.5 ** (batch_size / max(halflife, 1e-8))

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimizer step, then the EMA update (before any callback saves a checkpoint of this step)."""
        super().optimizer_step(*args, **kwargs)
        batch_size = self._batch_size
        self.images_seen += batch_size
        beta = self.ema_beta(batch_size)
        with torch.no_grad():
            for p_ema, p in zip(self.ema.parameters(), self.denoiser.parameters()):
                p_ema.lerp_(p.detach(), 1 - beta)
            for b_ema, b in zip(self.ema.buffers(), self.denoiser.buffers()):
                b_ema.copy_(b)

    def validation_step(self, batch, batch_idx: int) -> None:
        (x_star,) = batch
        generator = torch.Generator().manual_seed(1000 + batch_idx)  # the same noise at every validation
        loss = self._loss(self.ema, x_star, generator)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=x_star.shape[0])

    def on_validation_epoch_end(self) -> None:
        value = self.trainer.callback_metrics.get("val/loss")
        if value is not None:
            self.last_val_loss = float(value)

    def lr_factor(self, step: int) -> float:
        factor = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.lr_decay == "cosine":
            progress = min(1.0, step / float(self.max_steps))
            factor *= 0.5 * (1 + math.cos(math.pi * progress))
        return factor

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=self.lr, betas=self.betas, eps=1e-8)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["steindiff"] = {"spec": self.spec(), "train_seconds": self.train_seconds()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        entry = checkpoint.get("steindiff") or {}
        self.seconds_before = float(entry.get("train_seconds", 0.0))
        training = (entry.get("spec") or {}).get("training") or {}
        self.last_train_loss = training.get("final_train_loss")
        self.last_val_loss = training.get("final_val_loss")
