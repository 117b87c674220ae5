"""The solver configurations every shared test runs over, taken from the registry.

Every name in ``steindiff.core.solvers.SOLVERS`` is run with its defaults and with each option set
that ``VARIANTS`` lists for it, so registering a solver puts it through the shared suite. The
expected convergence order is the solver's own ``global_order()`` (``order`` unless it says
otherwise); tests/test_solver_convergence.py pins the measured orders of the known variants.
"""

from __future__ import annotations

from steindiff.core.solvers import SOLVERS, VARIANTS


def spec_id(name: str, options: dict) -> str:
    """A test id: the registry name, then the options as key=value."""
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


def behaviour_specs(registry=SOLVERS, variants=VARIANTS) -> list[tuple[str, dict]]:
    """(name, options) for every registered name: defaults first, then its listed variants."""
    return [(name, dict(options)) for name in registry for options in ({}, *variants.get(name, ()))]


def convergence_specs(registry=SOLVERS, variants=VARIANTS) -> list[tuple[str, str, dict, int]]:
    """(id, name, options, expected order): the behaviour specs with ``lower_order_final`` off
    where the solver has it (a first-order last step would cap the global order)."""
    specs = []
    for name, options in behaviour_specs(registry, variants):
        solver = registry[name](**options)
        run_options = dict(options)
        if hasattr(solver, "lower_order_final"):
            run_options["lower_order_final"] = False
            solver = registry[name](**run_options)
        specs.append((spec_id(name, options), name, run_options, solver.global_order()))
    return specs


# defaults as users get them (lower-order final steps on) for the behavioural suite
DEFAULT_SPECS = behaviour_specs()
# (id, solver name, options, expected order on the EDM grid) for the convergence suite
SOLVER_SPECS = convergence_specs()
