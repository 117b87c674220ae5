"""Learned networks (U-Net, MLP), the project's checkpoint format and its one-line errors, and the
committed denoisers (digits U-Net, ring2d MLP)."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from steindiff.core.adaptors import EDMPrecond
from steindiff.core.dtypes import parse_dtype
from steindiff.core.mixture import mixture_preset
from steindiff.datasets import digits_images
from steindiff.errors import CheckpointError, first_line
from steindiff.models.checkpoint import ASSETS_DIR, load_denoiser, read_spec, resolve_path, save_denoiser
from steindiff.models.mlp import MLP
from steindiff.models.unet import UNet

TINY_UNET = dict(img_resolution=8, in_channels=1, model_channels=8, channel_mult=[1, 2], num_blocks=1)


def _randomize(module, seed=0):
    """Non-zero weights everywhere (the output layers start at zero, which would make outputs trivially equal)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return module


@pytest.mark.parametrize("kwargs,shape", [
    (dict(img_resolution=8, in_channels=1, model_channels=8, channel_mult=[1, 2]), (1, 8, 8)),
    (dict(img_resolution=16, in_channels=1, model_channels=8, channel_mult=[1, 2, 2], num_blocks=1), (1, 16, 16)),
    (dict(img_resolution=16, in_channels=3, model_channels=8, channel_mult=[1, 2], attn_resolutions=[16, 8],
          embedding="fourier", dropout=0.1), (3, 16, 16)),
])
def test_unet_shapes(kwargs, shape):
    net = _randomize(UNet(**kwargs))
    x = torch.randn(4, *shape)
    out = net(x, torch.linspace(-1, 1, 4))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_unet_class_conditioning_changes_the_output():
    net = _randomize(UNet(**TINY_UNET, num_classes=10)).eval()
    x, c_noise = torch.randn(2, 1, 8, 8), torch.zeros(2)
    labels = torch.nn.functional.one_hot(torch.tensor([3, 7]), 10).float()
    assert not torch.allclose(net(x, c_noise, labels), net(x, c_noise, None))


def test_unet_rejects_a_resolution_that_does_not_halve():
    with pytest.raises(ValueError, match="not divisible"):
        UNet(img_resolution=12, channel_mult=[1, 2, 2, 2])


@pytest.mark.parametrize("dim", [2, 32])
def test_mlp_shapes(dim):
    net = _randomize(MLP(dim=dim, hidden=32, num_blocks=2))
    out = net(torch.randn(5, dim), torch.randn(5))
    assert out.shape == (5, dim)


def test_edm_precond_wraps_the_networks():
    denoiser = EDMPrecond(_randomize(UNet(**TINY_UNET)), sigma_data=0.5)
    x = torch.randn(3, 1, 8, 8)
    assert denoiser(x, torch.tensor([0.1, 1.0, 10.0])).shape == x.shape
    # c_skip -> 1 and c_out -> 0 as sigma -> 0: D(x; sigma) -> x
    assert torch.allclose(denoiser(x, 1e-6), x, atol=1e-4)
    mlp = EDMPrecond(_randomize(MLP(dim=2, hidden=16, num_blocks=1)), sigma_data=1.4)
    assert mlp(torch.randn(7, 2), 0.5).shape == (7, 2)


def _saved_unet(path, seed=0):
    net = _randomize(UNet(**TINY_UNET), seed)
    save_denoiser(path, net, {"class_name": "UNet", "kwargs": TINY_UNET}, sigma_data=0.5, shape=(1, 8, 8),
                  training={"command": "test"})
    return net


def test_checkpoint_round_trip_gives_equal_outputs(tmp_path):
    path = tmp_path / "unet.safetensors"
    net = _saved_unet(path)
    denoiser = load_denoiser(path)
    reference = EDMPrecond(net, sigma_data=0.5).eval()
    x, sigma = torch.randn(4, 1, 8, 8), torch.tensor([0.01, 0.5, 2.0, 80.0])
    with torch.no_grad():
        assert torch.equal(denoiser(x, sigma), reference(x, sigma))
    assert not denoiser.training and not any(p.requires_grad for p in denoiser.parameters())
    assert denoiser.spec.shape == (1, 8, 8) and denoiser.spec.num_classes == 0
    assert read_spec(path)["training"]["command"] == "test" and denoiser.sigma_data == 0.5
    # float64 sampling with float32 weights: the network runs in float32, the output is float64
    assert denoiser(x.double(), sigma.double()).dtype == torch.float64
    assert read_spec(path)["network"]["class_name"] == "UNet"


def test_mlp_checkpoint_declares_a_vector_shape(tmp_path):
    net = _randomize(MLP(dim=2, hidden=16, num_blocks=1))
    kwargs = {"dim": 2, "hidden": 16, "num_blocks": 1}
    save_denoiser(tmp_path / "mlp.safetensors", net, {"class_name": "MLP", "kwargs": kwargs}, 1.4, (2,))
    denoiser = load_denoiser(tmp_path / "mlp.safetensors")
    assert denoiser.spec.shape == (2,)


def test_parse_dtype_names_key_value_and_accepted():
    assert parse_dtype("float32", "dtype") is torch.float32 and parse_dtype("bfloat16", "dtype") is torch.bfloat16
    assert parse_dtype(torch.float64, "dtype") is torch.float64 and parse_dtype(None, "dtype") is None
    with pytest.raises(ValueError) as err:
        parse_dtype("float16", "dtype", accepted=("float32", "float64"))
    assert str(err.value) == "dtype='float16' is not accepted: expected float32, float64 or null"
    with pytest.raises(ValueError, match="network_dtype=torch.int64 is not accepted"):
        parse_dtype(torch.int64, "network_dtype")
    with pytest.raises(ValueError, match="network_dtype='half' is not accepted"):
        load_denoiser("ring2d_mlp.safetensors", network_dtype="half")


def test_first_line_quotes_a_foreign_error_on_one_line():
    assert first_line(ValueError("bad\n\n  value\nmore")) == "ValueError: bad value"
    assert first_line(KeyError()) == "KeyError"
    assert len(first_line(RuntimeError("x" * 500), limit=40)) == 40


def _assert_one_line(err, path, *fragments):
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file(tmp_path):
    path = tmp_path / "nothing.safetensors"
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "no such file")


def test_text_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights\n" * 10)
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "not a readable safetensors file", "expected")


def test_truncated_file(tmp_path):
    path = tmp_path / "unet.safetensors"
    _saved_unet(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "not a readable safetensors file")


def test_pickle_given_to_the_safetensors_loader(tmp_path):
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(pickle.dumps({"ema": [1, 2, 3]}))
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "not a readable safetensors file")


def test_safetensors_without_a_spec(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file(_randomize(UNet(**TINY_UNET)).state_dict(), str(path))
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "without a steindiff spec")


def test_weights_that_do_not_match_the_spec(tmp_path):
    path = tmp_path / "mismatch.safetensors"
    net = _randomize(UNet(**{**TINY_UNET, "model_channels": 16}))
    save_denoiser(path, net, {"class_name": "UNet", "kwargs": TINY_UNET}, 0.5, (1, 8, 8))
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "weights do not match")


def test_sample_shape_that_does_not_fit_the_network(tmp_path):
    path = tmp_path / "shape.safetensors"
    save_denoiser(path, _randomize(UNet(**TINY_UNET)), {"class_name": "UNet", "kwargs": TINY_UNET}, 0.5, (1, 16, 16))
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "does not fit its network")


def test_unknown_network_class(tmp_path):
    path = tmp_path / "other.safetensors"
    save_denoiser(path, MLP(dim=2, hidden=8, num_blocks=1), {"class_name": "os.system", "kwargs": {}}, 1.0, (2,))
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "cannot build the network")


def test_lightning_checkpoint_without_steindiff_entry(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "without the 'steindiff' entry")
    path.write_text("not a zip")
    with pytest.raises(CheckpointError) as err:
        load_denoiser(path)
    _assert_one_line(err, path, "not a readable Lightning checkpoint")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_relative_paths_resolve_against_the_assets():
    assert resolve_path("digits_unet.safetensors") == ASSETS_DIR / "digits_unet.safetensors"


# ---- the committed denoisers ------------------------------------------------------------------
def test_committed_digits_denoiser_beats_the_identity_at_sigma_half():
    denoiser = load_denoiser("digits_unet.safetensors")
    clean = digits_images("test", denoiser.spec.shape[-1])[:64]
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        denoised = denoiser(noisy, 0.5)
    mse_identity = (noisy - clean).square().mean()
    mse_denoiser = (denoised - clean).square().mean()
    assert mse_denoiser < 0.5 * mse_identity, (float(mse_denoiser), float(mse_identity))
    assert "steindiff-train experiment=digits" in read_spec("digits_unet.safetensors")["training"]["command"]


@pytest.mark.parametrize("preset,dim", [("ring2d", 2), ("aniso32", 32)])
def test_committed_mixture_denoisers_are_close_to_the_exact_posterior_mean(preset, dim):
    denoiser = load_denoiser(f"{preset}_mlp.safetensors")
    exact = mixture_preset(preset)
    assert denoiser.spec.shape == (dim,)
    for sigma in (0.1, 0.5, 2.0):
        _, x = exact.noisy_sample(2000, sigma, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
        with torch.no_grad():
            err = (denoiser(x, sigma) - exact(x, sigma)).square().sum(1).mean()
            identity = (x - exact(x, sigma)).square().sum(1).mean()
        assert err < 0.1 * identity, (sigma, float(err), float(identity))
