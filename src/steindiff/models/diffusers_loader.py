"""Load a diffusers ``UNet2DModel`` (a DDPM/DDIM pipeline folder) as a steindiff denoiser.

    denoiser = load_diffusers_denoiser("/path/to/ddpm-cifar10-32")   # pipeline folder: unet/ + scheduler/
    denoiser = load_diffusers_denoiser("/path/unet", scheduler_config="/path/scheduler_config.json")
    denoiser.spec.shape     # (C, H, W) of one sample, from the unet config
    denoiser.spec.process   # the VPDiscreteProcess of the scheduler's betas (also denoiser.process)

The scheduler config gives the discrete VP process (``beta_schedule`` linear / scaled_linear /
squaredcos_cap_v2 or ``trained_betas``, ``beta_start``, ``beta_end``, ``num_train_timesteps``) and
the parameterization (``prediction_type`` epsilon / v_prediction / sample). The betas and their
cumulative product are computed exactly as diffusers computes them (float32), so the process is the
one the network was trained on; ``clip_sample`` and thresholding are sampler options of diffusers'
schedulers and are ignored here (a PF-ODE solver does not clip).

The network is wrapped in ``VPNetworkDenoiser`` with discrete time input: at EDM noise level sigma
it receives x_t = alpha x_hat and the (fractional) timestep index tau(sigma) in [0, N - 1], which is
an integer exactly at the trained noise levels (``steindiff.core.adaptors.trained_sigmas``).

Nothing is downloaded (``local_files_only=True``). Every problem with the folder is one
``CheckpointError`` line naming the file; a missing diffusers is one line saying what to install.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from steindiff.core.adaptors import VPNetworkDenoiser
from steindiff.core.dtypes import parse_dtype
from steindiff.core.processes import VPDiscreteProcess
from steindiff.errors import CheckpointError, first_line

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "DiffusersDenoiser",
    "MissingDependencyError",
    "betas_from_scheduler_config",
    "import_diffusers",
    "load_diffusers_denoiser",
    "process_from_scheduler_config",
    "resolve_pipeline_folder",
    "sigmas_at_timesteps",
]

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
#: diffusers' prediction_type -> VPNetworkDenoiser's prediction
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
INSTALL_HINT = 'pip install "steindiff[diffusers]"'


class MissingDependencyError(CheckpointError, ImportError):
    """An optional dependency a loader needs is not installed (one line saying what to install).

    Args:
        message: the one-line message naming the package and the install command.
    """


def import_diffusers(what: str):
    """Import diffusers or raise one line saying how to install it."""
    try:
        import diffusers  # optional dependency
    except ImportError as err:
        raise MissingDependencyError(f"{what} needs the diffusers package, which is not importable ({err}); "
                                     f"install it with: {INSTALL_HINT}") from None
    return diffusers


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, or a one-line CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected the {what}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read the {what} as JSON ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected the {what} as a JSON object, found {type(data).__name__}")
    return data


# ---- scheduler config -> process ----------------------------------------------------------------


def _cosine_betas(num: int, max_beta: float = 0.999) -> Tensor:
    """Glide's cosine schedule as diffusers discretizes it ("squaredcos_cap_v2"), float32."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num) / alpha_bar(i / num), max_beta) for i in range(num)]
    return torch.tensor(betas, dtype=torch.float32)


def betas_from_scheduler_config(config: dict, source: str = "scheduler config") -> Tensor:
    """The (N,) float32 betas a diffusers DDPM/DDIM scheduler builds from ``config``."""
    if config.get("rescale_betas_zero_snr"):
        raise CheckpointError(f"{source}: rescale_betas_zero_snr=true (zero terminal SNR, infinite sigma_max) is "
                              "not supported; expected a schedule with a finite final noise level")
    if config.get("trained_betas") is not None:
        try:
            betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: trained_betas is not a list of numbers ({first_line(err)})") from None
        if betas.ndim != 1 or len(betas) < 2:
            raise CheckpointError(f"{source}: trained_betas must be a list of at least 2 numbers")
        return betas
    schedule = config.get("beta_schedule", "linear")
    try:
        num = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: num_train_timesteps, beta_start, beta_end must be numbers "
                              f"({first_line(err)})") from None
    if num < 2:
        raise CheckpointError(f"{source}: num_train_timesteps={num}; expected an integer >= 2")
    if schedule == "linear":
        return torch.linspace(start, end, num, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, num, dtype=torch.float32) ** 2
    if schedule == "squaredcos_cap_v2":
        return _cosine_betas(num)
    raise CheckpointError(f"{source}: beta_schedule {schedule!r} is not supported; "
                          f"accepted: {', '.join(BETA_SCHEDULES)} (or trained_betas)")


def process_from_scheduler_config(config: dict, source: str = "scheduler config") -> VPDiscreteProcess:
    """The discrete VP process of a diffusers scheduler config.

    alphas_cumprod is the float32 cumulative product diffusers uses in training and sampling, then
    held in float64 by the process.
    """
    if "beta_schedule" not in config and "trained_betas" not in config:
        raise CheckpointError(f"{source}: no beta_schedule or trained_betas; expected the config of a "
                              "DDPM/DDIM-style (VP) scheduler")
    betas = betas_from_scheduler_config(config, source)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    try:
        return VPDiscreteProcess(alphas_cumprod=alphas_cumprod.double())
    except ValueError as err:
        raise CheckpointError(f"{source}: the betas do not define a usable VP process ({first_line(err)})") from None


def prediction_from_scheduler_config(config: dict, source: str = "scheduler config") -> str:
    """VPNetworkDenoiser's prediction ("eps", "v", "x0") for diffusers' prediction_type."""
    kind = config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise CheckpointError(f"{source}: prediction_type {kind!r} is not supported; "
                              f"accepted: {', '.join(PREDICTION_TYPES)}")
    return PREDICTION_TYPES[kind]


def sigmas_at_timesteps(process: VPDiscreteProcess, timesteps, final_step: str = "zero") -> Tensor:
    """The steindiff sigma grid of a diffusers timestep list (descending integers), float64.

    With ``final_step="zero"`` a 0 is appended: Euler on this grid is DDIM (eta = 0) with
    ``set_alpha_to_one=True`` stepping over ``timesteps`` (its last step goes to alpha = 1). With
    "sigma_min"/"denoise" the grid ends at the noise level of the last timestep.
    """
    steps = torch.as_tensor(timesteps).to(torch.float64).reshape(-1)
    if len(steps) == 0 or not bool((steps == steps.round()).all()) or not bool((steps[1:] < steps[:-1]).all()):
        raise ValueError(f"timesteps must be strictly decreasing integers, got {steps.tolist()}")
    if steps.min() < 0 or steps.max() > process.num_timesteps - 1:
        raise ValueError(f"timesteps must lie in [0, {process.num_timesteps - 1}], got {steps.tolist()}")
    grid = process.sigma_hat(steps)
    return torch.cat([grid, grid.new_zeros(1)]) if final_step == "zero" else grid


# ---- folders ------------------------------------------------------------------------------------


def resolve_pipeline_folder(path, scheduler_config=None, component: str = "unet") -> tuple[Path, Path | None]:
    """(component folder, scheduler config file or None) for a pipeline folder or a component folder.

    ``path`` is either a pipeline folder (``<component>/config.json`` inside, scheduler config in
    ``scheduler/scheduler_config.json``) or the component folder itself (``config.json`` inside; the
    scheduler config is then ``scheduler_config`` or a sibling ``../scheduler/scheduler_config.json``).
    ``scheduler_config`` (a file, or a folder holding scheduler_config.json) overrides the search.
    """
    if path is None or str(path) in ("", "???"):
        raise CheckpointError(f"no {component} folder given; expected path=/path/to/pipeline-or-{component}-folder")
    root = Path(path).expanduser()
    if not root.exists():
        raise CheckpointError(f"{root}: no such folder; expected a diffusers pipeline folder (with {component}/) "
                              f"or a {component} folder (with config.json)")
    if not root.is_dir():
        raise CheckpointError(f"{root}: is a file; expected a diffusers pipeline folder (with {component}/) "
                              f"or a {component} folder (with config.json)")
    if (root / component / "config.json").is_file():
        folder, scheduler = root / component, root / "scheduler" / "scheduler_config.json"
    elif (root / "config.json").is_file():
        folder, scheduler = root, root.parent / "scheduler" / "scheduler_config.json"
    else:
        raise CheckpointError(f"{root}: no {component}/config.json or config.json; expected a diffusers pipeline "
                              f"folder (with {component}/) or a {component} folder")
    if scheduler_config is not None:
        scheduler = Path(scheduler_config).expanduser()
        if scheduler.is_dir():
            scheduler = scheduler / "scheduler_config.json"
        if not scheduler.is_file():
            raise CheckpointError(f"{scheduler}: no such file; expected a diffusers scheduler_config.json")
    elif not scheduler.is_file():
        scheduler = None
    return folder, scheduler


def load_component(cls, folder: Path, expected: str, dtype: torch.dtype | None = None) -> nn.Module:
    """``cls.from_pretrained(folder, local_files_only=True)`` in eval mode, frozen; one-line errors."""
    config = read_json(folder / "config.json", f"{expected} config")
    found = config.get("_class_name", expected)
    if found != expected:
        raise CheckpointError(f"{folder / 'config.json'}: a {found} config; expected a {expected}")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise CheckpointError(f"{folder}: no weights file; expected diffusion_pytorch_model.safetensors (or .bin) "
                              f"with the {expected} weights")
    kwargs = {"low_cpu_mem_usage": False} if dtype is None else {"low_cpu_mem_usage": False, "torch_dtype": dtype}
    from diffusers.utils import logging as diffusers_logging  # optional dependency

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # failures are reported as one CheckpointError line instead
    try:
        model = cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - diffusers raises many types for a bad folder
        raise CheckpointError(f"{folder}: cannot load the {expected} weights ({first_line(err)})") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    model.eval().requires_grad_(False)
    return model


# ---- the denoiser -------------------------------------------------------------------------------


class UNetNetwork(nn.Module):
    """``(x_t, t, labels) -> unet(x_t, t, class_labels).sample`` as VPNetworkDenoiser calls a network.

    One-hot labels (B, K) become class indices; a learned-variance output (2C channels) keeps its
    first C channels (the eps / v / x0 prediction), as diffusers' schedulers do.

    Args:
        unet: a diffusers UNet2DModel.
        channels: C, the channels of one sample (the prediction's channels).
    """

    def __init__(self, unet: nn.Module, channels: int):
        super().__init__()
        self.unet = unet
        self.channels = int(channels)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        class_labels = None if labels is None else labels.argmax(dim=-1)
        return self.unet(x, t, class_labels=class_labels).sample[:, : self.channels]


class DiffusersDenoiser(VPNetworkDenoiser):
    """A ``VPNetworkDenoiser`` around a diffusers UNet2DModel (discrete time input).

    Its ``spec`` holds the sample shape (C, H, W), the classes, the scheduler's process and the trained
    range: sigma_min / sigma_max, the noise levels of timesteps 0 and N - 1. Extra attributes:
    ``source`` (the unet folder), ``scheduler_config`` (the dict read).

    NFE: one UNet call per evaluation (two, batched, under ``GuidedDenoiser`` with scale != 1).

    Args:
        unet: the diffusers UNet2DModel (eval mode, frozen); it runs in its own dtype.
        process: the VPDiscreteProcess of the scheduler's betas.
        prediction: "eps", "v" or "x0" (the scheduler's prediction_type).
        shape: (C, H, W) of one sample.
        num_classes: the UNet's class embeddings (0: unconditional).
        round_timesteps: evaluate at the nearest trained integer timestep (see ``VPNetworkDenoiser``).
        source: the unet folder, for messages.
        scheduler_config: the scheduler config read, kept for reference.
    """

    def __init__(self, unet: nn.Module, process: VPDiscreteProcess, prediction: str, shape: tuple[int, int, int],
                 num_classes: int = 0, round_timesteps: bool = False, source: str = "",
                 scheduler_config: dict | None = None):
        dtype = next(unet.parameters()).dtype
        super().__init__(UNetNetwork(unet, shape[0]), process, prediction=prediction, time_input="discrete",
                         round_timesteps=round_timesteps, num_classes=num_classes, network_dtype=dtype,
                         shape=shape, sigma_min=process.sigma_min, sigma_max=process.sigma_max)
        self.source = source
        self.scheduler_config = dict(scheduler_config or {})

    @property
    def unet(self) -> nn.Module:
        return self.network.unet


def _sample_shape(config: dict, source: Path) -> tuple[int, int, int]:
    size = config.get("sample_size")
    channels = config.get("in_channels", 3)
    if isinstance(size, int):
        size = (size, size)
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise CheckpointError(f"{source}: sample_size={size!r}; expected a positive integer or [height, width]")
    out = config.get("out_channels", channels)
    if out not in (channels, 2 * channels):
        raise CheckpointError(f"{source}: out_channels={out} for in_channels={channels}; expected equal "
                              "(or twice, for a learned variance)")
    return int(channels), int(size[0]), int(size[1])


def load_diffusers_denoiser(path, scheduler_config=None, prediction: str | None = None,
                            round_timesteps: bool = False, dtype=None) -> DiffusersDenoiser:
    """A steindiff denoiser from a local diffusers UNet2DModel folder (never downloads).

    ``path``: a pipeline folder (``unet/`` and ``scheduler/scheduler_config.json``) or a unet folder.
    ``scheduler_config``: a scheduler_config.json (or its folder), needed when ``path`` is a unet folder
    with no sibling ``scheduler/``. ``prediction``: override the scheduler's prediction_type
    (epsilon / v_prediction / sample). ``round_timesteps``: evaluate the network only at integer
    timesteps (see ``VPNetworkDenoiser``). ``dtype``: weights' dtype (float32, float16, bfloat16 or
    None to keep the saved one); the network runs in it whatever the sampling dtype.
    """
    diffusers = import_diffusers("load_diffusers_denoiser")
    torch_dtype = parse_dtype(dtype, "dtype")
    folder, scheduler_file = resolve_pipeline_folder(path, scheduler_config, component="unet")
    if scheduler_file is None:
        raise CheckpointError(f"{folder}: no scheduler/scheduler_config.json beside this unet folder; expected a "
                              "pipeline folder or scheduler_config=/path/to/scheduler_config.json")
    sched = read_json(scheduler_file, "diffusers scheduler config")
    process = process_from_scheduler_config(sched, str(scheduler_file))
    if prediction is not None:
        sched = {**sched, "prediction_type": prediction}
    kind = prediction_from_scheduler_config(sched, str(scheduler_file) if prediction is None else "option prediction")
    unet_config = read_json(folder / "config.json", "UNet2DModel config")
    shape = _sample_shape(unet_config, folder / "config.json")
    num_classes = 0
    if unet_config.get("num_class_embeds") and unet_config.get("class_embed_type") is None:
        num_classes = int(unet_config["num_class_embeds"])
    unet = load_component(diffusers.UNet2DModel, folder, "UNet2DModel", torch_dtype)
    return DiffusersDenoiser(unet, process, kind, shape, num_classes=num_classes, round_timesteps=round_timesteps,
                             source=str(folder), scheduler_config=sched)
