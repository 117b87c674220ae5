"""PF-ODE solvers, one family per module, one step interface (``base``).

``SOLVERS`` is the registry, and the shared test suite (tests/test_solvers.py,
tests/test_solver_convergence.py) takes its list from it: a registered solver is run with its
defaults and with each option set in ``VARIANTS``, and is expected to converge at its
``global_order()``.
"""

from typing import Any

from .base import Solver, SolverState, StepOutput, effective_data_prediction, transport
from .dpmpp import DPMSolverPP
from .euler import DDIMSolver, EulerSolver
from .heun import HeunSolver
from .ipndm import IPNDMSolver
from .unipc import UniPCSolver

#: name -> factory; the names users type.
SOLVERS = {
    "euler": EulerSolver,
    "ddim": EulerSolver,
    "heun": HeunSolver,
    "dpmpp_2m": lambda **kw: DPMSolverPP(order=2, **kw),
    "dpmpp_3m": lambda **kw: DPMSolverPP(order=3, **kw),
    "unipc": UniPCSolver,
    "unipc_bh1": lambda **kw: UniPCSolver(variant="bh1", **kw),
    "unipc_bh2": lambda **kw: UniPCSolver(variant="bh2", **kw),
    "ipndm": IPNDMSolver,
}

#: name -> documented option sets worth testing besides the defaults; the shared test suite runs
#: each registered name with ``{}`` and with every option set listed here.
VARIANTS: dict[str, tuple[dict[str, Any], ...]] = {
    "dpmpp_3m": ({"third_order": "taylor"},),
    "unipc": ({"order": 1}, {"order": 2}, {"use_corrector": False},
              {"order": 2, "use_corrector": False}),
    "unipc_bh1": ({"order": 1}, {"order": 2}),
    "ipndm": ({"order": 1}, {"order": 2}, {"order": 3}),
}


def num_steps_for_nfe(solver: Solver, nfe: int, final_step: str = "zero") -> int:
    """The most steps whose exact NFE fits in the budget ``nfe`` (at least one step)."""
    if int(nfe) != nfe or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    if solver.nfe(1, final_step) > nfe:
        raise ValueError(f"{solver.name} with final_step {final_step!r} needs at least "
                         f"{solver.nfe(1, final_step)} NFE, budget is {nfe}")
    steps = 1
    while solver.nfe(steps + 1, final_step) <= nfe:
        steps += 1
    return steps


def make_solver(name: str, **kwargs) -> Solver:
    """Build a solver by name (one of ``SOLVERS``) with its options."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; accepted: {', '.join(sorted(SOLVERS))}")
    try:
        return SOLVERS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for solver {name!r}: {err}") from None


__all__ = [
    "Solver", "SolverState", "StepOutput", "transport", "effective_data_prediction",
    "EulerSolver", "DDIMSolver", "HeunSolver", "DPMSolverPP", "UniPCSolver", "IPNDMSolver",
    "SOLVERS", "VARIANTS", "make_solver", "num_steps_for_nfe",
]
