"""Mixture metrics (steindiff.metrics.mixture): values, batching invariance and DDP equivalence."""

import math

import pytest
import torch

from steindiff.core.diagnostics import energy_distance
from steindiff.core.mixture import mixture_preset
from steindiff.metrics import (
    EnergyDistance,
    MixtureNLL,
    ModeCoverage,
    OffManifoldFraction,
    SlicedWasserstein,
    mixture_metrics,
    sliced_wasserstein,
)
from tests.ddp_helpers import run_ddp

NAMES = {"energy_distance", "sliced_w2", "nll", "mode_tv", "off_manifold"}
SMALL = {"num_reference": 800, "num_projections": 32}


def _values(collection) -> dict[str, float]:
    return {k: float(v) for k, v in collection.compute().items()}


def _run(data, x, batches=1) -> dict[str, float]:
    metrics = mixture_metrics(data, **SMALL)
    for chunk in x.tensor_split(batches):
        metrics.update(chunk)
    return _values(metrics)


@pytest.fixture(scope="module")
def ring():
    return mixture_preset("ring2d")


@pytest.fixture(scope="module")
def ring_samples(ring):
    return ring.sample(1000, generator=torch.Generator().manual_seed(1))


def test_collection_names_and_scalars(ring, ring_samples):
    values = _run(ring, ring_samples)
    assert set(values) == NAMES
    assert all(math.isfinite(v) for v in values.values())
    metrics = mixture_metrics(ring)
    assert metrics["energy_distance"].data is ring
    assert len(metrics.state_dict()) == 0  # the mixture and reference sets are not checkpointed


def test_exact_samples_score_well_and_bad_samples_badly(ring, ring_samples):
    exact = _run(ring, ring_samples)
    assert exact["energy_distance"] < 0.02
    assert exact["sliced_w2"] < 0.2
    assert exact["mode_tv"] < 0.06
    assert exact["off_manifold"] < 0.01
    shifted = _run(ring, ring_samples + torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert shifted["energy_distance"] > 10 * exact["energy_distance"]
    assert shifted["sliced_w2"] > 0.4
    assert shifted["off_manifold"] > 0.9
    assert shifted["nll"] > exact["nll"] + 10
    collapsed = _run(ring, ring.means[:1].expand(1000, 2) + 0.05 * torch.randn(1000, 2, dtype=torch.float64))
    assert collapsed["energy_distance"] > 1.0
    assert collapsed["sliced_w2"] > 1.0
    assert collapsed["mode_tv"] == pytest.approx(1 - 1 / 8, abs=1e-12)
    mode = ModeCoverage(ring)
    mode.update(ring.means[:1].expand(10, 2))
    assert float(mode.summary()["min_ratio"]) == 0.0
    off = OffManifoldFraction(ring)
    off.update(torch.zeros(7, 2))  # the ring's centre is 20 stds from every mode
    assert float(off.compute()) == 1.0


def test_nll_equals_direct_computation(ring, ring_samples):
    x = ring_samples.float()
    nll = MixtureNLL(ring)
    nll.update(x)
    direct = -ring.log_prob(x.double(), 0.0).mean()
    assert float(nll.compute()) == pytest.approx(float(direct), rel=1e-12, abs=1e-12)


def test_non_finite_samples():
    data = mixture_preset("ring2d")
    x = data.sample(20, generator=torch.Generator().manual_seed(0))
    x[3, 0] = float("nan")
    x[5, 1] = float("inf")
    nll, mode, off = MixtureNLL(data), ModeCoverage(data), OffManifoldFraction(data)
    for m in (nll, mode, off):
        m.update(x)
    assert float(nll.compute()) == math.inf
    assert int(mode.mode_counts.sum()) == 18 and int(mode.mode_total) == 20
    assert float(mode.compute()) >= 0.5 * 2 / 20
    assert float(off.compute()) == pytest.approx(2 / 20)


def test_knobs_of_data_are_ignored(ring, ring_samples):
    knobbed = ring.with_knobs(temperature=0.3, sigma_scale=2.0)
    assert _run(knobbed, ring_samples) == _run(ring, ring_samples)


@pytest.mark.parametrize("name", ["ring2d", "aniso32", "gaussian2d"])
def test_a_preset_name_is_the_exact_mixture_the_app_used_before(name):
    """mixture_metrics("ring2d") scores against mixture_preset(name); the app used to pass the run's
    mixture with its knobs reset (with_knobs), which has the same buffers, so no metric changes."""
    exact = mixture_preset(name)
    reset = mixture_preset(name, temperature=0.5, residual_scale=1.2).with_knobs(
        temperature=1.0, residual_scale=1.0, sigma_scale=1.0)
    assert reset.is_exact and exact.is_exact
    for buffer in ("weights", "means", "stds"):
        assert torch.equal(getattr(exact, buffer), getattr(reset, buffer)), buffer
    x = exact.sample(200, generator=torch.Generator().manual_seed(3)) * 1.05
    assert _run(name, x) == _run(reset, x)
    assert mixture_metrics(name)["nll"].data.dim == exact.dim


def test_data_must_be_a_mixture_or_a_preset_name():
    with pytest.raises(ValueError, match="unknown mixture preset 'ring3d'"):
        mixture_metrics("ring3d")
    with pytest.raises(TypeError, match="GaussianMixture or a preset name"):
        MixtureNLL(42)


def test_batched_updates_equal_single_update():
    data = mixture_preset("aniso32")
    x = data.sample(300, generator=torch.Generator().manual_seed(2)) * 1.1
    one, many = _run(data, x), _run(data, x, batches=7)
    for k in NAMES:
        assert many[k] == pytest.approx(one[k], rel=1e-12, abs=1e-12), k


def test_energy_distance_matches_core(ring, ring_samples):
    metric = EnergyDistance(ring, num_reference=500, reference_seed=3)
    metric.update(ring_samples[:400].float())
    metric.update(ring_samples[400:700].float())
    reference = ring.sample(500, generator=torch.Generator().manual_seed(3))
    assert float(metric.compute()) == pytest.approx(energy_distance(ring_samples[:700].float(), reference),
                                                    rel=1e-12, abs=1e-14)


def test_sliced_wasserstein_exact_for_unequal_sizes():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, generator=gen, dtype=torch.float64), torch.randn(4, 3, generator=gen, dtype=torch.float64)
    u = torch.nn.functional.normalize(torch.randn(5, 3, generator=gen, dtype=torch.float64), dim=1)
    # repeating every point of x |y| times and of y |x| times leaves both measures unchanged, sizes equal
    xr, yr = x.repeat_interleave(len(y), 0), y.repeat_interleave(len(x), 0)
    brute = ((torch.sort(xr @ u.T, 0).values - torch.sort(yr @ u.T, 0).values) ** 2).mean().sqrt()
    assert float(sliced_wasserstein(x, y, u)) == pytest.approx(float(brute), rel=1e-12)
    assert float(sliced_wasserstein(x, y, u, chunk=2)) == pytest.approx(float(brute), rel=1e-12)
    assert float(sliced_wasserstein(x, x[[2, 0, 1, 5, 4, 3]], u)) == 0.0


def test_sliced_wasserstein_metric_uses_unit_directions(ring):
    metric = SlicedWasserstein(ring, num_projections=16, num_reference=100)
    assert torch.allclose(metric.directions.norm(dim=1), torch.ones(16, dtype=torch.float64))
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    metric.update(metric.reference + shift)  # a pure shift: W2 along u is |<shift, u>|
    expected = ((metric.directions @ shift) ** 2).mean().sqrt()
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-10)


# ---- DDP ------------------------------------------------------------------------------------
def _ddp_inputs():
    data = mixture_preset("ring2d")
    x = data.sample(301, generator=torch.Generator().manual_seed(5))  # odd: ranks hold unequal shares
    x = 1.05 * x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    return data, x.float()


def _all_values(data, parts) -> dict[str, float]:
    """Every metric (incl. the ModeCoverage summary) after updating with each tensor in ``parts``."""
    metrics, mode = mixture_metrics(data, **SMALL), ModeCoverage(data)
    for part in parts:
        for chunk in part.split(40):
            metrics.update(chunk)
            mode.update(chunk)
    values = _values(metrics)
    summary = mode.summary()
    values["min_ratio"] = float(summary["min_ratio"])
    values["tv_error"] = float(summary["tv_error"])
    return values


def _ddp_worker(rank: int, world: int, out: str) -> None:
    data, x = _ddp_inputs()
    results = {"split": _all_values(data, [x[rank::world]]),
               # rank 1 gets no samples at all: syncing must still work
               "one_rank": _all_values(data, [x] if rank == 0 else [])}
    if rank == 0:
        torch.save(results, out)


def test_ddp_equals_single_process(tmp_path):
    out = tmp_path / "rank0.pt"
    run_ddp(_ddp_worker, str(out))
    results = torch.load(out)
    data, x = _ddp_inputs()
    expected = _all_values(data, [x])
    assert set(expected) == NAMES | {"min_ratio", "tv_error"}
    for case in ("split", "one_rank"):
        for k, v in expected.items():
            assert results[case][k] == pytest.approx(v, rel=1e-10, abs=1e-10), (case, k)
