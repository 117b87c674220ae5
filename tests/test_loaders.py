"""Loaders of public checkpoints (diffusers UNet2DModel + scheduler, EDM pickles, AutoencoderKL).

No checkpoint can be downloaded here, so each test builds a tiny randomly initialised model, saves it
the way the public checkpoints are saved (save_pretrained / pickle) and loads it back. The diffusers
loader is checked numerically against diffusers' own formulas: the data prediction at trained
timesteps, and steindiff's Euler sampler against DDIMScheduler (eta = 0) on the same timesteps.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

diffusers = pytest.importorskip("diffusers")

from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from steindiff.core.adaptors import trained_sigmas  # noqa: E402
from steindiff.core.sampling import integrate, sample  # noqa: E402
from steindiff.core.solvers import make_solver  # noqa: E402
from steindiff.core.solvers.euler import EulerSolver  # noqa: E402
from steindiff.errors import CheckpointError  # noqa: E402
from steindiff.models.autoencoder import LatentDecoder, load_decoder  # noqa: E402
from steindiff.models.diffusers_loader import (  # noqa: E402
    DiffusersDenoiser,
    MissingDependencyError,
    load_diffusers_denoiser,
    process_from_scheduler_config,
    sigmas_at_timesteps,
)
from steindiff.models.edm_pickle import EDMNetworkDenoiser, load_edm_pickle  # noqa: E402

F64 = torch.float64
BETAS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "squaredcos_cap_v2": (1e-4, 0.02)}
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
CONF = Path(__file__).resolve().parents[1] / "src" / "steindiff" / "conf" / "sample"


def tiny_unet(**kwargs):
    torch.manual_seed(0)
    options = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                   norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "UpBlock2D"))
    return diffusers.UNet2DModel(**{**options, **kwargs})


def scheduler_config(beta_schedule="linear", prediction_type="epsilon", num_train_timesteps=1000) -> dict:
    start, end = BETAS[beta_schedule]
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                                        beta_start=start, beta_end=end, prediction_type=prediction_type)
    return dict(scheduler.config)


def write_scheduler(folder, config: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler", **config}))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny convolutions run fastest on one thread


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A pipeline folder: unet/ (tiny UNet2DModel) and scheduler/ (DDPM, linear betas, epsilon)."""
    root = tmp_path_factory.mktemp("pipeline")
    tiny_unet().save_pretrained(root / "unet")
    write_scheduler(root / "scheduler", scheduler_config())
    return root


@pytest.fixture
def pipeline_copy(pipeline, tmp_path):
    """A private copy of the pipeline folder that a test may break."""
    return shutil.copytree(pipeline, tmp_path / "pipeline")


def assert_one_line_naming(err: pytest.ExceptionInfo, name) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    assert str(name) in message, message
    return message


def ddim_scheduler(config: dict, float64: bool):
    scheduler = diffusers.DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=True,
                                                    timestep_spacing="leading", steps_offset=0)
    if float64:  # the same alphas_cumprod values, DDIM's coefficients then computed in float64
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
        scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.double()
    return scheduler


# ---- diffusers: the process ---------------------------------------------------------------------


@pytest.mark.parametrize("beta_schedule", list(BETAS))
def test_process_is_diffusers_alphas_cumprod(beta_schedule):
    config = scheduler_config(beta_schedule)
    process = process_from_scheduler_config(config)
    reference = diffusers.DDPMScheduler.from_config(config).alphas_cumprod.double()
    torch.testing.assert_close(torch.exp(2 * process.log_alphas), reference, rtol=1e-14, atol=0)
    tau = torch.arange(1000, dtype=F64)
    expected = ((1 - reference) / reference).sqrt()
    torch.testing.assert_close(process.sigma_hat(tau), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(process.t_of_sigma(expected), tau, rtol=0, atol=1e-6)


def test_process_from_trained_betas():
    betas = torch.linspace(1e-4, 0.02, 50, dtype=torch.float32)
    process = process_from_scheduler_config({"trained_betas": betas.tolist(), "beta_schedule": "linear"})
    assert process.num_timesteps == 50
    torch.testing.assert_close(torch.exp(2 * process.log_alphas), torch.cumprod(1 - betas, 0).double())


# ---- diffusers: the denoiser against diffusers' formulas ------------------------------------------


def test_loads_pipeline_folder_with_shape_and_process(pipeline):
    den = load_diffusers_denoiser(pipeline)
    assert isinstance(den, DiffusersDenoiser)
    assert den.spec.shape == (3, 8, 8)
    assert den.num_classes == 0
    assert den.prediction == "eps" and den.time_input == "discrete"
    assert den.process.num_timesteps == 1000
    assert den.spec.sigma_min == pytest.approx(0.0100013, rel=1e-5)
    assert den.spec.sigma_max == pytest.approx(157.407, rel=1e-5)
    assert den.spec.process is den.process and den.spec.num_classes == 0
    assert not den.unet.training and not any(p.requires_grad for p in den.parameters())


@pytest.mark.parametrize("prediction_type", list(PREDICTIONS))
@pytest.mark.parametrize("float64", [False, True], ids=["float32", "float64"])
def test_data_prediction_matches_diffusers_formula(pipeline, tmp_path, prediction_type, float64):
    """D(x_t / alpha, sigma_t) at trained timesteps = diffusers' x0 from the same network output."""
    write_scheduler(tmp_path / "scheduler", scheduler_config("linear", prediction_type))
    den = load_diffusers_denoiser(pipeline / "unet", scheduler_config=tmp_path / "scheduler",
                                  dtype="float64" if float64 else None)
    assert den.prediction == PREDICTIONS[prediction_type]
    dtype = F64 if float64 else torch.float32
    timesteps = torch.tensor([0, 1, 250, 500, 999])
    abar = diffusers.DDPMScheduler.from_config(den.scheduler_config).alphas_cumprod[timesteps].double()
    abar = abar.reshape(-1, 1, 1, 1)
    x_t = torch.randn(len(timesteps), 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        out = den.unet(x_t.to(dtype), timesteps).sample.double()
        if prediction_type == "epsilon":
            x0 = (x_t - (1 - abar).sqrt() * out) / abar.sqrt()
        elif prediction_type == "v_prediction":
            x0 = abar.sqrt() * x_t - (1 - abar).sqrt() * out
        else:
            x0 = out
        sigma = ((1 - abar) / abar).sqrt().flatten()  # EDM noise level of each timestep
        torch.testing.assert_close(den.timestep(sigma), timesteps.double(), rtol=0, atol=1e-6)
        data_prediction = den((x_t / abar.sqrt()).to(dtype), sigma.to(dtype)).double()
    scale = x0.abs().amax(dim=(1, 2, 3), keepdim=True)  # eps-networks at t=999 amplify by 1/sqrt(abar) ~ 150
    error = ((data_prediction - x0).abs() / scale).max().item()
    assert error < (1e-12 if float64 else 1e-5), error


@pytest.mark.parametrize("beta_schedule", list(BETAS))
@pytest.mark.parametrize("prediction_type", list(PREDICTIONS))
@pytest.mark.parametrize("float64", [False, True], ids=["float32", "float64"])
def test_euler_equals_diffusers_ddim(pipeline, tmp_path, beta_schedule, prediction_type, float64):
    """steindiff's Euler on sigma(900), ..., sigma(0), 0 is DDIM (eta = 0) on timesteps 900, ..., 0."""
    config = scheduler_config(beta_schedule, prediction_type)
    write_scheduler(tmp_path / "scheduler", config)
    den = load_diffusers_denoiser(pipeline / "unet", scheduler_config=tmp_path / "scheduler",
                                  dtype="float64" if float64 else None)
    dtype = F64 if float64 else torch.float32
    scheduler = ddim_scheduler(den.scheduler_config, float64)
    scheduler.set_timesteps(10)
    timesteps = scheduler.timesteps
    assert timesteps.tolist() == list(range(900, -1, -100))
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = x_T.to(dtype)
    with torch.no_grad():
        for t in timesteps:
            x = scheduler.step(den.unet(x, t).sample, t, x).prev_sample
        table = trained_sigmas(den.process).flip(0)  # sigma of timestep 0 .. 999
        grid = sigmas_at_timesteps(den.process, timesteps)  # DDIM's last step goes to alpha = 1: sigma = 0
        torch.testing.assert_close(grid, torch.cat([table[timesteps], torch.zeros(1, dtype=F64)]), rtol=0, atol=0)
        x_hat = x_T / den.process.alpha(timesteps[0].double())
        out, nfe, _ = integrate(den, x_hat.to(dtype), grid, EulerSolver(), final_step="zero", process=den.process)
    assert nfe == 10
    error = ((out.double() - x.double()).abs().max() / x.double().abs().max()).item()
    assert error < (1e-12 if float64 else 1e-5), error


def test_samples_with_any_solver_and_batch_independent(pipeline):
    den = load_diffusers_denoiser(pipeline)
    sigmas = torch.cat([trained_sigmas(den.process)[[0, 300, 600, 850, 999]], torch.zeros(1, dtype=F64)])
    solver = make_solver("dpmpp_2m")
    a = sample(den, sigmas, solver, seeds=range(3), shape=den.spec.shape, process=den.process)
    b = sample(den, sigmas, solver, seeds=range(3), shape=den.spec.shape, process=den.process, batch_size=1)
    assert a.samples.shape == (3, 3, 8, 8) and a.nfe == 5
    assert torch.isfinite(a.samples).all()
    scale = a.samples.abs().max().item()  # float32 convolutions differ in the last bits between batch sizes
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-4, atol=1e-5 * scale)


def test_unet_folder_with_sibling_scheduler_and_round_timesteps(pipeline):
    den = load_diffusers_denoiser(pipeline / "unet", round_timesteps=True)
    assert den.round_timesteps and den.spec.shape == (3, 8, 8)
    assert float(den.timestep(torch.tensor([trained_sigmas(den.process)[10] * 1.0001]))) == 989.0


def test_class_conditional_and_learned_variance(tmp_path):
    unet = tiny_unet(num_class_embeds=4, out_channels=6, sample_size=(8, 4))
    unet.save_pretrained(tmp_path / "unet")
    write_scheduler(tmp_path / "scheduler", scheduler_config())
    den = load_diffusers_denoiser(tmp_path)
    assert den.num_classes == 4 and den.spec.shape == (3, 8, 4)
    x = torch.randn(2, 3, 8, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.nn.functional.one_hot(torch.tensor([1, 3]), 4).float()
    with torch.no_grad():
        out = den(x, 2.0, labels)
        eps = unet(5**-0.5 * x, den.timestep(torch.full((2,), 2.0)).float(), class_labels=torch.tensor([1, 3]))
        expected = x - 2.0 * eps.sample[:, :3]
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_hydra_config_instantiates(pipeline):
    cfg = OmegaConf.load(CONF / "denoiser/diffusers_unet.yaml")
    cfg.path = str(pipeline)
    den = instantiate(cfg)
    assert isinstance(den, DiffusersDenoiser) and den.spec.shape == (3, 8, 8)


# ---- diffusers: errors --------------------------------------------------------------------------


def test_error_missing_folder(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(tmp_path / "nope")
    assert_one_line_naming(err, tmp_path / "nope")


def test_error_folder_without_config(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(tmp_path)
    assert "config.json" in assert_one_line_naming(err, tmp_path)


def test_error_missing_scheduler_config(pipeline, tmp_path):
    unet = shutil.copytree(pipeline / "unet", tmp_path / "alone" / "unet")
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(unet)
    assert "scheduler_config" in assert_one_line_naming(err, unet)
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(unet, scheduler_config=tmp_path / "missing.json")
    assert_one_line_naming(err, tmp_path / "missing.json")


@pytest.mark.parametrize("key, value, accepted", [
    ("beta_schedule", "sigmoid", "squaredcos_cap_v2"),
    ("prediction_type", "score", "v_prediction"),
    ("rescale_betas_zero_snr", True, "not supported"),
])
def test_error_unsupported_scheduler(pipeline_copy, key, value, accepted):
    path = pipeline_copy / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(pipeline_copy)
    message = assert_one_line_naming(err, path)
    assert repr(value) in message or key in message
    assert accepted in message


def test_error_not_a_vp_scheduler(pipeline_copy):
    path = pipeline_copy / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({"_class_name": "ScoreSdeVeScheduler", "sigma_max": 1348.0}))
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(pipeline_copy)
    assert "beta_schedule" in assert_one_line_naming(err, path)


def test_error_broken_json(pipeline_copy):
    path = pipeline_copy / "unet" / "config.json"
    path.write_text('{"_class_name": "UNet2DModel", ')
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(pipeline_copy)
    assert_one_line_naming(err, path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "other_architecture"])
def test_error_broken_weights(pipeline_copy, damage):
    weights = pipeline_copy / "unet" / "diffusion_pytorch_model.safetensors"
    if damage == "other_architecture":  # the config no longer matches the weights
        config = pipeline_copy / "unet" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "block_out_channels": [8, 32]}))
    elif damage == "garbage":
        weights.write_bytes(b"not a safetensors file" * 10)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        weights.unlink()
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(pipeline_copy)
    assert_one_line_naming(err, pipeline_copy / "unet")


def test_error_wrong_model_class(pipeline_copy):
    path = pipeline_copy / "unet" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError) as err:
        load_diffusers_denoiser(pipeline_copy)
    assert "UNet2DModel" in assert_one_line_naming(err, path)


def test_error_diffusers_missing(pipeline, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    with pytest.raises(MissingDependencyError) as err:
        load_diffusers_denoiser(pipeline)
    assert isinstance(err.value, ImportError) and isinstance(err.value, CheckpointError)
    assert 'pip install "steindiff[diffusers]"' in assert_one_line_naming(err, "diffusers")
    with pytest.raises(MissingDependencyError):
        load_decoder(pipeline)


# ---- EDM pickles --------------------------------------------------------------------------------


class TinyEDMNet(nn.Module):
    """Stand-in for EDM's preconditioned networks: ``net(x, sigma, class_labels) -> D(x)``.

    The exact denoiser of N(mu_y, s^2 I) data, with a class-dependent mean mu_y = sum_k y_k k / 10.
    """

    def __init__(self, label_dim=0, s=0.5):
        super().__init__()
        self.img_channels, self.img_resolution, self.label_dim = 2, 4, label_dim
        self.sigma_min, self.sigma_max = 0.002, 80.0
        self.s = nn.Parameter(torch.tensor(float(s)))

    def forward(self, x, sigma, class_labels=None, force_fp32=False):
        assert x.dtype == torch.float32 and sigma.dtype == torch.float32
        sigma = sigma.reshape(-1, 1, 1, 1)
        mu = 0.0
        if class_labels is not None:
            mu = (class_labels * torch.arange(self.label_dim) / 10).sum(dim=1).reshape(-1, 1, 1, 1)
        return mu + self.s**2 / (self.s**2 + sigma**2) * (x - mu)


def write_pickle(path, data):
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def test_edm_pickle_loads_and_denoises(tmp_path):
    path = write_pickle(tmp_path / "network-snapshot.pkl", {"ema": TinyEDMNet(label_dim=3), "loss_fn": None})
    den = load_edm_pickle(path, allow_pickle=True)
    assert isinstance(den, EDMNetworkDenoiser)
    assert den.spec.shape == (2, 4, 4) and den.num_classes == 3
    assert (den.spec.sigma_min, den.spec.sigma_max) == (0.002, 80.0)
    x = torch.randn(2, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.3, 2.0], dtype=F64)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).to(F64)
    with torch.no_grad():
        out = den(x, sigma, labels)
    mu = torch.tensor([0.0, 0.2], dtype=F64).reshape(-1, 1, 1, 1)
    expected = mu + 0.25 / (0.25 + sigma.reshape(-1, 1, 1, 1) ** 2) * (x - mu)
    assert out.dtype == F64
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_edm_network_spec_reads_the_network_and_drops_unbounded_limits(tmp_path):
    net = TinyEDMNet(label_dim=0)
    net.sigma_min, net.sigma_max = 0, float("inf")  # EDM's EDMPrecond: no trained range
    spec = EDMNetworkDenoiser(net).spec
    assert spec.shape == (2, 4, 4) and spec.num_classes == 0
    assert spec.sigma_min is None and spec.sigma_max is None
    del net.img_channels
    assert EDMNetworkDenoiser(net).spec.shape is None
    path = write_pickle(tmp_path / "net.pkl", {"ema": TinyEDMNet()})
    with pytest.raises(ValueError, match="network_dtype='int8' is not accepted: expected float32, float64, float16"):
        load_edm_pickle(path, allow_pickle=True, network_dtype="int8")


def test_edm_pickle_hydra_config(tmp_path):
    path = write_pickle(tmp_path / "net.pkl", {"ema": TinyEDMNet()})
    cfg = OmegaConf.load(CONF / "denoiser/edm_pickle.yaml")
    cfg.path, cfg.allow_pickle = str(path), True
    den = instantiate(cfg)
    assert den.num_classes == 0 and den.spec.shape == (2, 4, 4)
    result = sample(den, torch.tensor([80.0, 1.0, 0.0], dtype=F64), make_solver("euler"), seeds=[0, 1],
                    shape=den.spec.shape)
    assert result.samples.shape == (2, 2, 4, 4) and torch.isfinite(result.samples).all()


def test_edm_pickle_needs_opt_in(tmp_path):
    path = write_pickle(tmp_path / "net.pkl", {"ema": TinyEDMNet()})
    with pytest.raises(CheckpointError) as err:
        load_edm_pickle(path)
    assert "allow_pickle" in assert_one_line_naming(err, path)


def test_edm_pickle_missing_edm_source(tmp_path):
    """A pickle whose classes live in EDM's torch_utils, which is not importable: one line, PYTHONPATH."""
    package = tmp_path / "src" / "torch_utils"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "persistence.py").write_text("import torch\n\nclass Net(torch.nn.Module):\n    pass\n")
    sys.path.insert(0, str(tmp_path / "src"))
    try:
        from torch_utils.persistence import Net  # optional dependency: the module this test just wrote

        path = write_pickle(tmp_path / "edm.pkl", {"ema": Net()})
    finally:
        sys.path.remove(str(tmp_path / "src"))
        for name in ("torch_utils.persistence", "torch_utils"):
            sys.modules.pop(name, None)
    with pytest.raises(CheckpointError) as err:
        load_edm_pickle(path, allow_pickle=True)
    message = assert_one_line_naming(err, path)
    assert "PYTHONPATH" in message and "torch_utils" in message


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty", "not_a_dict", "no_ema", "not_a_module"])
def test_edm_pickle_bad_files(tmp_path, content):
    path = tmp_path / "net.pkl"
    if content == "truncated":
        data = pickle.dumps({"ema": TinyEDMNet()})
        path.write_bytes(data[: len(data) // 2])
    elif content == "garbage":
        path.write_bytes(b"\x00\x01garbage" * 50)
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "not_a_dict":
        write_pickle(path, [1, 2, 3])
    elif content == "no_ema":
        write_pickle(path, {"net": TinyEDMNet()})
    else:
        write_pickle(path, {"ema": "a string"})
    with pytest.raises(CheckpointError) as err:
        load_edm_pickle(path, allow_pickle=True)
    assert_one_line_naming(err, path)


def test_edm_pickle_missing_file(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_edm_pickle(tmp_path / "none.pkl", allow_pickle=True)
    assert_one_line_naming(err, tmp_path / "none.pkl")


# ---- AutoencoderKL decoder ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                                  norm_num_groups=4, sample_size=16, scaling_factor=0.25)
    root = tmp_path_factory.mktemp("ldm")
    vae.save_pretrained(root / "vae")
    return root


def test_decoder_shapes_scaling_and_clamp(vae_folder):
    decoder = load_decoder(vae_folder)  # pipeline folder with vae/
    assert isinstance(decoder, LatentDecoder)
    assert decoder.scaling_factor == 0.25 and decoder.downsample == 2
    assert decoder.latent_shape == (4, 8, 8) and decoder.image_shape == (3, 16, 16)
    latents = 3 * torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = decoder(latents)
        raw = decoder.vae.decode(latents / 0.25).sample
    assert images.shape == (2, 3, 16, 16)
    assert images.min() >= -1 and images.max() <= 1
    torch.testing.assert_close(images, raw.clamp(-1, 1))
    override = load_decoder(vae_folder / "vae", scaling_factor=0.5)
    with torch.no_grad():
        torch.testing.assert_close(override(latents), decoder.vae.decode(latents / 0.5).sample.clamp(-1, 1))
    with pytest.raises(ValueError, match="latents"):
        decoder(torch.zeros(1, 3, 8, 8))


def test_decoder_none_and_configs(vae_folder):
    assert load_decoder(None) is None
    assert not OmegaConf.load(CONF / "decoder/none.yaml")
    cfg = OmegaConf.load(CONF / "decoder/autoencoder_kl.yaml")
    cfg.path = str(vae_folder)
    assert isinstance(instantiate(cfg), LatentDecoder)


def test_decoder_errors(vae_folder, pipeline, tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_decoder(tmp_path / "nope")
    assert_one_line_naming(err, tmp_path / "nope")
    with pytest.raises(CheckpointError) as err:
        load_decoder(pipeline / "unet")  # a UNet2DModel folder, not a VAE
    assert_one_line_naming(err, pipeline / "unet")
    broken = shutil.copytree(vae_folder / "vae", tmp_path / "vae")
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError) as err:
        load_decoder(broken)
    assert_one_line_naming(err, broken)
