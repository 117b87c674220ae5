"""The project's own denoiser checkpoints: one safetensors file, weights plus the network spec.

A file holds the (EMA) weights of the raw network F as safetensors tensors, and in the safetensors
metadata (string to string) the spec needed to rebuild the EDM-preconditioned denoiser:

    format      "steindiff-denoiser/1"
    network     JSON {"class_name": "UNet" | "MLP", "kwargs": {...constructor arguments...}}
    sigma_data  the data standard deviation of EDM's preconditioning, e.g. "0.5"
    shape       JSON shape of one sample, e.g. [1, 16, 16] or [2]
    training    JSON: the training command, wall time, steps, final loss, ... (informative only)

``load_denoiser(path)`` returns an ``EDMPrecond`` in eval mode with requires_grad False, its
``DenoiserSpec`` (sample shape, classes) built at construction; ``read_spec(path)`` returns the file's
spec dict (network, sigma_data, shape, training info). Both also read the Lightning ``.ckpt`` files
that ``steindiff-train`` writes (their EMA weights). Every failure raises ``CheckpointError`` with
one line naming the file and what was expected; the network is built and loaded with
``strict=True`` before anything is returned.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from steindiff.core.adaptors import EDMPrecond
from steindiff.core.dtypes import parse_dtype
from steindiff.errors import CheckpointError
from steindiff.io import atomic_write_bytes

from .mlp import MLP
from .unet import UNet

__all__ = ["ASSETS_DIR", "FORMAT", "NETWORKS", "build_network", "load_denoiser", "read_spec", "resolve_path",
           "save_denoiser"]

FORMAT = "steindiff-denoiser/1"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
#: the network classes a spec may name (no arbitrary imports: a checkpoint never runs code)
NETWORKS: dict[str, type[nn.Module]] = {"UNet": UNet, "MLP": MLP}
_EXPECTED = "a steindiff denoiser checkpoint (.safetensors written by steindiff-train, or its Lightning .ckpt)"


def build_network(spec: dict) -> nn.Module:
    """The raw network of a spec {"class_name": ..., "kwargs": {...}} (ValueError if unknown)."""
    name = spec.get("class_name")
    if name not in NETWORKS:
        raise ValueError(f"unknown network class {name!r}; accepted: {', '.join(NETWORKS)}")
    return NETWORKS[name](**dict(spec.get("kwargs") or {}))


def _plain(value):
    """JSON-ready copy (tuples become lists; OmegaConf containers become dicts/lists)."""
    return json.loads(json.dumps(value, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def save_denoiser(path, network: nn.Module, network_spec: dict, sigma_data: float, shape, training: dict | None = None,
                  ) -> Path:
    """Write ``network``'s weights and the spec to ``path`` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "network": json.dumps(_plain(network_spec)),
        "sigma_data": repr(float(sigma_data)),
        "shape": json.dumps([int(s) for s in shape]),
        "training": json.dumps(_plain(training or {})),
    }
    return atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))


def resolve_path(path) -> Path:
    """An absolute path as given; a relative one from the working directory, else from the package's assets."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    asset = ASSETS_DIR / p
    return asset if asset.exists() else p


def _fail(path, what: str) -> CheckpointError:
    return CheckpointError(" ".join(f"{path}: {what}".split()))


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # SafetensorError: not safetensors, truncated, corrupt header
        raise _fail(path, f"not a readable safetensors file ({' '.join(str(err).split())}); expected {_EXPECTED}") \
            from None
    if metadata.get("format") != FORMAT:
        raise _fail(path, f"safetensors file without a steindiff spec (format={metadata.get('format')!r}); "
                          f"expected metadata format={FORMAT!r} as written by steindiff-train")
    try:
        spec = {"network": json.loads(metadata["network"]), "sigma_data": float(metadata["sigma_data"]),
                "shape": [int(s) for s in json.loads(metadata["shape"])],
                "training": json.loads(metadata.get("training") or "{}")}
    except (KeyError, ValueError, TypeError) as err:
        raise _fail(path, f"incomplete or malformed spec in the metadata ({type(err).__name__}: {err}); "
                          "expected keys network, sigma_data, shape") from None
    return spec, tensors


def _read_lightning(path: Path) -> tuple[dict, dict]:
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # not a zip/pickle, truncated, or objects outside the weights-only allowlist
        raise _fail(path, f"not a readable Lightning checkpoint ({type(err).__name__}: "
                          f"{' '.join(str(err).split())[:160]}); expected {_EXPECTED}") from None
    entry = ckpt.get("steindiff") if isinstance(ckpt, dict) else None
    if not isinstance(entry, dict) or "spec" not in entry:
        raise _fail(path, "a checkpoint without the 'steindiff' entry; expected a .ckpt written by steindiff-train")
    state = ckpt.get("state_dict") or {}
    prefix = "ema.network."
    tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not tensors:
        raise _fail(path, "no EMA weights (ema.network.*) in the checkpoint's state_dict")
    spec = dict(entry["spec"])
    try:
        spec = {"network": dict(spec["network"]), "sigma_data": float(spec["sigma_data"]),
                "shape": [int(s) for s in spec["shape"]], "training": dict(spec.get("training") or {})}
    except (KeyError, ValueError, TypeError) as err:
        raise _fail(path, f"incomplete or malformed spec in the 'steindiff' entry ({type(err).__name__}: {err}); "
                          "expected keys network, sigma_data, shape") from None
    return spec, tensors


def _expected_shape(network: nn.Module) -> tuple[int, ...] | None:
    """The sample shape a network takes: (C, H, W) for the U-Net, (dim,) for the MLP; None if unknown."""
    if isinstance(network, UNet):
        return (network.in_channels, network.img_resolution, network.img_resolution)
    if isinstance(network, MLP):
        return (network.dim,)
    return None


def read_spec(path) -> dict:
    """The spec of a checkpoint (network, sigma_data, shape, training) without building the network."""
    return _read(resolve_path(path))[0]


def _read(path: Path) -> tuple[dict, dict]:
    if not path.exists():
        raise _fail(path, f"no such file; expected {_EXPECTED}")
    if not path.is_file():
        raise _fail(path, f"not a file; expected {_EXPECTED}")
    return _read_lightning(path) if path.suffix == ".ckpt" else _read_safetensors(path)


def _load_network(path: Path, spec: dict, tensors: dict) -> nn.Module:
    """The spec's network with the file's weights (strict), its sample shape checked against the spec."""
    try:
        network = build_network(spec["network"])
    except Exception as err:  # unknown class, bad constructor arguments
        raise _fail(path, f"cannot build the network of the spec {spec['network']!r} "
                          f"({type(err).__name__}: {err})") from None
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = next((ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()), str(err))
        raise _fail(path, f"weights do not match the network of the spec ({first[:240]})") from None
    expected = _expected_shape(network)
    if expected is not None and tuple(spec["shape"]) != expected:
        raise _fail(path, f"the spec's sample shape {tuple(spec['shape'])} does not fit its network, "
                          f"which takes {expected}")
    return network


def load_denoiser(path, network_dtype: torch.dtype | str | None = torch.float32, device="cpu") -> EDMPrecond:
    """An ``EDMPrecond`` denoiser from a steindiff checkpoint, ready for sampling (one network call per NFE).

    Eval mode, requires_grad False; ``denoiser.spec.shape`` is the shape of one sample (e.g. (1, 16, 16)),
    ``denoiser.spec.num_classes`` the network's classes. The file's own spec dict (with the training
    info) is ``read_spec(path)``. The network runs in ``network_dtype`` (float32 by default, so float64
    sampling works with float32 weights; a name is accepted).
    """
    network_dtype = parse_dtype(network_dtype, "network_dtype")
    path = resolve_path(path)
    spec, tensors = _read(path)
    network = _load_network(path, spec, tensors)
    denoiser = EDMPrecond(network, sigma_data=spec["sigma_data"], num_classes=network.num_classes,
                          network_dtype=network_dtype, shape=tuple(spec["shape"]))
    return denoiser.to(device).eval().requires_grad_(False)
