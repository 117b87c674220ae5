"""The sampling loop over (denoiser, sigma grid, solver, corrector).

    result = sample(denoiser, sigmas, solver, seeds=range(64), shape=(2,))
    result.samples      # (64, 2)
    result.nfe          # measured by counting denoiser calls
    result.trace        # one dict per step and batch: sigma, nfe so far, corrector numbers

The state is kept in EDM coordinates (x_hat = x / alpha). The initial state is
``process.prior_scale(sigma_max) * noise`` (sigma_max * eps for VE; eps / alpha for VP), with the
noise drawn per seed (``steindiff.core.noise``). With batch-independent denoisers and a corrector
that does not couple samples, results do not depend on ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .correctors import Corrector, NoCorrector, StepContext
from .denoiser import CountingDenoiser, DenoiserOutputError
from .noise import check_seeds, initial_noise
from .processes import NoiseProcess, VEProcess
from .schedules import check_sigmas
from .solvers.base import Solver

__all__ = ["SampleResult", "sample", "integrate"]


@dataclass
class SampleResult:
    samples: Tensor  # (N, *shape), in the order of ``seeds``
    seeds: list[int]
    nfe: int  # measured denoiser evaluations per trajectory
    sigmas: Tensor  # the grid, float64
    final_step: str
    labels: Tensor | None = None  # (N, num_classes) when the denoiser is conditional
    trace: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-friendly summary (no tensors)."""
        return {
            "num_samples": len(self.seeds),
            "nfe": self.nfe,
            "final_step": self.final_step,
            "num_steps": len(self.sigmas) - 1,
            "sigmas": [float(s) for s in self.sigmas],
        }


def integrate(denoiser, x: Tensor, sigmas: Tensor, solver: Solver, corrector: Corrector | None = None,
              *, final_step: str = "zero", process: NoiseProcess | None = None,
              labels: Tensor | None = None, seeds: Sequence[int] | None = None,
              batch_index: int = 0) -> tuple[Tensor, int, list[dict]]:
    """Integrate one batch from x at sigmas[0] along the grid; returns (x, nfe, trace).

    ``x`` is the state at sigmas[0] (already scaled). The denoiser is wrapped in a counter, so the
    NFE returned is measured.
    """
    check_sigmas(sigmas, final_step)
    corrector = corrector or NoCorrector()
    process = process or VEProcess()
    counter = denoiser if isinstance(denoiser, CountingDenoiser) else CountingDenoiser(denoiser)
    counter.reset()
    grid = [float(s) for s in sigmas]
    num_steps = len(grid) - 1
    alphas = process.alpha_of_sigma(sigmas.double()).tolist()
    state = solver.init_state(num_steps)
    seed_tensor = None if seeds is None else torch.as_tensor(list(seeds), dtype=torch.int64)
    trace: list[dict] = []
    finite: list[Tensor] = []
    for i in range(num_steps):
        sigma, sigma_next = grid[i], grid[i + 1]

        def step_fn(x_, rows=None, _sigma=sigma, _sigma_next=sigma_next, _state=state):
            if rows is None:
                return solver.step(counter, x_, _sigma, _sigma_next, _state, labels)
            rows_labels = None if labels is None else labels[rows]
            return solver.step(counter, x_, _sigma, _sigma_next, _state.select(rows), rows_labels)

        try:
            if corrector.requires_grad:
                with torch.enable_grad():
                    x_in = x.detach().requires_grad_(True)
                    output = step_fn(x_in)
            else:
                x_in = x
                output = step_fn(x)
            context = StepContext(index=i, num_steps=num_steps, sigma=sigma, sigma_next=sigma_next,
                                  alpha=alphas[i], alpha_next=alphas[i + 1], process=process,
                                  step_fn=step_fn, labels=labels, seeds=seed_tensor, counter=counter)
            x_next, info = corrector.correct(x_in, output, context)
        except DenoiserOutputError as err:
            raise DenoiserOutputError(f"{err} at step {i} (sigma {sigma:.4g})") from None
        x = x_next.detach()
        state = output.state.detach() if corrector.requires_grad else output.state
        trace.append({"batch": batch_index, "step": i, "sigma": sigma, "sigma_next": sigma_next,
                      "nfe": counter.calls, **info})
        finite.append(torch.isfinite(x).all())  # read once after the loop: no device sync per step
    for entry, ok in zip(trace, torch.stack(finite).tolist() if finite else []):
        if not ok:
            entry["nonfinite"] = 1  # the callers report the first step where NaN/Inf appeared
    if final_step == "denoise":
        with torch.no_grad():
            x = counter(x, torch.full((x.shape[0],), grid[-1], dtype=x.dtype, device=x.device), labels)
    return x, counter.calls, trace


def sample(denoiser, sigmas: Tensor, solver: Solver, corrector: Corrector | None = None, *,
           seeds: Sequence[int], shape: Sequence[int], final_step: str = "zero",
           batch_size: int | None = None, process: NoiseProcess | None = None,
           dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
           labels: Tensor | None = None, progress: bool = False,
           on_batch: Callable[[list[int], Tensor], None] | None = None) -> SampleResult:
    """Draw one sample per seed. ``labels`` (N, num_classes) are drawn per seed when the
    denoiser is class-conditional and none are given. ``on_batch(seeds, samples)`` is called after
    each batch (to write shards, say)."""
    seeds = check_seeds(seeds)
    check_sigmas(sigmas, final_step)
    process = process or VEProcess()
    batch_size = int(batch_size or len(seeds))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    num_classes = int(getattr(denoiser, "num_classes", 0) or 0)
    if labels is None and num_classes > 0:
        from .adaptors import draw_labels, one_hot_labels

        labels = one_hot_labels(draw_labels(seeds, num_classes), num_classes, dtype=dtype)
    if labels is not None:
        labels = labels.to(device=device, dtype=dtype)
        if labels.shape[0] != len(seeds):
            raise ValueError(f"labels has {labels.shape[0]} rows for {len(seeds)} seeds")
    prior = float(process.prior_scale(sigmas[0].double()))
    counter = CountingDenoiser(denoiser)
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(seeds), unit="sample", desc=f"{solver.name}")
    outputs, trace, nfe = [], [], None
    try:
        for b, batch_seeds in enumerate(batches):
            start = b * batch_size
            x = initial_noise(batch_seeds, shape, dtype=dtype, device=device) * prior
            batch_labels = None if labels is None else labels[start:start + len(batch_seeds)]
            with torch.no_grad():
                x, calls, batch_trace = integrate(counter, x, sigmas, solver, corrector,
                                                  final_step=final_step, process=process,
                                                  labels=batch_labels, seeds=batch_seeds, batch_index=b)
            if nfe is not None and calls != nfe:
                raise RuntimeError(f"NFE differs between batches ({nfe} vs {calls})")
            nfe = calls
            outputs.append(x)
            trace.extend(batch_trace)
            if on_batch is not None:
                on_batch(batch_seeds, x)
            if bar is not None:
                bar.update(len(batch_seeds))
    finally:
        if bar is not None:
            bar.close()
    return SampleResult(samples=torch.cat(outputs), seeds=seeds, nfe=int(nfe), sigmas=sigmas.double(),
                        final_step=final_step, labels=labels, trace=trace)
