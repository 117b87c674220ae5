"""Tests for the analytic Gaussian-mixture test-bed (steindiff.core.mixture)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from steindiff.core.mixture import MIXTURE_PRESETS, GaussianMixture, mixture_preset

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def diag3d(**knobs) -> GaussianMixture:
    """A small 3-D diagonal, anisotropic mixture with unequal weights."""
    means = [[0.0, 0.0, 0.0], [1.5, -1.0, 0.5], [-1.0, 1.2, -0.8]]
    stds = [[0.3, 0.6, 0.2], [0.5, 0.25, 0.4], [0.2, 0.3, 0.7]]
    return GaussianMixture([0.5, 0.3, 0.2], means, stds, **knobs)


def diag4d(**knobs) -> GaussianMixture:
    g = gen(7)
    means = 1.2 * torch.randn(4, 4, generator=g, dtype=F64)
    stds = 0.1 + 0.6 * torch.rand(4, 4, generator=g, dtype=F64)
    return GaussianMixture([0.4, 0.3, 0.2, 0.1], means, stds, **knobs)


def wide2d() -> GaussianMixture:
    return GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.2, -0.4]], [[0.5, 0.3], [0.4, 0.8]])


def log_normal_iso(x: torch.Tensor, centers: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N,) log N(x; centers_i, sigma^2 I) for one point x (d,) and centers (N, d)."""
    d = x.shape[0]
    return -0.5 * ((x - centers) ** 2).sum(-1) / sigma**2 - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)


# ---- posterior mean ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build,sigmas",
    [(lambda: mixture_preset("ring2d"), [0.05, 0.3, 1.0, 4.0]), (diag3d, [0.1, 0.3, 1.0, 4.0])],
    ids=["ring2d", "diag3d"],
)
def test_posterior_mean_matches_monte_carlo(build, sigmas):
    gm = build()
    x0 = gm.sample(400_000, generator=gen(1))
    for i, sigma in enumerate(sigmas):
        _, x = gm.noisy_sample(3, sigma, generator=gen(100 + i))
        exact = gm(x, sigma)
        for b in range(x.shape[0]):
            logw = log_normal_iso(x[b], x0, sigma)
            w = torch.softmax(logw, dim=0)
            est = (w[:, None] * x0).sum(0)
            se = torch.sqrt((w[:, None] ** 2 * (x0 - est) ** 2).sum(0))
            ess = 1.0 / (w**2).sum()
            assert ess > 200, f"MC check too weak at sigma={sigma}: ESS {ess:.0f}"
            err = (exact[b] - est).abs()
            assert torch.all(err < 5 * se + 1e-9), (sigma, exact[b], est, se)


def test_denoiser_is_exact_posterior_mean_for_single_gaussian():
    gm = mixture_preset("gaussian2d")
    x = torch.randn(5, 2, generator=gen(2), dtype=F64)
    sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 10.0], dtype=F64)
    s2 = torch.tensor([1.0, 0.09], dtype=F64)
    mu = torch.tensor([0.5, -0.5], dtype=F64)
    expected = mu + s2 / (s2 + sigma[:, None] ** 2) * (x - mu)
    torch.testing.assert_close(gm(x, sigma), expected, rtol=1e-13, atol=1e-13)


def test_zero_noise_returns_input_exactly():
    for gm in (mixture_preset("ring2d"), diag3d(), diag3d(temperature=0.5, residual_scale=1.5)):
        x = 3 * torch.randn(16, gm.dim, generator=gen(3), dtype=F64)
        out = gm(x, 0.0)
        assert torch.equal(out, x)
        assert torch.all(gm.divergence(x, 0.0) == gm.dim)
        assert torch.all(torch.isfinite(gm.score(x, 0.0)))


# ---- divergence -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "knobs",
    [{}, {"temperature": 0.5}, {"residual_scale": 1.5}, {"sigma_scale": 0.8},
     {"temperature": 0.5, "residual_scale": 1.5, "sigma_scale": 0.8}],
    ids=["exact", "tau0.5", "res1.5", "sig0.8", "all"],
)
def test_divergence_matches_autograd_trace(knobs):
    gm = diag4d(**knobs)
    _, x = gm.noisy_sample(6, 0.5, generator=gen(4))
    sigma = torch.tensor([0.02, 0.1, 0.3, 0.7, 1.5, 5.0], dtype=F64)
    div = gm.divergence(x, sigma)
    for b in range(x.shape[0]):
        sig_b = sigma[b : b + 1]
        jac = torch.func.jacrev(lambda xi, sig_b=sig_b: gm(xi[None], sig_b)[0])(x[b])
        torch.testing.assert_close(div[b], torch.trace(jac), rtol=1e-10, atol=1e-10)
    # the knobs must actually change the divergence (guards against the test passing vacuously)
    if knobs:
        assert not torch.allclose(div, diag4d().divergence(x, sigma), rtol=1e-6, atol=0)


# ---- score and log density --------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, 0.05, 0.4, 2.0])
def test_score_matches_autograd_and_tweedie(sigma):
    gm = diag3d()
    _, x = gm.noisy_sample(32, sigma, generator=gen(5))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(xr, sigma).sum(), xr)
    score = gm.score(x, sigma)
    torch.testing.assert_close(score, grad, rtol=1e-10, atol=1e-10)
    if sigma > 0:
        torch.testing.assert_close(score, (gm(x, sigma) - x) / sigma**2, rtol=1e-9, atol=1e-9)
    # the score is that of the true marginal: knobs do not change it
    torch.testing.assert_close(diag3d(temperature=0.3, sigma_scale=0.5).score(x, sigma), score)


@pytest.mark.parametrize("build,sigma,half,n", [(wide2d, 0.0, 6.0, 601), (wide2d, 0.5, 7.0, 601),
                                                (lambda: mixture_preset("ring2d"), 0.0, 2.6, 1041)])
def test_log_prob_integrates_to_one(build, sigma, half, n):
    gm = build()
    t = torch.linspace(-half, half, n, dtype=F64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    dens = gm.log_prob(pts, sigma).exp()
    total = dens.sum() * (t[1] - t[0]) ** 2
    assert abs(total.item() - 1.0) < 1e-6


def test_log_prob_matches_monte_carlo_density():
    gm = diag3d()
    sigma = 0.5
    x0 = gm.sample(400_000, generator=gen(6))
    _, x = gm.noisy_sample(4, sigma, generator=gen(7))
    x = torch.cat([x, torch.tensor([[3.0, -2.0, 1.0]], dtype=F64)])  # one point in the tail too
    exact = gm.log_prob(x, sigma).exp()
    for b in range(x.shape[0]):
        k = log_normal_iso(x[b], x0, sigma).exp()
        est, se = k.mean(), k.std() / math.sqrt(k.numel())
        assert abs(exact[b] - est) < 5 * se, (exact[b], est, se)
        assert se < 0.05 * est


# ---- sampling ---------------------------------------------------------------------------------
def test_samples_have_right_moments_and_frequencies():
    gm = diag3d()
    n = 200_000
    x, k = gm.sample(n, generator=gen(8), return_components=True)
    assert x.shape == (n, 3) and x.dtype == F64 and k.shape == (n,)
    w = gm.weights
    mu = (w[:, None] * gm.means).sum(0)
    cov = torch.diag((w[:, None] * gm.stds**2).sum(0)) + (w[:, None, None] * (
        (gm.means - mu)[:, :, None] * (gm.means - mu)[:, None, :])).sum(0)
    torch.testing.assert_close(gm.mean(), mu)
    torch.testing.assert_close(gm.covariance(), cov)
    sd = torch.sqrt(torch.diag(cov))
    assert torch.all((x.mean(0) - mu).abs() < 5 * sd / math.sqrt(n))
    assert torch.all((torch.cov(x.T) - cov).abs() < 5 * torch.outer(sd, sd) * math.sqrt(2.0 / n))
    freq = torch.bincount(k, minlength=3).to(F64) / n
    assert torch.all((freq - w).abs() < 5 * torch.sqrt(w * (1 - w) / n))
    for j in range(3):
        xj = x[k == j]
        assert torch.all((xj.mean(0) - gm.means[j]).abs() < 5 * gm.stds[j] / math.sqrt(len(xj)))
        assert torch.all((xj.std(0) / gm.stds[j] - 1).abs() < 5 / math.sqrt(2 * len(xj)))
    # float32 sampling and reproducibility
    x32 = gm.sample(10, generator=gen(8), dtype=torch.float32)
    assert x32.dtype == torch.float32 and torch.equal(x32, gm.sample(10, generator=gen(8)).float())


def test_noisy_sample_is_on_marginal():
    gm = diag3d()
    n, sigma = 200_000, 0.7
    x_star, x = gm.noisy_sample(n, sigma, generator=gen(9))
    noise = (x - x_star) / sigma
    assert torch.all(noise.mean(0).abs() < 5 / math.sqrt(n))
    assert torch.all((noise.std(0) - 1).abs() < 5 / math.sqrt(2 * n))
    var = torch.diag(gm.covariance()) + sigma**2
    assert torch.all((x.var(0) / var - 1).abs() < 0.02)
    # per-sample sigma
    sig = torch.linspace(0.0, 2.0, 8, dtype=F64)
    xs, xn = gm.noisy_sample(8, sig, generator=gen(10))
    assert torch.equal(xs[0], xn[0]) and not torch.equal(xs[-1], xn[-1])


# ---- batch-size independence ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("knobs", [{}, {"temperature": 0.5, "residual_scale": 1.5, "sigma_scale": 0.8}])
def test_batch_size_independence(dtype, knobs):
    gm = mixture_preset("aniso32", **knobs)
    _, x = gm.noisy_sample(64, 0.3, generator=gen(11), dtype=dtype)
    sigma = torch.exp(torch.linspace(math.log(0.01), math.log(20.0), 64, dtype=F64)).to(dtype)
    for fn in (gm, gm.divergence, gm.score, gm.log_prob):
        full = fn(x, sigma)
        assert full.dtype == dtype and torch.all(torch.isfinite(full))
        assert torch.equal(fn(x[:1], sigma[:1]), full[:1])
        assert torch.equal(fn(x[:7], sigma[:7]), full[:7])
        assert torch.equal(fn(x[10:11], sigma[10:11]), full[10:11])
        assert torch.equal(fn(x[30:37], sigma[30:37]), full[30:37])


def test_float32_close_to_float64():
    gm = mixture_preset("aniso32")
    _, x = gm.noisy_sample(16, 0.5, generator=gen(12))
    d64 = gm(x, 0.5)
    d32 = gm(x.float(), 0.5)
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), d64, rtol=1e-4, atol=1e-4)


# ---- knobs ------------------------------------------------------------------------------------
def test_temperature_sharpens_responsibilities():
    gm = mixture_preset("ring2d")
    # points between neighbouring modes, at moderate noise: the posterior is split
    angle = torch.arange(8, dtype=F64) * (2 * math.pi / 8) + math.pi / 8 + 0.1
    x = 2.0 * torch.stack([angle.cos(), angle.sin()], dim=1)
    maxima = [gm.with_knobs(temperature=t).responsibilities(x, 0.5).max(1).values for t in (3.0, 1.0, 0.5, 0.1)]
    for hot, cold in itertools.pairwise(maxima):
        assert torch.all(cold > hot)
    assert torch.all(maxima[-1] > 0.99) and torch.all(maxima[1] < 0.9)


def test_residual_and_sigma_scale_knobs():
    gm = diag3d()
    _, x = gm.noisy_sample(10, 0.6, generator=gen(13))
    d = gm(x, 0.6)
    torch.testing.assert_close(gm.with_knobs(residual_scale=1.5)(x, 0.6) - x, 1.5 * (d - x))
    torch.testing.assert_close(gm.with_knobs(residual_scale=0.0)(x, 0.6), x)
    torch.testing.assert_close(gm.with_knobs(sigma_scale=0.8)(x, 0.6), gm(x, 0.8 * 0.6))
    torch.testing.assert_close(gm.with_knobs(sigma_scale=0.8).divergence(x, 0.6), gm.divergence(x, 0.48))
    div_res = gm.with_knobs(residual_scale=1.5).divergence(x, 0.6)
    torch.testing.assert_close(div_res, 3 - 1.5 * (3 - gm.divergence(x, 0.6)))


def test_is_exact_and_with_knobs():
    gm = diag3d()
    assert gm.is_exact and gm.dim == 3 and gm.num_components == 3
    for kw in ({"temperature": 0.5}, {"residual_scale": 1.1}, {"sigma_scale": 0.9}):
        other = gm.with_knobs(**kw)
        assert not other.is_exact and other is not gm
        assert torch.equal(other.means, gm.means) and torch.equal(other.stds, gm.stds)
        assert other.with_knobs(**{k: 1.0 for k in kw}).is_exact
    assert gm.is_exact  # the original is untouched
    torch.testing.assert_close(gm.weights.sum(), torch.tensor(1.0, dtype=F64))
    with pytest.raises(ValueError, match="unknown knobs"):
        gm.with_knobs(temprature=0.5)


@pytest.mark.parametrize(
    "args,kwargs",
    [
        (([1.0, -0.5], [[0.0], [1.0]], [1.0, 1.0]), {}),  # negative weight
        (([1.0, 0.0], [[0.0], [1.0]], [1.0, 1.0]), {}),  # zero weight
        (([1.0, 1.0], [[0.0], [1.0], [2.0]], [1.0, 1.0]), {}),  # means/weights mismatch
        (([1.0, 1.0], [0.0, 1.0], [1.0, 1.0]), {}),  # means not 2-D
        (([1.0, 1.0], [[0.0, 1.0], [1.0, 2.0]], [[1.0], [1.0]]), {}),  # stds wrong shape
        (([1.0, 1.0], [[0.0], [1.0]], [1.0, 0.0]), {}),  # zero std
        (([1.0, 1.0], [[0.0], [1.0]], [1.0, -1.0]), {}),  # negative std
        (([1.0], [[0.0]], [1.0]), {"temperature": 0.0}),
        (([1.0], [[0.0]], [1.0]), {"sigma_scale": -1.0}),
        (([1.0], [[0.0]], [1.0]), {"residual_scale": float("nan")}),
    ],
)
def test_bad_inputs_raise(args, kwargs):
    with pytest.raises(ValueError):
        GaussianMixture(*args, **kwargs)


def test_bad_call_shapes_raise():
    gm = diag3d()
    with pytest.raises(ValueError):
        gm(torch.zeros(4, 2, dtype=F64), 0.5)
    with pytest.raises(ValueError):
        gm(torch.zeros(4, 3, dtype=F64), torch.ones(3, dtype=F64))


# ---- presets ----------------------------------------------------------------------------------
def test_presets():
    assert {"gaussian2d", "ring2d", "aniso32"} <= set(MIXTURE_PRESETS)
    ring = mixture_preset("ring2d")
    assert (ring.num_components, ring.dim) == (8, 2)
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((8,), 2.0, dtype=F64))
    torch.testing.assert_close(ring.weights, torch.full((8,), 1 / 8, dtype=F64))
    torch.testing.assert_close(ring.stds, torch.full((8, 2), 0.1, dtype=F64))
    a = mixture_preset("aniso32")
    assert (a.num_components, a.dim) == (6, 32) and a.stds.shape == (6, 32)
    assert len(set(a.weights.tolist())) == 6
    assert a.stds.min() >= 0.02 and a.stds.max() <= 0.5 and a.stds.max() / a.stds.min() > 10
    b = mixture_preset("aniso32")
    assert torch.equal(a.means, b.means) and torch.equal(a.stds, b.stds)
    g = mixture_preset("gaussian2d")
    assert (g.num_components, g.dim) == (1, 2)
    for name in MIXTURE_PRESETS:
        assert mixture_preset(name).is_exact
    t = mixture_preset("ring2d", temperature=0.5)
    assert t.temperature == 0.5 and not t.is_exact
    with pytest.raises(ValueError, match="ring2d"):
        mixture_preset("nope")
