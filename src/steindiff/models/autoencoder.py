"""The decode stage of latent diffusion: a diffusers ``AutoencoderKL`` turning latents into images.

    decoder = load_decoder("/path/to/pipeline")      # or the vae/ folder itself
    images = decoder(latents)                        # (B, C_img, H * f, W * f) in [-1, 1]

The latents are the denoiser's samples (EDM coordinates, i.e. data-space latents at sigma = 0),
which the diffusion model learned in units scaled by the VAE's ``scaling_factor``; the decoder
undoes that scaling (and ``shift_factor`` where the VAE has one) before ``vae.decode``:

    image = clamp(vae.decode(latents / scaling_factor + shift_factor).sample, -1, 1)

Nothing is downloaded (``local_files_only=True``); errors are one ``CheckpointError`` line.
"""

from __future__ import annotations

from torch import Tensor, nn

from steindiff.core.dtypes import parse_dtype
from steindiff.errors import CheckpointError
from steindiff.models.diffusers_loader import import_diffusers, load_component, read_json, resolve_pipeline_folder

__all__ = ["LatentDecoder", "load_decoder"]


class LatentDecoder(nn.Module):
    """``latents -> clamp(vae.decode(latents / scaling_factor + shift_factor).sample, -1, 1)``.

    Not a denoiser: it has no ``DenoiserSpec``. Attributes, all set at construction: ``scaling_factor``,
    ``shift_factor``, ``latent_channels``, ``downsample`` (the spatial factor f between image and
    latent), ``latent_shape`` / ``image_shape`` (C, H, W) when the VAE config has a ``sample_size``
    (else None), ``source``. The VAE runs in its own dtype; the output has the latents' dtype.

    Args:
        vae: a diffusers AutoencoderKL (eval mode, frozen).
        scaling_factor: overrides the VAE config's ``scaling_factor`` (None: the config's, else 1).
        shift_factor: overrides the VAE config's ``shift_factor`` (None: the config's, else 0).
        clamp: clamp the decoded images to [-1, 1].
        source: the folder the VAE came from, for messages.
    """

    def __init__(self, vae: nn.Module, scaling_factor: float | None = None, shift_factor: float | None = None,
                 clamp: bool = True, source: str = ""):
        super().__init__()
        config = vae.config
        self.vae = vae
        self.scaling_factor = float(scaling_factor if scaling_factor is not None
                                    else getattr(config, "scaling_factor", None) or 1.0)
        if not self.scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, got {self.scaling_factor}")
        shift = shift_factor if shift_factor is not None else getattr(config, "shift_factor", None)
        self.shift_factor = float(shift or 0.0)
        self.clamp = bool(clamp)
        self.source = source
        self.latent_channels = int(config.latent_channels)
        self.downsample = 2 ** (len(config.block_out_channels) - 1)
        size = getattr(config, "sample_size", None)
        if isinstance(size, int):
            size = (size, size)
        self.image_shape = None if not size else (int(config.out_channels), int(size[0]), int(size[1]))
        self.latent_shape = None if not size else (self.latent_channels, int(size[0]) // self.downsample,
                                                   int(size[1]) // self.downsample)

    def forward(self, latents: Tensor) -> Tensor:
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"LatentDecoder expects latents (B, {self.latent_channels}, h, w), "
                             f"got {tuple(latents.shape)}")
        dtype = next(self.vae.parameters()).dtype
        z = (latents / self.scaling_factor + self.shift_factor).to(dtype)
        images = self.vae.decode(z).sample.to(latents.dtype)
        return images.clamp(-1.0, 1.0) if self.clamp else images


def load_decoder(path, scaling_factor: float | None = None, dtype=None, clamp: bool = True) -> LatentDecoder | None:
    """A ``LatentDecoder`` from a local AutoencoderKL folder (or a pipeline folder with ``vae/``).

    ``path=None`` returns None (no decode stage). ``scaling_factor`` overrides the VAE config's;
    ``dtype`` (float32, float64, float16, bfloat16 or None: the saved dtype) casts the VAE weights.
    """
    if path is None:
        return None
    diffusers = import_diffusers("load_decoder")
    torch_dtype = parse_dtype(dtype, "dtype")
    folder, _ = resolve_pipeline_folder(path, component="vae")
    config = read_json(folder / "config.json", "AutoencoderKL config")
    for key in ("latent_channels", "block_out_channels"):
        if key not in config:
            raise CheckpointError(f"{folder / 'config.json'}: no {key}; expected an AutoencoderKL config")
    vae = load_component(diffusers.AutoencoderKL, folder, "AutoencoderKL", torch_dtype)
    return LatentDecoder(vae, scaling_factor=scaling_factor, clamp=clamp, source=str(folder))
