"""PF-ODE solvers, one family per module, one step interface (``base``)."""

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
    "SOLVERS", "make_solver", "num_steps_for_nfe",
]
