"""The sampling loop over (denoiser, sigma grid, solver, corrector, observers).

    result = sample(denoiser, grid, solver, seeds=range(64), shape=(2,))
    result.samples      # (64, 2)
    result.nfe          # measured by counting denoiser calls
    result.trace        # one dict per step and batch: sigma, nfe so far, corrector and observer numbers

``grid`` is a ``SigmaGrid`` (sigmas and final-step policy; a plain tensor of sigmas is accepted with
``final_step``). The state is kept in EDM coordinates (x_hat = x / alpha). The initial state is
``process.prior_scale(sigma_max) * noise`` (sigma_max * eps for VE; eps / alpha for VP), with the
noise drawn per seed (``steindiff.core.rng``). With batch-independent denoisers and a corrector
that does not couple samples, results do not depend on ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .adaptors import draw_labels, one_hot_labels
from .correctors.base import Corrector, NoCorrector, StepContext
from .denoiser import CountingDenoiser, DenoiserOutputError, spec_of
from .observers import Observer
from .processes import NoiseProcess, VEProcess
from .rng import check_seeds, initial_noise
from .schedules import SigmaGrid, as_grid
from .solvers.base import Solver, SolverState, StepOutput

__all__ = ["SampleResult", "sample", "integrate", "seed_batches"]


@dataclass
class SampleResult:
    """Samples of a run with their seeds, the measured NFE, the grid and the per-step trace."""

    samples: Tensor  # (N, *shape), in the order of ``seeds``
    seeds: list[int]
    nfe: int  # measured denoiser evaluations per trajectory
    grid: SigmaGrid
    labels: Tensor | None = None  # (N, num_classes) when the denoiser is conditional
    trace: list[dict] = field(default_factory=list)

    @property
    def sigmas(self) -> Tensor:
        return self.grid.sigmas

    @property
    def final_step(self) -> str:
        return self.grid.final_step

    def summary(self) -> dict:
        """JSON-friendly summary (no tensors)."""
        return {"num_samples": len(self.seeds), "nfe": self.nfe, "final_step": self.final_step,
                "num_steps": self.grid.num_steps, "sigmas": self.grid.tolist()}


def seed_batches(seeds: Sequence[int], batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """The batches of ``rank``: consecutive batches of ``batch_size`` seeds, dealt round-robin to ranks."""
    seeds = list(seeds)
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    return batches[rank::world_size]


class _Step:
    """Step i of a batch: the solver step at (sigma, sigma_next) with the history held constant."""

    def __init__(self, solver, counter, sigma: float, sigma_next: float, state: SolverState, labels):
        self.solver, self.counter, self.state, self.labels = solver, counter, state, labels
        self.sigma, self.sigma_next = sigma, sigma_next

    def __call__(self, x: Tensor, rows=None) -> StepOutput:
        state, labels = self.state, self.labels
        if rows is not None:
            state, labels = state.select(rows), None if labels is None else labels[rows]
        return self.solver.step(self.counter, x, self.sigma, self.sigma_next, state, labels)


def _corrected_step(step: _Step, x: Tensor, corrector: Corrector, observers, context_kw: dict):
    """One corrected step: (x_next, solver output, the step's trace numbers)."""
    context = StepContext(sigma=step.sigma, sigma_next=step.sigma_next, step_fn=step, **context_kw)
    if corrector.differentiates(context):  # a graph only where the corrector will differentiate it
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            output = step(x)
    else:
        output = step(x)
    x_next, info = corrector.correct(x, output, context)
    for observer in observers:
        info = {**info, **observer.observe(x, output, context)}
    return x_next.detach(), output, info


def integrate(denoiser, x: Tensor, grid: SigmaGrid | Tensor, solver: Solver, corrector: Corrector | None = None, *,
              final_step: str | None = None, process: NoiseProcess | None = None, labels: Tensor | None = None,
              seeds: Sequence[int] | None = None, batch_index: int = 0,
              observers: Sequence[Observer] = ()) -> tuple[Tensor, int, list[dict]]:
    """Integrate one batch from x at sigmas[0] along the grid; returns (x, nfe, trace).

    ``x`` is the state at sigmas[0] (already scaled). The denoiser is wrapped in a counter, so the
    NFE returned is measured. ``grid`` as in ``sample``.
    """
    grid, corrector, process = as_grid(grid, final_step), corrector or NoCorrector(), process or VEProcess()
    counter = denoiser if isinstance(denoiser, CountingDenoiser) else CountingDenoiser(denoiser)
    counter.reset()
    sigmas, num_steps = grid.tolist(), grid.num_steps
    alphas = process.alpha_of_sigma(grid.sigmas).tolist()
    state = solver.init_state(num_steps)
    seed_tensor = None if seeds is None else torch.as_tensor(list(seeds), dtype=torch.int64)
    trace, finite = [], []
    for i in range(num_steps):
        step = _Step(solver, counter, sigmas[i], sigmas[i + 1], state, labels)
        context_kw = dict(index=i, num_steps=num_steps, alpha=alphas[i], alpha_next=alphas[i + 1], process=process,
                          labels=labels, seeds=seed_tensor, counter=counter)
        try:
            x, output, info = _corrected_step(step, x, corrector, observers, context_kw)
        except DenoiserOutputError as err:
            raise DenoiserOutputError(f"{err} at step {i} (sigma {sigmas[i]:.4g})") from None
        state = output.state.detach() if corrector.requires_grad else output.state
        del output  # the step's graph (when differentiated) must not live into the next step
        trace.append({"batch": batch_index, "step": i, "sigma": sigmas[i], "sigma_next": sigmas[i + 1],
                      "nfe": counter.calls, **info})
        finite.append(torch.isfinite(x).all())  # read once after the loop: no device sync per step
    for entry, ok in zip(trace, torch.stack(finite).tolist() if finite else []):
        if not ok:
            entry["nonfinite"] = 1  # the callers report the first step where NaN/Inf appeared
    if grid.final_step == "denoise":
        with torch.no_grad():
            x = counter(x, torch.full((x.shape[0],), sigmas[-1], dtype=x.dtype, device=x.device), labels)
    return x, counter.calls, trace


def _labels(denoiser, seeds: list[int], labels: Tensor | None, dtype, device) -> Tensor | None:
    """Per-seed class labels for a conditional denoiser (drawn when not given), else None."""
    num_classes = spec_of(denoiser).num_classes
    if labels is None and num_classes > 0:
        labels = one_hot_labels(draw_labels(seeds, num_classes), num_classes, dtype=dtype)
    if labels is None:
        return None
    if labels.shape[0] != len(seeds):
        raise ValueError(f"labels has {labels.shape[0]} rows for {len(seeds)} seeds")
    return labels.to(device=device, dtype=dtype)


def sample(denoiser, grid: SigmaGrid | Tensor, solver: Solver, corrector: Corrector | None = None, *,
           seeds: Sequence[int], shape: Sequence[int], final_step: str | None = None,
           batch_size: int | None = None, process: NoiseProcess | None = None,
           dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
           labels: Tensor | None = None, progress: bool = False, observers: Sequence[Observer] = (),
           on_batch: Callable[[list[int], Tensor], None] | None = None) -> SampleResult:
    """Draw one sample per seed along ``grid`` (a SigmaGrid, or sigmas with ``final_step``, default "zero").

    ``labels`` (N, num_classes) are drawn per seed when the denoiser is class-conditional and none are
    given. ``on_batch(seeds, samples)`` is called after each batch (to write shards, say).
    """
    seeds, grid, process = check_seeds(seeds), as_grid(grid, final_step), process or VEProcess()
    batch_size = int(batch_size or len(seeds))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels = _labels(denoiser, seeds, labels, dtype, device)
    prior = float(process.prior_scale(grid.sigmas[0]))
    counter = CountingDenoiser(denoiser)
    outputs, trace, nfe, start = [], [], None, 0
    with tqdm(total=len(seeds), unit="sample", desc=solver.name, disable=not progress) as bar:
        for b, batch_seeds in enumerate(seed_batches(seeds, batch_size)):
            x = initial_noise(batch_seeds, shape, dtype=dtype, device=device) * prior
            batch_labels = None if labels is None else labels[start:start + len(batch_seeds)]
            with torch.no_grad():
                x, calls, batch_trace = integrate(counter, x, grid, solver, corrector, process=process,
                                                  labels=batch_labels, seeds=batch_seeds, batch_index=b,
                                                  observers=observers)
            if nfe is not None and calls != nfe:
                raise RuntimeError(f"NFE differs between batches ({nfe} vs {calls})")
            nfe, start = calls, start + len(batch_seeds)
            outputs.append(x)
            trace.extend(batch_trace)
            if on_batch is not None:
                on_batch(batch_seeds, x)
            bar.update(len(batch_seeds))
    return SampleResult(samples=torch.cat(outputs), seeds=seeds, nfe=int(nfe), grid=grid, labels=labels, trace=trace)
