"""Trajectory error against a high-accuracy solution of the same ODE."""

import pytest
import torch

from steindiff.core import GaussianData, build_sigmas, initial_noise, make_solver, mixture_preset, sample
from steindiff.metrics import TrajectoryError, reference_solution


def test_reference_solution_matches_the_closed_form():
    data = GaussianData.random(dim=3, seed=1)
    seeds = list(range(32))
    ref = reference_solution(data, seeds, (3,), sigma_min=0.01, final_step="sigma_min", num_steps=256)
    x0 = initial_noise(seeds, (3,), dtype=torch.float64) * 80.0
    exact = data.solution(x0, 80.0, 0.01)
    assert float((ref - exact).norm(dim=1).max()) < 1e-3


def test_trajectory_error_shrinks_with_steps_and_matches_direct_computation():
    data = mixture_preset("ring2d")
    seeds = list(range(200))
    ref = reference_solution(data, seeds, (2,))
    errors = []
    for steps in (4, 8, 32):
        x = sample(data, build_sigmas("edm", steps, "zero"), make_solver("heun"), seeds=seeds, shape=(2,),
                   dtype=torch.float64).samples
        metric = TrajectoryError()
        for chunk in range(0, 200, 64):  # several updates equal one
            metric.update(x[chunk:chunk + 64], ref[chunk:chunk + 64])
        direct = (x - ref).norm(dim=1)
        assert float(metric.compute()) == pytest.approx(float(direct.mean()), rel=1e-12)
        summary = metric.summary()
        assert summary["q0.5"] == pytest.approx(float(direct.quantile(0.5)), rel=1e-12)
        errors.append(summary["mean"])
    assert errors[0] > errors[1] > errors[2]
    with pytest.raises(ValueError, match="differ in shape"):
        TrajectoryError().update(torch.zeros(3, 2), torch.zeros(3, 3))
