from __future__ import annotations

"""The solver configurations every shared test runs over (name, options, expected global order).

Expected orders are what the convergence test measures on the EDM grid (see its docstring):
they are the textbook orders except where a note says why not.
"""

SOLVER_SPECS = [
    # id, solver name, options, expected order on the EDM grid
    ("euler", "euler", {}, 1),
    ("heun", "heun", {}, 2),
    ("dpmpp_2m", "dpmpp_2m", {"lower_order_final": False}, 2),
    # the reference 3M formula is second order (see steindiff.core.solvers.dpmpp)
    ("dpmpp_3m", "dpmpp_3m", {"lower_order_final": False}, 2),
    ("dpmpp_3m_taylor", "dpmpp_3m", {"lower_order_final": False, "third_order": "taylor"}, 3),
    ("unipc1_bh2", "unipc", {"order": 1, "lower_order_final": False}, 2),
    ("unipc2_bh1", "unipc_bh1", {"order": 2, "lower_order_final": False}, 3),
    ("unipc2_bh2", "unipc", {"order": 2, "lower_order_final": False}, 3),
    ("unipc3_bh1", "unipc_bh1", {"order": 3, "lower_order_final": False}, 4),
    ("unipc3_bh2", "unipc", {"order": 3, "lower_order_final": False}, 4),
    ("unip2_bh2", "unipc", {"order": 2, "use_corrector": False, "lower_order_final": False}, 2),
    ("unip3_bh2", "unipc", {"order": 3, "use_corrector": False, "lower_order_final": False}, 3),
    # fixed equal-step Adams-Bashforth coefficients and a first-order warm-up step: order 2
    ("ipndm2", "ipndm", {"order": 2}, 2),
    ("ipndm3", "ipndm", {"order": 3}, 2),
    ("ipndm4", "ipndm", {"order": 4}, 2),
]

# defaults as users get them (lower-order final steps on) for the behavioural suite
DEFAULT_SPECS = [
    ("euler", {}), ("ddim", {}), ("heun", {}), ("dpmpp_2m", {}), ("dpmpp_3m", {}),
    ("dpmpp_3m", {"third_order": "taylor"}), ("unipc", {}), ("unipc_bh1", {}),
    ("unipc", {"use_corrector": False}), ("ipndm", {}), ("ipndm", {"order": 2}),
]
