"""Side by side with k-diffusion's samplers and diffusers' schedulers: same denoiser, same sigmas, same noise.

    python benchmarks/peers.py [--quick] [--repeats N]

Peers are benchmark-only extras, never dependencies of steindiff:

    pip install diffusers==0.42.1                      # or the project's [diffusers] extra
    pip install --no-deps k-diffusion==0.1.1.post1     # its dependencies are not needed for sampling.py

Only ``k_diffusion/sampling.py`` is loaded (by path, from the installed package folder): the package's
``__init__`` imports modules this project does not have. Its ``from . import utils`` gets k-diffusion's own
utils.py where that imports here, else a stand-in with ``append_dims``; ``torchdiffeq`` and ``torchsde``
get stand-ins when missing (the deterministic samplers never call them). A missing peer is skipped with
one line naming its install command.

Every run starts from the same initial noise (``initial_noise(range(batch), shape) * sigma_max``) on the
same EDM grid (sigma 0.002..80, rho 7, 10 steps, final step to sigma = 0; ours holds it in float64), handed
to each peer in x's dtype, as the peers' own grid functions give it (``peer_sigmas``): k-diffusion takes the
sigma tensor; for diffusers the scheduler's ``sigmas`` (and the timesteps that go with them) are replaced
after ``set_timesteps``, since not every scheduler accepts a custom EDM grid (the grid table says how far
each one's own grid is from ours). The denoiser is the same object, called at the same sigmas:

- k-diffusion: ``model(x, sigma) = D(x, sigma)``;
- diffusers EDM schedulers (EDMEuler, EDMDPMSolverMultistep): the raw output F they expect. For our
  EDM-preconditioned networks (same sigma_data, c_in, c_noise) F is the network itself, called on the
  scheduler's ``scale_model_input`` as a diffusers pipeline would; for other denoisers
  F = (D - c_skip x) / c_out;
- HeunDiscrete: ``prediction_type="sample"``, the output is D at the scheduler's x (EDM coordinates);
- UniPCMultistep: ``prediction_type="sample"`` in its VP coordinates, x_vp = x / sqrt(1 + sigma^2), the
  output is D(x_vp * sqrt(1 + sigma^2), sigma).

Ours is ``steindiff.core.integrate`` (the per-batch loop of ``sample``: NFE counter, trace) from the same
x. Time: float32, ``torch.set_num_threads(1)``, one warm-up round, then ``--repeats`` rounds in which
ours and the peers run interleaved (the order rotates each round); medians; ratio ours/peer (< 1: ours is
faster). Differences: largest |ours - peer| over all outputs in float32 and again with everything in
float64 (the denoiser cast to float64), next to |ours float32 - ours float64| (what float32 rounding alone
does to our own run). Writes benchmarks/results/peers.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
import types
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from steindiff.core import (
    EDMPrecond,
    GaussianData,
    Schedule,
    SigmaGrid,
    initial_noise,
    integrate,
    make_solver,
    mixture_preset,
)
from steindiff.models.checkpoint import load_denoiser

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
KDIFF_INSTALL = "pip install --no-deps k-diffusion==0.1.1.post1"
DIFFUSERS_INSTALL = "pip install diffusers==0.42.1"
NUM_STEPS = 10


# --------------------------------------------------------------------------------------------- peers
def _stand_in(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _unavailable(what: str):
    def call(*args, **kwargs):
        raise RuntimeError(f"{what} is a stand-in in benchmarks/peers.py (only deterministic samplers are run)")
    return call


def _load_by_path(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Trailing singleton dimensions up to ``target_dims`` (the one helper sampling.py needs from utils)."""
    return x.reshape(*x.shape, *([1] * (target_dims - x.ndim)))


def load_kdiffusion():
    """k-diffusion's sampling module alone (None, after one line naming the install, when not installed)."""
    spec = importlib.util.find_spec("k_diffusion")  # finds the folder without running the package __init__
    if spec is None or not spec.submodule_search_locations:
        print(f"k-diffusion not installed: {KDIFF_INSTALL}  (skipping k-diffusion)")
        return None
    folder = Path(spec.submodule_search_locations[0])
    stand_ins = {"torchdiffeq": dict(odeint=_unavailable("torchdiffeq.odeint")),
                 "torchsde": dict(BrownianTree=_unavailable("torchsde.BrownianTree"))}
    missing = [name for name in stand_ins if importlib.util.find_spec(name) is None]
    sys.modules.update({name: _stand_in(name, **stand_ins[name]) for name in missing})
    package = _stand_in("_kdiffusion_peer", __path__=[])
    sys.modules["_kdiffusion_peer"] = package
    try:
        try:
            package.utils = _load_by_path("_kdiffusion_peer.utils", folder / "utils.py")
        except ImportError:  # utils.py imports torchvision and PIL: a stand-in with the one helper used
            package.utils = sys.modules["_kdiffusion_peer.utils"] = _stand_in("_kdiffusion_peer.utils",
                                                                               append_dims=_append_dims)
        return _load_by_path("_kdiffusion_peer.sampling", folder / "sampling.py")
    except ImportError as err:  # sampling.py itself needs scipy and tqdm
        print(f"k-diffusion's sampling.py cannot be imported ({err}): pip install {err.name}  (skipping k-diffusion)")
        return None
    finally:  # the stand-ins live only while sampling.py is imported (diffusers probes these names)
        for name in missing:
            del sys.modules[name]


def load_diffusers():
    try:
        import diffusers  # optional: a benchmark-only peer
    except ImportError:
        print(f"diffusers not installed: {DIFFUSERS_INSTALL}  (skipping diffusers)")
        return None
    return diffusers


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# -------------------------------------------------------------------------------------------- runners
class Counted:
    """A callable that counts its calls (the peers' measured NFE)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def run_ours(solver: str, options: dict, denoiser, x0, grid: SigmaGrid):
    x, nfe, _ = integrate(denoiser, x0, grid, make_solver(solver, **options))
    return x, nfe


def peer_sigmas(grid: SigmaGrid, x: torch.Tensor) -> torch.Tensor:
    """Our grid in x's dtype, as the peers' own grid functions give it (float32 for a float32 run). With float64
    sigmas and float32 x, k-diffusion's to_d divides by a (1, 1) float64 tensor and turns x into float64."""
    return grid.sigmas.to(x.dtype)


def run_kdiffusion(sampler, denoiser, x0, grid: SigmaGrid):
    model = Counted(lambda x, sigma: denoiser(x, sigma))
    return sampler(model, x0, peer_sigmas(grid, x0), disable=True), model.calls


def _edm_output(denoiser, scheduler, x, t, sigma: float):
    """The raw output F an EDM scheduler expects (it forms D = c_skip x + c_out F itself)."""
    if isinstance(denoiser, EDMPrecond) and denoiser.sigma_data == scheduler.config.sigma_data:
        x_in = scheduler.scale_model_input(x, t)  # c_in x, as a diffusers pipeline calls the network
        dtype = denoiser.network_dtype or x.dtype
        return denoiser.network(x_in.to(dtype), t.to(dtype).expand(x.shape[0]), None).to(x.dtype)
    scheduler.scale_model_input(x, t)  # what a pipeline calls first (the scheduler warns otherwise)
    s2, sd = sigma * sigma, scheduler.config.sigma_data
    c_skip, c_out = sd * sd / (s2 + sd * sd), sigma * sd / math.sqrt(s2 + sd * sd)
    return (denoiser(x, sigma) - c_skip * x) / c_out


def run_edm_scheduler(scheduler, denoiser, x, grid: SigmaGrid):
    """EDMEuler / EDMDPMSolverMultistep on our grid (replacing the scheduler's own after set_timesteps)."""
    s = peer_sigmas(grid, x)
    scheduler.set_timesteps(grid.num_steps)
    scheduler.sigmas = s
    scheduler.timesteps = scheduler.precondition_noise(s[:-1])
    scheduler.set_begin_index(0)
    model = Counted(partial(_edm_output, denoiser, scheduler))
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(model(x, t, float(s[i])), t, x, return_dict=False)[0]
    return x, model.calls


def run_heun_discrete(scheduler, denoiser, x, grid: SigmaGrid):
    """HeunDiscrete: its sigmas are [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0], one model call per entry but the last."""
    s = peer_sigmas(grid, x)
    scheduler.set_timesteps(grid.num_steps)
    scheduler.sigmas = torch.cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]])
    scheduler.set_begin_index(0)
    model = Counted(lambda x, sigma: denoiser(x, sigma))
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(model(x, float(scheduler.sigmas[i])), t, x, return_dict=False)[0]
    return x, model.calls


def run_unipc(scheduler, denoiser, x_hat, grid: SigmaGrid):
    """UniPCMultistep in its VP coordinates x_vp = alpha x, alpha = 1 / sqrt(1 + sigma^2) (alpha = 1 at sigma 0)."""
    s = peer_sigmas(grid, x_hat)
    scheduler.set_timesteps(grid.num_steps)
    scheduler.sigmas = s
    scheduler.set_begin_index(0)
    model = Counted(lambda x, sigma: denoiser(x, sigma))
    x = x_hat / math.sqrt(1.0 + float(s[0]) ** 2)
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(s[i])
        x = scheduler.step(model(x * math.sqrt(1.0 + sigma * sigma), sigma), t, x, return_dict=False)[0]
    return x * math.sqrt(1.0 + float(s[-1]) ** 2), model.calls


# ---------------------------------------------------------------------------------------------- cases
@dataclass
class Peer:
    label: str  # e.g. "k-diffusion sample_euler"
    run: object  # (denoiser, x0, grid) -> (x, nfe)
    note: str = ""  # a known convention difference ("" where the algorithm is the same)
    float32_step: bool = False  # the peer's update runs in float32 whatever the input dtype


@dataclass
class Case:
    solver: str  # ours, as the registry names it
    options: dict = field(default_factory=dict)
    peers: list[Peer] = field(default_factory=list)
    final_step: str = "zero"  # the grid's final-step policy

    @property
    def label(self) -> str:
        return self.solver + "".join(f" {k}={v}" for k, v in self.options.items()) + \
            ("" if self.final_step == "zero" else f" (grid to sigma_min, final_step={self.final_step})")

    @property
    def grid(self) -> SigmaGrid:
        return Schedule("edm", final_step=self.final_step).grid(NUM_STEPS)


KD_3M_NOTE = ("k-diffusion's 3M (sample_dpmpp_3m_sde, eta=0) warms up with the exponential-integrator 2nd order "
              "step (phi_2 = expm1(-h)/h + 1) where ours and diffusers use the 2M midpoint step, and it does not "
              "lower the order of the second-to-last step (ours: lower_order_final)")


def kdiffusion_peers(kd, solver: str) -> list[Peer]:
    if kd is None:
        return []
    if solver == "dpmpp_3m":
        sampler = partial(kd.sample_dpmpp_3m_sde, eta=0.0, noise_sampler=lambda s, t: None)
        return [Peer("k-diffusion sample_dpmpp_3m_sde(eta=0)", partial(run_kdiffusion, sampler), KD_3M_NOTE)]
    name = {"euler": "sample_euler", "heun": "sample_heun", "dpmpp_2m": "sample_dpmpp_2m"}.get(solver)
    return [Peer(f"k-diffusion {name}", partial(run_kdiffusion, getattr(kd, name)))] if name else []


def diffusers_peers(df, solver: str, options: dict) -> list[Peer]:
    if df is None:
        return []
    if solver == "euler":
        return [Peer("diffusers EDMEulerScheduler", partial(run_edm_scheduler, df.EDMEulerScheduler()),
                     float32_step=True)]
    if solver == "heun":
        scheduler = df.HeunDiscreteScheduler(prediction_type="sample")
        return [Peer("diffusers HeunDiscreteScheduler", partial(run_heun_discrete, scheduler))]
    if solver in ("dpmpp_2m", "dpmpp_3m"):
        order = int(solver[-2])
        scheduler = df.EDMDPMSolverMultistepScheduler(solver_order=order)
        return [Peer(f"diffusers EDMDPMSolverMultistepScheduler(solver_order={order})",
                     partial(run_edm_scheduler, scheduler))]
    if solver.startswith("unipc"):
        variant, order = "bh1" if solver == "unipc_bh1" else "bh2", options.get("order", 3)
        scheduler = df.UniPCMultistepScheduler(prediction_type="sample", solver_order=order, solver_type=variant)
        return [Peer(f"diffusers UniPCMultistepScheduler(solver_order={order}, {variant})",
                     partial(run_unipc, scheduler))]
    return []


def cases(kd, df) -> list[Case]:
    specs = [("euler", {}), ("heun", {}), ("dpmpp_2m", {}), ("dpmpp_3m", {}), ("unipc", {}), ("unipc", {"order": 2})]
    out = [Case(s, o, kdiffusion_peers(kd, s) + diffusers_peers(df, s, o)) for s, o in specs]
    # diffusers' bh1 returns NaN on a grid that ends at 0 (B(h) = -h is infinite there; see conventions):
    # compared on the grid that ends at sigma_min instead
    out.append(Case("unipc_bh1", {}, diffusers_peers(df, "unipc_bh1", {}), final_step="sigma_min"))
    return [c for c in out if c.peers]


# ---------------------------------------------------------------------------------------------- models
def load_models(quick: bool) -> list[tuple[str, object, int, int, int]]:
    """(name, denoiser, batch, float64 rows, rounds per repeat): the exact mixture, the learned MLP and U-Net, a
    near-free denoiser. The float64 check runs on the first rows of the batch (all of them but for the U-Net);
    the cheap denoisers get more timed rounds (their runs take milliseconds)."""
    scale = 4 if quick else 1
    return [
        ("aniso32 mixture (exact)", mixture_preset("aniso32"), 2000 // scale, 2000 // scale, 4),
        ("ring2d MLP (learned)", load_denoiser("ring2d_mlp.safetensors"), 1000 // scale, 1000 // scale, 1),
        ("digits U-Net (learned)", load_denoiser("digits_unet.safetensors"), 64 if quick else 128, 32, 1),
        ("N(0, I) in 32-d (loop overhead)", GaussianData(torch.zeros(32), torch.ones(32)), 2000 // scale,
         2000 // scale, 20),
    ]


def shape_of(denoiser) -> tuple[int, ...]:
    return tuple(denoiser.spec.shape or (32,))


def as_float64(denoiser):
    """A float64 copy, the network too (the learned denoisers run their network in float32 by default)."""
    den64 = copy.deepcopy(denoiser).double()
    if getattr(den64, "network_dtype", None) is not None:
        den64.network_dtype = None
    return den64


def start(denoiser, batch: int, grid: SigmaGrid, dtype: torch.dtype) -> torch.Tensor:
    return initial_noise(range(batch), shape_of(denoiser), dtype=dtype) * float(grid.sigmas[0])


# --------------------------------------------------------------------------------------------- measure
def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def accuracy(denoiser, batch: int, f64_rows: int, case: Case) -> list[dict]:
    """Per peer: NFE and the largest |ours - peer| in float32 (whole batch) and float64 (first ``f64_rows``
    rows: the rows are independent), with ours' own float32 error on those rows."""
    grid = case.grid
    den64 = as_float64(denoiser)
    x32, x64 = start(denoiser, batch, grid, torch.float32), start(denoiser, f64_rows, grid, torch.float64)
    ours32, nfe = run_ours(case.solver, case.options, denoiser, x32, grid)
    ours64, _ = run_ours(case.solver, case.options, den64, x64, grid)
    scale = float(ours64.abs().max())
    rows = []
    for peer in case.peers:
        p32, peer_nfe = peer.run(denoiser, x32, grid)
        p64, _ = peer.run(den64, x64, grid)
        rows.append({"solver": case.label, "peer": peer.label, "nfe_ours": nfe, "nfe_peer": peer_nfe,
                     "max_abs_diff_f32": _max_abs(ours32, p32), "max_abs_diff_f64": _max_abs(ours64, p64),
                     "ours_f32_vs_f64": _max_abs(ours32[:f64_rows], ours64), "max_abs_output_f64": scale,
                     "peer_finite": bool(torch.isfinite(p32).all() and torch.isfinite(p64).all()),
                     "peer_dtypes_kept": p32.dtype == torch.float32 and p64.dtype == torch.float64,
                     "float32_step": peer.float32_step, "note": peer.note})
    return rows


def _timed(fn) -> float:
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def timings(denoiser, batch: int, all_cases: list[Case], repeats: int) -> dict:
    """(case label, implementation label) -> seconds of each counted round, all runs interleaved."""
    runs = {}
    for case in all_cases:
        grid = case.grid
        x = start(denoiser, batch, grid, torch.float32)
        runs[(case.label, "ours")] = partial(run_ours, case.solver, case.options, denoiser, x, grid)
        for peer in case.peers:
            runs[(case.label, peer.label)] = partial(peer.run, denoiser, x, grid)
    keys, times = list(runs), {key: [] for key in runs}
    for round_ in range(repeats + 1):  # round 0 warms up
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:  # the order rotates: drift and load hit every runner alike
            seconds = _timed(runs[key])
            if round_:
                times[key].append(seconds)
    return times


def measure_model(name: str, denoiser, batch: int, f64_rows: int, all_cases: list[Case], repeats: int):
    begin = time.perf_counter()
    with torch.no_grad():
        rows = [row for case in all_cases for row in accuracy(denoiser, batch, f64_rows, case)]
        times = timings(denoiser, batch, all_cases, repeats)
    for row in rows:
        ours, peer = (statistics.median(times[(row["solver"], k)]) for k in ("ours", row["peer"]))
        row.update(model=name, batch=batch, f64_rows=f64_rows, timed_rounds=repeats, ours_s=ours, peer_s=peer,
                   ratio=ours / peer, ours_times=times[(row["solver"], "ours")],
                   peer_times=times[(row["solver"], row["peer"])])
        row["verdict"] = verdict(row)
        print(f"{name:32s} {row['solver']:16s} {row['peer']:58s} x{row['ratio']:.3f}  "
              f"f32 {row['max_abs_diff_f32']:.2e}  f64 {row['max_abs_diff_f64']:.2e}  {row['verdict']}", flush=True)
    print(f"  ({time.perf_counter() - begin:.0f} s)", flush=True)
    return rows


def verdict(row: dict) -> str:
    """'agree' where the float64 runs agree to 1e-10 relative to the output (float64 rounding); for a peer whose
    step runs in float32, 'agree (float32)' where its float64 difference is within ours' own float32 error."""
    if row["nfe_ours"] != row["nfe_peer"]:
        return "DIFFER (NFE)"
    if not row["peer_finite"]:
        return "peer output not finite"
    if not row["peer_dtypes_kept"]:
        return "DIFFER (peer changed the dtype)"
    if row["max_abs_diff_f64"] <= 1e-10 * max(row["max_abs_output_f64"], 1.0):
        return "agree"
    if row["float32_step"] and row["max_abs_diff_f64"] <= 2 * row["ours_f32_vs_f64"]:
        return "agree (float32)"
    return "differ: convention (notes)" if row["note"] else "DIFFER"


# ------------------------------------------------------------------------------------------ conventions
def conventions(kd, df) -> list[dict]:
    """Float64 checks on the mixture (500 rows) that pin down the convention behind each difference."""
    den = as_float64(mixture_preset("aniso32"))
    checks = []

    def check(text: str, steps: int, a, b):
        grid = Schedule("edm").grid(steps)
        x = start(den, 500, grid, torch.float64)
        with torch.no_grad():
            checks.append({"check": text, "steps": steps, "max_abs_diff_f64": _max_abs(a(den, x, grid)[0],
                                                                                      b(den, x, grid)[0])})

    ours = partial(run_ours, "dpmpp_3m", {})
    ours_uncapped = partial(run_ours, "dpmpp_3m", {"lower_order_final": False})
    if df is not None:
        dpm3 = partial(run_edm_scheduler, df.EDMDPMSolverMultistepScheduler(solver_order=3))
        for steps in (10, 20):  # diffusers lowers the second-to-last step's order only below 15 steps
            check("ours dpmpp_3m vs diffusers EDMDPM(order 3)", steps, ours, dpm3)
            check("ours dpmpp_3m lower_order_final=False vs diffusers EDMDPM(order 3)", steps, ours_uncapped, dpm3)
    if df is not None:
        bh1 = df.UniPCMultistepScheduler(prediction_type="sample", solver_order=3, solver_type="bh1")
        check("ours unipc_bh1 vs diffusers UniPC(order 3, bh1), grid ending at 0 (nan: diffusers' output is NaN)",
              NUM_STEPS, partial(run_ours, "unipc_bh1", {}), partial(run_unipc, bh1))
    if kd is not None and df is not None:
        heun_type = df.EDMDPMSolverMultistepScheduler(solver_order=3, solver_type="heun", lower_order_final=False)
        kd3 = partial(run_kdiffusion, partial(kd.sample_dpmpp_3m_sde, eta=0.0, noise_sampler=lambda s, t: None))
        check("k-diffusion dpmpp_3m_sde(eta=0) vs diffusers EDMDPM(order 3, solver_type=heun, "
              "lower_order_final=False)", NUM_STEPS, kd3, partial(run_edm_scheduler, heun_type))
    return checks


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(((a - b).abs() / b.abs().clamp_min(1e-300)).max())


def grid_checks(kd, df) -> list[dict]:
    """How far each peer's own grid is from ours (EDM, 0.002..80, rho 7, 10 steps, then 0)."""
    ours = Schedule("edm").grid(NUM_STEPS).sigmas
    rows = []

    def add(peer: str, sigmas: torch.Tensor):
        sigmas = torch.as_tensor(sigmas).double()
        same_length = len(sigmas) == len(ours)
        rows.append({"peer": peer, "sigma_max": float(sigmas[0]), "sigma_min": float(sigmas[sigmas > 0].min()),
                     "ends_at_zero": float(sigmas[-1]) == 0.0, "points": len(sigmas),
                     "max_rel_diff": _relative(sigmas[:-1], ours[:-1]) if same_length else None})

    if kd is not None:
        add("k-diffusion get_sigmas_karras(10, 0.002, 80, 7)", kd.get_sigmas_karras(NUM_STEPS, 0.002, 80.0, 7.0))
    if df is not None:
        for name in ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"):
            scheduler = getattr(df, name)()
            scheduler.set_timesteps(NUM_STEPS)
            add(f"diffusers {name} set_timesteps(10)", scheduler.sigmas)
        unipc = df.UniPCMultistepScheduler(use_karras_sigmas=True)
        unipc.set_timesteps(NUM_STEPS)
        add("diffusers UniPCMultistepScheduler(use_karras_sigmas=True) set_timesteps(10)", unipc.sigmas)
        heun = df.HeunDiscreteScheduler(use_karras_sigmas=True)
        heun.set_timesteps(NUM_STEPS)
        add("diffusers HeunDiscreteScheduler(use_karras_sigmas=True) set_timesteps(10), distinct sigmas",
            heun.sigmas.unique_consecutive())
    return rows


# ---------------------------------------------------------------------------------------------- report
def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "k-diffusion": _version("k-diffusion"), "diffusers": _version("diffusers")}


def _e(value) -> str:
    return "-" if value is None else f"{value:.1e}"


def main_table(rows: list[dict]) -> list[str]:
    lines = ["| model | batch | solver | peer | NFE ours/peer | ours s | peer s | ours/peer | max abs diff f32 | "
             "max abs diff f64 | ours f32 vs f64 | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['solver']} | {r['peer']} | {r['nfe_ours']}/{r['nfe_peer']} "
                     f"| {r['ours_s']:.3f} | {r['peer_s']:.3f} | {r['ratio']:.3f} | {_e(r['max_abs_diff_f32'])} | "
                     f"{_e(r['max_abs_diff_f64'])} | {_e(r['ours_f32_vs_f64'])} | {r['verdict']} |")
    return lines


def other_tables(checks: list[dict], grids: list[dict]) -> list[str]:
    lines = ["", "## Conventions (aniso32 mixture, 500 rows, float64)", "", "| check | steps | max abs diff |",
             "|---|---|---|"]
    lines += [f"| {c['check']} | {c['steps']} | {_e(c['max_abs_diff_f64'])} |" for c in checks]
    lines += ["", "## Each peer's own grid against ours (EDM 0.002..80, rho 7, 10 steps, then 0)", "",
              "| peer grid | points | sigma_max | sigma_min > 0 | ends at 0 | max rel diff to ours |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {g['peer']} | {g['points']} | {g['sigma_max']:.6g} | {g['sigma_min']:.6g} | {g['ends_at_zero']} | "
              f"{_e(g['max_rel_diff'])} |" for g in grids]
    return lines


def write_report(command: str, rows: list[dict], checks: list[dict], grids: list[dict], notes: list[str]) -> str:
    info = machine()
    lines = ["# Peers: k-diffusion and diffusers side by side", "", f"Command: `{command}`", "",
             f"Machine: {info['cpu']}, CPU only, torch {info['torch']} with 1 thread, float32 timings; a shared "
             "machine, so read the ratios (measured interleaved), not the absolute seconds. Peers: k-diffusion "
             f"{info['k-diffusion']} (sampling.py alone), diffusers {info['diffusers']}.", "",
             f"EDM grid 0.002..80, rho 7, {NUM_STEPS} steps, last step to sigma = 0 (ours in float64, the peers in "
             "the run's dtype, as their own grid functions give it); the same initial noise (seeds "
             "0..batch-1) and the same denoiser object for all. 'ours s' and 'peer s' are medians; ours/peer < 1 means "
             "ours is faster. 'ours f32 vs f64' is float32 rounding's own effect on our run: a float32 difference of "
             "that size is rounding. The float64 columns use the whole batch but for the U-Net (its first 32 rows). "
             "'agree': the float64 outputs agree to 1e-10 relative to the largest output; 'agree (float32)': the "
             "peer's step runs in float32 and its float64 difference is within twice ours' own float32 error.", ""]
    lines += main_table(rows) + other_tables(checks, grids) + ["", "## Notes", ""] + [f"- {n}" for n in notes]
    md = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "peers.md").write_text(md)
    payload = {"command": command, "machine": info, "num_steps": NUM_STEPS, "rows": rows, "conventions": checks,
               "grids": grids, "notes": notes}
    (OUT / "peers.json").write_text(json.dumps(payload, indent=1))
    return md


NOTES = [
    "dpmpp_3m against k-diffusion differs by convention, not rounding: " + KD_3M_NOTE + ". The conventions table "
    "shows k-diffusion's 3M equal (float64) to diffusers' EDMDPM(order 3, solver_type='heun', "
    "lower_order_final=False), and ours equal to diffusers' default EDMDPM(order 3).",
    "diffusers lowers the order of the second-to-last step (lower_order_final) only below 15 steps; ours always "
    "(dpmpp_3m, unipc): at 20 steps ours equals diffusers with lower_order_final=False (conventions table).",
    "diffusers UniPCMultistepScheduler with solver_type='bh1' returns NaN when the grid ends at sigma = 0 (its "
    "B(h) = -h is -inf on the last step and multiplies a zero residual); unipc_bh1 is therefore compared on the "
    "grid that ends at sigma_min (11 points, final_step 'sigma_min'; UniPC's output converted back from its VP "
    "coordinates there).",
    "k-diffusion's sample_euler and sample_heun draw torch.randn_like(x) every step even with s_churn = 0 (the "
    "draw is unused): part of their time where the denoiser is cheap.",
    "Not compared (no peer with the same algorithm): ipndm (k-diffusion 0.1.1 has no iPNDM; diffusers' "
    "PNDMScheduler is a different method), ddim (= euler here). Peers' methods with no counterpart here "
    "(k-diffusion lms, dpm_2, dpm_fast/adaptive, ancestral and SDE samplers; diffusers DEIS, singlestep "
    "DPM-Solver, KDPM2) are left out. Final step 'zero' is compared (and 'sigma_min' for unipc_bh1), 'denoise' "
    "is not.",
    "The exact aniso32 mixture amplifies float32 rounding (ours' own float32 error reaches 1e-2 there): its float32 "
    "differences of a few times that are rounding, and the float64 column decides.",
    "k-diffusion's get_sigmas_karras and diffusers' EDMDPMSolverMultistepScheduler compute their ramp in float32 "
    "(grid table); in the runs above every peer gets our grid (in the run's dtype) instead of its own.",
    "EDMEulerScheduler's set_timesteps(sigmas=...) reads the list as a ramp in [0, 1] fed through the Karras "
    "formula, and HeunDiscrete and UniPC build their grid from the training betas: all diffusers schedulers get "
    "our grid by replacing `sigmas` (and `timesteps`) after set_timesteps.",
    "diffusers EDMEulerScheduler.step casts the sample to float32 before the update: its float64 run is a float32 "
    "run, so its float64 difference stays at float32 size.",
    "Times are whole runs (ours: integrate with its NFE counter and per-step trace; the peers: their loops and "
    "set_timesteps), the denoiser included. The N(0, I) denoiser costs almost nothing, so its rows are the loops' "
    "own overhead (a few milliseconds a run: timed over 20x the rounds, the mixture over 4x); with the learned "
    "networks the denoiser dominates and the ratios measure little but noise.",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, 1 repeat (a smoke run)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (x20 for N(0, I), x4 for the mixture)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    kd, df = load_kdiffusion(), load_diffusers()
    all_cases = cases(kd, df)
    if not all_cases:
        print("no peer installed: nothing to compare")
        return 1
    repeats = 1 if args.quick else args.repeats
    rows = [row for name, den, batch, f64_rows, rounds in load_models(args.quick)
            for row in measure_model(name, den, batch, f64_rows, all_cases, repeats * rounds)]
    checks, grids = conventions(kd, df), grid_checks(kd, df)
    command = "python benchmarks/peers.py" + (" --quick" if args.quick else "") + \
        (f" --repeats {args.repeats}" if args.repeats != 5 and not args.quick else "")
    print(write_report(command, rows, checks, grids, NOTES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
