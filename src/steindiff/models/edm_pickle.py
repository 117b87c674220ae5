"""Load an EDM network snapshot (``network-snapshot-*.pkl``, Karras et al., 2022) as a steindiff denoiser.

    denoiser = load_edm_pickle("edm-cifar10-32x32-cond-vp.pkl", allow_pickle=True)
    denoiser.shape          # (img_channels, img_resolution, img_resolution)
    denoiser.num_classes    # the network's label_dim (0: unconditional)

An EDM snapshot is a pickle of a dict whose ``"ema"`` entry is the preconditioned network: called as
``net(x, sigma, class_labels)`` it returns the denoiser D(x; sigma) in EDM coordinates, which is
steindiff's contract already, so it is wrapped as is (``EDMNetworkDenoiser``).

Unpickling runs code from the file (EDM's snapshots even carry their own source code), so it is
opt-in: ``allow_pickle=True`` only for files from a source you trust. The classes in EDM's pickles
live in EDM's repository (modules ``torch_utils`` and ``dnnlib``), which must be importable: put a
clone of https://github.com/NVlabs/edm on PYTHONPATH. No EDM code is part of steindiff.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from steindiff.core.denoiser import Denoiser
from steindiff.models.errors import CheckpointError

__all__ = ["EDMNetworkDenoiser", "load_edm_pickle"]

EDM_MODULES = ("torch_utils", "dnnlib")


def _first_line(err: BaseException, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class EDMNetworkDenoiser(Denoiser):
    """An EDM-preconditioned network ``net(x, sigma, class_labels) -> D(x)`` as a steindiff denoiser.

    The network runs in ``network_dtype`` (float32, as EDM's networks expect); x and sigma are cast to it
    and the output back to x's dtype. Labels are passed as (B, label_dim) rows; None for unconditional.
    Attributes: ``shape`` (C, H, W) when the network has img_channels / img_resolution, ``num_classes``
    (label_dim), ``sigma_min`` / ``sigma_max`` when the network defines them, ``source`` (the file).
    """

    def __init__(self, network: nn.Module, network_dtype: torch.dtype = torch.float32, source: str = ""):
        super().__init__()
        self.network = network
        self.network_dtype = network_dtype
        self.source = source
        self.num_classes = int(getattr(network, "label_dim", 0) or 0)
        channels, resolution = getattr(network, "img_channels", None), getattr(network, "img_resolution", None)
        self.shape = None if channels is None or resolution is None else (int(channels), int(resolution),
                                                                           int(resolution))
        for name in ("sigma_min", "sigma_max"):
            value = getattr(network, name, None)
            setattr(self, name, None if value is None else float(value))

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        dtype = self.network_dtype
        if labels is not None:
            labels = labels.to(dtype)
        return self.network(x.to(dtype), sigma.to(dtype), labels).to(x.dtype)


def _unpickle(path: Path):
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except ModuleNotFoundError as err:
        missing = err.name or str(err)
        hint = ("EDM snapshots need EDM's source code (modules torch_utils, dnnlib): put a clone of "
                "https://github.com/NVlabs/edm on PYTHONPATH")
        if str(missing).split(".")[0] not in EDM_MODULES:
            hint = f"make the module that defines the pickled network importable ({hint})"
        raise CheckpointError(f"{path}: unpickling needs the module {missing!r}, which is not importable; "
                              f"{hint}") from None
    except Exception as err:  # noqa: BLE001 - unpickling garbage raises almost any type
        raise CheckpointError(f"{path}: not a readable network pickle ({_first_line(err)}); expected an EDM "
                              "network snapshot (.pkl)") from None


def load_edm_pickle(path, allow_pickle: bool = False, key: str = "ema",
                    network_dtype: torch.dtype | str = torch.float32) -> EDMNetworkDenoiser:
    """The denoiser in ``data[key]`` of an EDM network pickle (``allow_pickle=True`` required).

    Raises a one-line ``CheckpointError`` naming the file for: no opt-in, a missing file, a pickle
    that needs modules that are not importable, a truncated or foreign file, no ``key`` entry, or an
    entry that is not a torch module. The network is returned in eval mode with frozen parameters.
    """
    if path is None or str(path) in ("", "???"):
        raise CheckpointError("no EDM pickle given; expected path=/path/to/network-snapshot.pkl")
    path = Path(path).expanduser()
    if not allow_pickle:
        raise CheckpointError(f"{path}: loading a pickle runs code from the file; if you trust its source, opt in "
                              "with allow_pickle=True (command line: denoiser.allow_pickle=true)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected an EDM network snapshot (.pkl)")
    if isinstance(network_dtype, str):
        if not isinstance(getattr(torch, network_dtype, None), torch.dtype):
            raise ValueError(f"unknown network_dtype {network_dtype!r}; accepted: float32, float64, float16")
        network_dtype = getattr(torch, network_dtype)
    data = _unpickle(path)
    if not isinstance(data, dict) or key not in data:
        found = f"keys {sorted(map(str, data))}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise CheckpointError(f"{path}: found {found}; expected a dict with the network under {key!r} "
                              "(an EDM network snapshot)")
    net = data[key]
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"{path}: data[{key!r}] is a {type(net).__name__}; expected a torch.nn.Module "
                              "(EDM's preconditioned network)")
    net.eval().requires_grad_(False)
    return EDMNetworkDenoiser(net, network_dtype=network_dtype, source=str(path))
