"""Load an EDM network snapshot (``network-snapshot-*.pkl``, Karras et al., 2022) as a steindiff denoiser.

    denoiser = load_edm_pickle("edm-cifar10-32x32-cond-vp.pkl", allow_pickle=True)
    denoiser.spec.shape          # (img_channels, img_resolution, img_resolution)
    denoiser.spec.num_classes    # the network's label_dim (0: unconditional)

An EDM snapshot is a pickle of a dict whose ``"ema"`` entry is the preconditioned network: called as
``net(x, sigma, class_labels)`` it returns the denoiser D(x; sigma) in EDM coordinates, which is
steindiff's contract already, so it is wrapped as is (``EDMNetworkDenoiser``).

Unpickling runs code from the file (EDM's snapshots even carry their own source code), so it is
opt-in: ``allow_pickle=True`` only for files from a source you trust. The classes in EDM's pickles
live in EDM's repository (modules ``torch_utils`` and ``dnnlib``), which must be importable: put a
clone of https://github.com/NVlabs/edm on PYTHONPATH. No EDM code is part of steindiff.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from steindiff.core.denoiser import Denoiser, DenoiserSpec
from steindiff.core.dtypes import parse_dtype
from steindiff.errors import CheckpointError, first_line

__all__ = ["EDMNetworkDenoiser", "edm_network_spec", "load_edm_pickle"]

EDM_MODULES = ("torch_utils", "dnnlib")


def _bound(value, unbounded: float) -> float | None:
    """A trained noise bound of an EDM network as a float; None where absent or unbounded (0, inf)."""
    if value is None:
        return None
    value = float(value)
    return None if value == unbounded or not math.isfinite(value) else value


def edm_network_spec(network: nn.Module) -> DenoiserSpec:
    """The ``DenoiserSpec`` of an EDM network from its own attributes (EDM's Precond classes define them).

    shape (img_channels, img_resolution, img_resolution) when both are defined (else None), num_classes
    the ``label_dim`` (0 when absent), sigma_min / sigma_max the network's trained range (None where the
    network defines none, or an unbounded one: EDMPrecond's 0 and inf).
    """
    channels, resolution = getattr(network, "img_channels", None), getattr(network, "img_resolution", None)
    shape = None if channels is None or resolution is None else (int(channels), int(resolution), int(resolution))
    return DenoiserSpec(shape=shape, num_classes=int(getattr(network, "label_dim", 0) or 0),
                        sigma_min=_bound(getattr(network, "sigma_min", None), 0.0),
                        sigma_max=_bound(getattr(network, "sigma_max", None), math.inf))


class EDMNetworkDenoiser(Denoiser):
    """An EDM-preconditioned network ``net(x, sigma, class_labels) -> D(x)`` as a steindiff denoiser.

    The network runs in ``network_dtype`` (float32, as EDM's networks expect); x and sigma are cast to it
    and the output back to x's dtype. Labels are passed as (B, label_dim) rows; None for unconditional.
    The spec (shape, classes, trained sigma range) is read from the network at construction
    (``edm_network_spec``); ``source`` is the file.

    NFE: one network call per evaluation (two, batched, under ``GuidedDenoiser`` with scale != 1).

    Args:
        network: EDM's preconditioned network (``data["ema"]`` of a snapshot).
        network_dtype: the dtype the network runs in (float32 for EDM's networks; None: x's dtype).
        source: the pickle file, for messages.
    """

    def __init__(self, network: nn.Module, network_dtype: torch.dtype | None = torch.float32, source: str = ""):
        super().__init__(edm_network_spec(network))
        self.network = network
        self.network_dtype = network_dtype
        self.source = source

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        dtype = self.network_dtype or x.dtype
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
        raise CheckpointError(f"{path}: not a readable network pickle ({first_line(err)}); expected an EDM "
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
    network_dtype = parse_dtype(network_dtype, "network_dtype", accepted=("float32", "float64", "float16"))
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
