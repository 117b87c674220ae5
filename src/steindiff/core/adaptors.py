"""Adaptors: wrap raw networks into the ``Denoiser`` contract (EDM coordinates, see ``denoiser``).

- ``EDMPrecond``: a raw network F trained with EDM's preconditioning (Karras et al., 2022).
- ``VPNetworkDenoiser``: a network trained on a VP process that predicts eps, v or x0 at time t.
- ``trained_sigmas`` / ``round_sigma``: the EDM noise levels of a discrete process's integer timesteps.
- ``draw_labels`` / ``one_hot_labels``: per-seed class labels, independent of batch composition.
"""

from __future__ import annotations

import torch
from torch import Tensor

from steindiff.core.denoiser import Denoiser, DenoiserSpec
from steindiff.core.processes import NoiseProcess, VPDiscreteProcess
from steindiff.core.rng import check_seed, splitmix64_int

__all__ = [
    "PREDICTIONS",
    "EDMPrecond",
    "VPNetworkDenoiser",
    "draw_labels",
    "one_hot_labels",
    "round_sigma",
    "trained_sigmas",
]

PREDICTIONS = ("eps", "v", "x0")
_LABEL_STREAM = 0x6C61_6265_6C73_2D31  # domain-separation key: label streams differ from noise streams


def _per_sample(c: Tensor, x: Tensor) -> Tensor:
    """Reshape a (B,) coefficient to (B, 1, ..., 1) so that it broadcasts against x."""
    return c.reshape(-1, *([1] * (x.ndim - 1)))


def _cast_labels(labels: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if labels is not None and labels.is_floating_point():
        return labels.to(dtype)
    return labels


class EDMPrecond(Denoiser):
    """EDM preconditioning around a raw network ``F(x_in, c_noise, labels)``.

    With s_d = ``sigma_data`` and r = sqrt(sigma^2 + s_d^2), the denoiser is

        D(x; sigma) = c_skip x + c_out F(c_in x, c_noise),
        c_skip = s_d^2 / r^2,   c_out = sigma s_d / r,   c_in = 1 / r,   c_noise = log(sigma) / 4.

    The skip weight passes the (rescaled) input through at low noise and the network output takes
    over at high noise; c_in makes the network input unit-variance when the data has std s_d.
    ``network_dtype`` (e.g. torch.float32) evaluates F in that dtype while the coefficients and the
    combination stay in x's dtype; None evaluates F in x's dtype.

    Args:
        network: the raw network F(x_in, c_noise, labels).
        sigma_data: the data's standard deviation s_d (> 0).
        num_classes: classes of a conditional network (0: unconditional).
        network_dtype: the dtype F runs in (None: x's dtype).
        shape: the shape of one sample (None: any).
        sigma_min, sigma_max: the trained noise range (None: unbounded).

    NFE: one network call per evaluation.
    """

    def __init__(self, network, sigma_data: float = 0.5, num_classes: int = 0,
                 network_dtype: torch.dtype | None = None, shape=None, sigma_min: float | None = None,
                 sigma_max: float | None = None):
        super().__init__(DenoiserSpec(shape=shape, num_classes=num_classes, sigma_min=sigma_min, sigma_max=sigma_max))
        if not sigma_data > 0:
            raise ValueError(f"EDMPrecond needs sigma_data > 0, got {sigma_data}")
        self.network = network
        self.sigma_data = float(sigma_data)
        self.network_dtype = network_dtype

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) at noise levels ``sigma`` (same shape as sigma)."""
        sd2 = self.sigma_data**2
        r2 = sigma**2 + sd2
        c_skip = sd2 / r2
        c_out = sigma * self.sigma_data * torch.rsqrt(r2)
        c_in = torch.rsqrt(r2)
        c_noise = torch.log(sigma) / 4
        return c_skip, c_out, c_in, c_noise

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        dtype = self.network_dtype or x.dtype
        x_in = (_per_sample(c_in, x) * x).to(dtype)
        f = self.network(x_in, c_noise.to(dtype), _cast_labels(labels, dtype)).to(x.dtype)
        return _per_sample(c_skip, x) * x + _per_sample(c_out, x) * f


class VPNetworkDenoiser(Denoiser):
    """A network trained on a VP process, predicting ``eps``, ``v`` or ``x0`` from (x_t, t).

    Native coordinates: x_t = alpha x0 + sigma eps, v = alpha eps - sigma x0, alpha^2 + sigma^2 = 1.
    Given EDM's (x_hat, sigma_hat): alpha = 1/sqrt(1 + sigma_hat^2), sigma = sigma_hat alpha,
    x_t = alpha x_hat, and the network is queried at ``timestep(sigma_hat)``; its output becomes
    x0 = (x_t - sigma eps)/alpha (eps), alpha x_t - sigma v (v), or the output itself (x0).

    ``time_input``: "continuous" feeds t * ``time_scale`` (e.g. 999 or 1000 for codebases that scale
    t in [0, 1] to an index); "discrete" (needs a ``VPDiscreteProcess``) feeds the timestep index
    tau in [0, N-1]. None picks "discrete" for a ``VPDiscreteProcess`` and "continuous" otherwise.
    ``round_timesteps`` (discrete only) rounds tau to the nearest trained integer timestep and then
    uses that timestep's own noise level for everything (input scale and output conversion), so the
    model is evaluated exactly as trained but at the rounded noise level, not the requested one.
    Use ``round_sigma`` / ``trained_sigmas`` to build grids that hit trained timesteps, where
    rounding is a no-op. Process maps are computed in float64 on the CPU, then cast to x's dtype
    and device (so sigma is not differentiated through; x is); the network receives t as a (B,) float
    tensor of the network dtype.

    Args:
        network: the raw network net(x_t, t, labels).
        process: the VP process it was trained on (declared in the spec: the sampler uses its prior).
        prediction: "eps", "v" or "x0".
        time_input, time_scale, round_timesteps: how t is fed (above).
        num_classes: classes of a conditional network (0: unconditional).
        network_dtype: the dtype the network runs in (None: x's dtype).
        shape: the shape of one sample (None: any).
        sigma_min, sigma_max: the trained noise range (None: unbounded).

    NFE: one network call per evaluation.
    """

    def __init__(self, network, process: NoiseProcess, prediction: str = "eps",
                 time_input: str | None = None, time_scale: float = 1.0, round_timesteps: bool = False,
                 num_classes: int = 0, network_dtype: torch.dtype | None = None, shape=None,
                 sigma_min: float | None = None, sigma_max: float | None = None):
        super().__init__(DenoiserSpec(shape=shape, num_classes=num_classes, process=process, sigma_min=sigma_min,
                                      sigma_max=sigma_max))
        if getattr(process, "variance_exploding", False):
            raise ValueError(f"VPNetworkDenoiser needs a VP process, got the VE process {process!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; accepted: {', '.join(PREDICTIONS)}")
        is_discrete = isinstance(process, VPDiscreteProcess)
        if time_input is None:
            time_input = "discrete" if is_discrete else "continuous"
        if time_input not in ("continuous", "discrete"):
            raise ValueError(f"unknown time_input {time_input!r}; accepted: continuous, discrete")
        if time_input == "discrete" and not is_discrete:
            raise ValueError(f"time_input='discrete' needs a VPDiscreteProcess, got {process!r}")
        if round_timesteps and time_input != "discrete":
            raise ValueError("round_timesteps=True needs time_input='discrete'")
        self.network = network
        self.process = process
        self.prediction = prediction
        self.time_input = time_input
        self.time_scale = float(time_scale)
        self.round_timesteps = bool(round_timesteps)
        self.network_dtype = network_dtype

    def _times(self, sigma_hat) -> tuple[Tensor, Tensor]:
        """(process time t, effective sigma_hat) in float64 on the CPU; rounding applied if enabled."""
        s = torch.as_tensor(sigma_hat).detach().to("cpu", torch.float64)
        t = self.process.t_of_sigma(s)
        if self.round_timesteps:
            t = t.round().clamp(0, self.process.num_timesteps - 1)
            s = self.process.sigma_hat(t)
        return t, s

    def timestep(self, sigma_hat) -> Tensor:
        """What the network receives as its time input at EDM noise level ``sigma_hat`` (float64)."""
        t, _ = self._times(sigma_hat)
        return t * self.time_scale if self.time_input == "continuous" else t

    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None) -> Tensor:
        t, s = self._times(sigma)
        t_in = t * self.time_scale if self.time_input == "continuous" else t
        alpha64 = torch.rsqrt(1.0 + s**2)
        alpha = _per_sample(alpha64.to(device=x.device, dtype=x.dtype), x)
        sig = _per_sample((s * alpha64).to(device=x.device, dtype=x.dtype), x)
        dtype = self.network_dtype or x.dtype
        x_t = alpha * x
        out = self.network(x_t.to(dtype), t_in.to(device=x.device, dtype=dtype), _cast_labels(labels, dtype))
        out = out.to(x.dtype)
        if self.prediction == "eps":
            return (x_t - sig * out) / alpha
        if self.prediction == "v":
            return alpha * x_t - sig * out
        return out


def trained_sigmas(process: VPDiscreteProcess) -> Tensor:
    """EDM noise levels sigma_hat of the integer timesteps 0..N-1, sorted descending (float64)."""
    if not isinstance(process, VPDiscreteProcess):
        raise TypeError(f"trained_sigmas needs a VPDiscreteProcess, got {process!r}")
    tau = torch.arange(process.num_timesteps, dtype=torch.float64)
    return process.sigma_hat(tau).flip(0)


def round_sigma(sigma, process: VPDiscreteProcess):
    """Round ``sigma`` (float or tensor) to the nearest trained noise level, nearest in log sigma.

    Returns a float for a float input, else a tensor of the input's shape, dtype and device.
    """
    table = trained_sigmas(process)
    s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
    idx = (s.log().reshape(-1, 1) - table.log().reshape(1, -1)).abs().argmin(dim=1)
    out = table[idx].reshape(s.shape)
    if isinstance(sigma, Tensor):
        dtype = sigma.dtype if sigma.is_floating_point() else torch.float64
        return out.to(device=sigma.device, dtype=dtype)
    return float(out) if out.ndim == 0 else out


def draw_labels(seeds, num_classes: int) -> Tensor:
    """Class index per seed, (len(seeds),) int64, each from its own ``torch.Generator``.

    The generator of seed s is seeded with a bijective mix of s (splitmix64 of s XOR a fixed key),
    so the label stream is distinct from a noise stream seeded with s itself, and a seed's label
    does not depend on the batch it is drawn in or its position there.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"draw_labels needs num_classes a positive int, got {num_classes!r}")
    labels = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(splitmix64_int(check_seed(seed) ^ _LABEL_STREAM))
        labels.append(int(torch.randint(num_classes, (1,), generator=gen)))
    return torch.tensor(labels, dtype=torch.long)


def one_hot_labels(indices, num_classes: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """(B, num_classes) one-hot rows of class ``indices`` (a sequence or integer tensor)."""
    idx = torch.as_tensor(indices, dtype=torch.long, device=device).reshape(-1)
    if idx.numel() and not bool(((idx >= 0) & (idx < num_classes)).all()):
        raise ValueError(f"class indices must lie in [0, {num_classes - 1}], got {idx.tolist()}")
    return torch.nn.functional.one_hot(idx, num_classes).to(dtype)
