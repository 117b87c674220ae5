"""torchmetrics metrics that score samples against the exact Gaussian-mixture test-bed.

Every metric takes its reference explicitly in its constructor: ``data``, a ``GaussianMixture`` or
a preset name (``mixture_preset(name)``, e.g. "ring2d"), and always uses the exact, knob-free mixture
(imperfection knobs of ``data`` are ignored). ``update(samples)`` accepts (B, d) tensors of any float
dtype; everything is computed in float64.

States are plain torchmetrics states (``"cat"`` for stored samples, ``"sum"`` for counters), so the
result under DDP (torchmetrics syncs automatically when a process group is initialised) equals the
single-process result on the union of all ranks' samples. Stored samples are kept flattened (1-D) so
that a rank without any samples still syncs cleanly.

Non-finite samples: ``MixtureNLL`` scores them +inf, ``ModeCoverage`` assigns them to no component
(an extra "invalid" category with target weight 0), ``OffManifoldFraction`` counts them as off the
manifold, and the sample-set distances (``EnergyDistance``, ``SlicedWasserstein``) become nan/inf.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

from steindiff.core.diagnostics import energy_distance
from steindiff.core.mixture import GaussianMixture, mixture_preset

__all__ = [
    "EnergyDistance",
    "MixtureNLL",
    "ModeCoverage",
    "OffManifoldFraction",
    "SlicedWasserstein",
    "as_mixture",
    "mixture_metrics",
    "sliced_wasserstein",
]

_NAN = float("nan")


def as_mixture(data: GaussianMixture | str) -> GaussianMixture:
    """The mixture a metric is given: a ``GaussianMixture`` as is, or a preset name's exact mixture."""
    if isinstance(data, str):
        return mixture_preset(data)
    if not isinstance(data, GaussianMixture):
        raise TypeError(f"data must be a GaussianMixture or a preset name, got {type(data).__name__}")
    return data


def _exact_copy(data: GaussianMixture) -> GaussianMixture:
    """A knob-free CPU copy of ``data`` whose buffers stay out of state dicts (they follow ``.to()`` only)."""
    exact = GaussianMixture(data.weights.detach().cpu(), data.means.detach().cpu(), data.stds.detach().cpu())
    for name in ("weights", "means", "stds"):
        exact.register_buffer(name, getattr(exact, name), persistent=False)
    return exact


def _w2_squared_sorted(a: Tensor, b: Tensor) -> Tensor:
    """(P,) squared W2 between the 1-D empirical measures in the columns of sorted a (N, P) and b (M, P).

    Exact: the quantile functions are step functions, integrated over the merged breakpoints
    {i/N} U {j/M} (held as integers over the common denominator N*M).
    """
    n, m = a.shape[0], b.shape[0]
    if n == m:
        return ((a - b) ** 2).mean(0)
    dev = a.device
    levels = torch.unique(torch.cat([torch.arange(1, n + 1, device=dev) * m, torch.arange(1, m + 1, device=dev) * n]))
    prev = torch.cat([levels.new_zeros(1), levels[:-1]])
    width = (levels - prev).to(a.dtype) / (n * m)
    return (width[:, None] * (a[prev // m] - b[prev // n]) ** 2).sum(0)


def sliced_wasserstein(x: Tensor, y: Tensor, directions: Tensor, chunk: int = 32) -> Tensor:
    """Sliced W2 = sqrt(mean_p W2^2(<x, u_p>, <y, u_p>)) between sample sets x (N, d), y (M, d).

    ``directions`` (P, d) are used as given (pass unit vectors). Per direction the 1-D W2 is exact for
    the two empirical measures (sizes may differ). Computed in float64, ``chunk`` directions at a time.
    """
    x, y, u = x.double(), y.double(), directions.double().to(x.device)
    total = x.new_zeros(())
    for i in range(0, u.shape[0], chunk):
        uc = u[i:i + chunk]
        a, b = torch.sort(x @ uc.T, dim=0).values, torch.sort(y @ uc.T, dim=0).values
        total = total + _w2_squared_sorted(a, b).sum()
    return torch.sqrt(total / u.shape[0])


class _MixtureMetric(Metric):
    """Base: holds the exact mixture (``self.exact``, moved with the metric) and checks sample shapes."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, data: GaussianMixture | str, **kwargs):
        super().__init__(**kwargs)
        data = as_mixture(data)
        self._data = (data,)  # a tuple so that nn.Module does not register (and move) it
        self.exact = _exact_copy(data)

    @property
    def data(self) -> GaussianMixture:
        """The mixture as passed to the constructor, a preset name built (not moved with the metric)."""
        return self._data[0]

    def _as_samples(self, samples: Tensor) -> Tensor:
        x = torch.as_tensor(samples).detach()
        if x.ndim != 2 or x.shape[1] != self.exact.dim:
            raise ValueError(f"samples must have shape (B, {self.exact.dim}), got {tuple(x.shape)}")
        return x.to(device=self.exact.means.device, dtype=torch.float64)


class _SampleSetMetric(_MixtureMetric):
    """Base for distances between all updated samples (a ``cat`` state) and a fixed reference set."""

    plot_lower_bound = 0.0

    def __init__(self, data: GaussianMixture | str, num_reference: int = 4000, reference_seed: int = 0,
                 **kwargs):
        super().__init__(data, **kwargs)
        if int(num_reference) < 1:
            raise ValueError(f"num_reference must be >= 1, got {num_reference}")
        gen = torch.Generator().manual_seed(int(reference_seed))
        self.register_buffer("reference", self.exact.sample(int(num_reference), generator=gen), persistent=False)
        self.add_state("samples", default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)  # the empty placeholder of a rank without samples must match in dtype

    def update(self, samples: Tensor) -> None:
        self.samples.append(self._as_samples(samples).reshape(-1))

    def _all_samples(self) -> Tensor | None:
        if isinstance(self.samples, list) and len(self.samples) == 0:
            return None
        return dim_zero_cat(self.samples).reshape(-1, self.exact.dim)


class EnergyDistance(_SampleSetMetric):
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic, ``core.diagnostics.energy_distance``)
    between all updated samples X and ``num_reference`` exact mixture samples Y drawn with
    ``torch.Generator().manual_seed(reference_seed)`` (the same on every rank). nan before any update.

    Args:
        data: the mixture (a ``GaussianMixture`` or a preset name); its exact, knob-free version is used.
        num_reference: the number of exact reference samples.
        reference_seed: the seed of the reference samples.
        **kwargs: torchmetrics ``Metric`` options (e.g. ``sync_on_compute``).
    """

    def compute(self) -> Tensor:
        x = self._all_samples()
        value = _NAN if x is None else energy_distance(x, self.reference)
        return torch.tensor(value, dtype=torch.float64, device=self.reference.device)


class SlicedWasserstein(_SampleSetMetric):
    """Sliced W2 (``sliced_wasserstein``) between all updated samples and ``num_reference`` exact mixture
    samples, over ``num_projections`` fixed random unit directions drawn with ``projection_seed``.
    nan before any update.

    Args:
        data: the mixture (a ``GaussianMixture`` or a preset name); its exact, knob-free version is used.
        num_projections: the number of random unit directions.
        num_reference: the number of exact reference samples.
        projection_seed: the seed of the directions.
        reference_seed: the seed of the reference samples.
        **kwargs: torchmetrics ``Metric`` options.
    """

    def __init__(self, data: GaussianMixture | str, num_projections: int = 128, num_reference: int = 4000,
                 projection_seed: int = 0, reference_seed: int = 0, **kwargs):
        super().__init__(data, num_reference=num_reference, reference_seed=reference_seed, **kwargs)
        if int(num_projections) < 1:
            raise ValueError(f"num_projections must be >= 1, got {num_projections}")
        gen = torch.Generator().manual_seed(int(projection_seed))
        u = torch.randn(int(num_projections), self.exact.dim, generator=gen, dtype=torch.float64)
        self.register_buffer("directions", u / u.norm(dim=1, keepdim=True), persistent=False)

    def compute(self) -> Tensor:
        x = self._all_samples()
        if x is None:
            return torch.tensor(_NAN, dtype=torch.float64, device=self.reference.device)
        return sliced_wasserstein(x, self.reference, self.directions)


class MixtureNLL(_MixtureMetric):
    """Mean negative log-likelihood -log p_0(x) under the exact data density (non-finite samples: +inf).

    Args:
        data: the mixture (a ``GaussianMixture`` or a preset name); its exact, knob-free version is used.
        **kwargs: torchmetrics ``Metric`` options.
    """

    def __init__(self, data: GaussianMixture | str, **kwargs):
        super().__init__(data, **kwargs)
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("nll_count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:
        x = self._as_samples(samples)
        finite = torch.isfinite(x).all(1)
        nll = -self.exact.log_prob(torch.where(finite[:, None], x, 0.0), 0.0)
        self.nll_sum += torch.where(finite, nll, torch.inf).sum()
        self.nll_count += x.shape[0]

    def compute(self) -> Tensor:
        return self.nll_sum / self.nll_count


class ModeCoverage(_MixtureMetric):
    """How well sample frequencies per mixture component match the weights.

    Each finite sample goes to the component with the largest posterior responsibility at sigma = 0;
    non-finite samples form an extra "invalid" category (target weight 0). With f_k = counts_k / total:

        tv_error  = 0.5 (sum_k |f_k - w_k| + f_invalid)   (total variation over the K + 1 categories),
        min_ratio = min_k f_k / w_k                        (0 when a mode is missed entirely).

    ``compute()`` returns tv_error (a scalar, so the metric fits a MetricCollection); ``summary()``
    returns {"tv_error", "min_ratio", "frequencies"} from the synced states (call it on every rank).

    Args:
        data: the mixture (a ``GaussianMixture`` or a preset name); its exact, knob-free version is used.
        **kwargs: torchmetrics ``Metric`` options.
    """

    def __init__(self, data: GaussianMixture | str, **kwargs):
        super().__init__(data, **kwargs)
        k = self.exact.num_components
        self.add_state("mode_counts", default=torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("mode_total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:
        x = self._as_samples(samples)
        finite = torch.isfinite(x).all(1)
        assigned = self.exact.responsibilities(x[finite], 0.0).argmax(1)
        self.mode_counts += torch.bincount(assigned, minlength=self.exact.num_components)
        self.mode_total += x.shape[0]

    def _summary(self) -> dict[str, Tensor]:
        freq = self.mode_counts.double() / self.mode_total
        invalid = (self.mode_total - self.mode_counts.sum()).double() / self.mode_total
        w = self.exact.weights
        tv = 0.5 * ((freq - w).abs().sum() + invalid)
        return {"tv_error": tv, "min_ratio": (freq / w).min(), "frequencies": freq}

    def compute(self) -> Tensor:
        return self._summary()["tv_error"]

    def summary(self) -> dict[str, Tensor]:
        """tv_error, min_ratio and the (K,) frequencies, synced across processes like ``compute()``."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            return {k: v.clone() for k, v in self._summary().items()}


class OffManifoldFraction(_MixtureMetric):
    """Fraction of samples more than ``num_std`` component standard deviations away from every component.

    The distance to component k is the standardized radius (Mahalanobis radius / sqrt(d))

        rho_k(x) = sqrt( (1/d) sum_i ((x_i - mu_ki) / s_ki)^2 ),

    and x is off the manifold when min_k rho_k(x) > num_std (non-finite samples always are). For an
    exact sample rho^2 of its own component is chi^2_d / d, so e.g. d = 2, num_std = 3 gives exp(-9).

    Args:
        data: the mixture (a ``GaussianMixture`` or a preset name); its exact, knob-free version is used.
        num_std: the standardized radius beyond which a sample is off the manifold (> 0).
        **kwargs: torchmetrics ``Metric`` options.
    """

    def __init__(self, data: GaussianMixture | str, num_std: float = 3.0, **kwargs):
        super().__init__(data, **kwargs)
        if not float(num_std) > 0:
            raise ValueError(f"num_std must be > 0, got {num_std}")
        self.num_std = float(num_std)
        self.add_state("off_count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("off_total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:
        x = self._as_samples(samples)
        z = (x[:, None, :] - self.exact.means[None]) / self.exact.stds[None]
        rho2 = (z**2).mean(-1).amin(1)
        off = ~torch.isfinite(x).all(1) | ~(rho2 <= self.num_std**2)
        self.off_count += off.sum()
        self.off_total += x.shape[0]

    def compute(self) -> Tensor:
        return self.off_count.double() / self.off_total


def mixture_metrics(data: GaussianMixture | str | None, num_reference: int = 4000, num_projections: int = 128,
                    num_std: float = 3.0, reference_seed: int = 0, projection_seed: int = 0,
                    **kwargs) -> MetricCollection:
    """All mixture metrics as a MetricCollection: energy_distance, sliced_w2, nll, mode_tv, off_manifold.

    ``data`` is the reference, given explicitly: a ``GaussianMixture`` or a preset name such as "ring2d"
    (``mixture_preset(name)``, the exact knob-free mixture); knobs of a given mixture are ignored.
    Every value is a scalar; ``kwargs`` (e.g. ``sync_on_compute``) go to every metric. None (a
    config whose denoiser names no preset) is a one-line error saying what to give.
    """
    if data is None:
        raise ValueError("metrics=mixture needs the exact mixture to score against and the denoiser names none: "
                         "give metrics.data=ring2d (or aniso32), or use metrics=none, digits_fid or fid")
    data = as_mixture(data)  # built once, shared by the five metrics
    metrics = {
        "energy_distance": EnergyDistance(data, num_reference=num_reference, reference_seed=reference_seed, **kwargs),
        "sliced_w2": SlicedWasserstein(data, num_projections=num_projections, num_reference=num_reference,
                                       projection_seed=projection_seed, reference_seed=reference_seed, **kwargs),
        "nll": MixtureNLL(data, **kwargs),
        "mode_tv": ModeCoverage(data, **kwargs),
        "off_manifold": OffManifoldFraction(data, num_std=num_std, **kwargs),
    }
    return MetricCollection(metrics, compute_groups=False)
