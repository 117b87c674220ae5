"""The app's wiring of the results study's controls (ours): the oracle's data law, the estimator observer and
epsilon scaling (checked in ``steindiff.config``), kept out of ``build.py``
so that its additions there stay a few lines.

The "posterior" oracle (``corrector=oracle``, ``diagnostics.estimator``) needs the exact data law. The app
knows it for the mixture test-beds: a mixture preset denoiser (``denoiser=ring2d``, ``aniso32``: its
``name``, knob-free) and a steindiff checkpoint trained on a mixture preset (``denoiser=ring2d_mlp``,
``aniso32_mlp``: the preset its metadata records). ``corrector.data=<preset>`` names it explicitly.
Anything else is refused in one line that points at ``reference=trajectory``.
"""

from __future__ import annotations

from steindiff.core import EstimatorObserver
from steindiff.core.epsilon_scaling import epsilon_scaled, unscaled
from steindiff.errors import ConfigError

__all__ = ["data_law", "corrector_kwargs", "estimator_observers", "scaled_denoiser", "unscaled", "check_steps"]

_PRESET = "steindiff.core.mixture.mixture_preset"
_CHECKPOINT = "steindiff.models.checkpoint.load_denoiser"


def data_law(cfg) -> str | None:
    """The mixture preset the denoiser's data follow, or None when the app does not know it."""
    node = cfg.get("denoiser") or {}
    target = node.get("_target_")
    if target == _PRESET:
        return node.get("name")
    if target == _CHECKPOINT and node.get("path"):
        from steindiff.models.checkpoint import read_spec, resolve_path  # start-up: only oracle runs need it

        try:
            data = read_spec(resolve_path(node.path)).get("training", {}).get("data", {})
        except (OSError, ValueError):
            return None  # building the denoiser reports an unreadable file in its own words
        return data.get("preset") if data.get("dataset") == "mixture" else None
    return None


def _known_law(cfg, key: str, given) -> str:
    if given is not None:
        return given
    law = data_law(cfg)
    if law is None:
        node = cfg.get("denoiser") or {}
        shown = node.get("name") or node.get("path") or node.get("_target_")
        raise ConfigError(f"{key}=posterior needs the exact data law, which the app knows only for the mixture "
                          f"denoisers (ring2d, aniso32 and the MLPs trained on them), not for {shown}: use "
                          f"{key}=trajectory")
    return law


def corrector_kwargs(cfg) -> dict:
    """Extra arguments of the corrector: the data law of a reference=posterior oracle corrector given
    ``data: null`` (the denoiser's law)."""
    node = cfg.get("corrector") or {}
    if not str(node.get("_target_", "")).endswith(".OracleCorrector") or node.get("reference") != "posterior":
        return {}
    return {"data": _known_law(cfg, "corrector.reference", node.get("data"))}


def estimator_observers(cfg) -> list:
    """[EstimatorObserver] when ``diagnostics.estimator`` is on, else []."""
    diag = cfg.diagnostics
    if not diag.get("estimator"):
        return []
    reference = diag.estimator_reference
    data = _known_law(cfg, "diagnostics.estimator_reference", None) if reference == "posterior" else None
    try:
        return [EstimatorObserver(reference=reference, data=data, target=diag.estimator_target,
                                  statistics=diag.estimator_statistics, num_probes=diag.estimator_probes)]
    except ValueError as err:
        raise ConfigError(f"diagnostics.estimator: {err}") from None


def scaled_denoiser(cfg, denoiser):
    """The denoiser with ``epsilon_scaling`` applied (itself when null or 1; the value is checked by
    ``steindiff.config.check_values``)."""
    return epsilon_scaled(denoiser, cfg.get("epsilon_scaling"))


def check_steps(corrector, num_steps: int, grid=None, solver=None) -> None:
    """A one-line ConfigError when the corrector's per-step values do not fit the run's steps (``constant``) or its
    sigma grid and solver (``calibrated``), before anything is written."""
    try:
        check = getattr(corrector, "check_steps", None)
        if check is not None:
            check(num_steps)
        check_run = getattr(corrector, "check_run", None)
        if check_run is not None and grid is not None:
            check_run(grid, solver)
    except ValueError as err:
        raise ConfigError(f"corrector: {err}") from None
