"""The app's wiring of the results study's controls (ours): the oracle's data law, the estimator observer and
epsilon scaling (checked in ``steindiff.config``), kept out of ``build.py``
so that its additions there stay a few lines.

The "posterior" oracle (``corrector=oracle``, ``diagnostics.estimator``) needs the exact data law. The app
knows it for the mixture test-beds: a mixture preset denoiser (``denoiser=ring2d``, ``aniso32``: its
``name``, knob-free) and a steindiff checkpoint trained on a mixture preset (``denoiser=ring2d_mlp``,
``aniso32_mlp``: the preset its metadata records). ``corrector.data=<preset>`` names it explicitly.
Anything else is refused in one line that points at ``reference=trajectory``.

``diagnostics.estimator_correctors`` (ours) names Stein estimator variants the observer reads at each step
("stein_estimate[name]" in the trace) instead of its single default estimate: corrector config options
(``[stein,stein_renoised]``, each composed from conf/sample/corrector/<option>.yaml as ``corrector=<option>``
composes it), or ``{name: option}``, or ``{name: {corrector: option, <key>: <value>, ...}}`` (the option's
keys overridden, as ``corrector.<key>=<value>`` would), or ``{name: {_target_: ..., ...}}`` (a corrector
config given whole).
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from steindiff.core import EstimatorObserver, OracleCorrector, SteinCorrector
from steindiff.core.epsilon_scaling import epsilon_scaled, unscaled
from steindiff.errors import ConfigError
from steindiff.instantiation import built

__all__ = ["data_law", "corrector_kwargs", "estimator_correctors", "estimator_observers", "scaled_denoiser",
           "unscaled", "check_steps"]

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
    """[EstimatorObserver] when ``diagnostics.estimator`` is on or estimators are named, else []. With
    ``diagnostics.estimator_correctors`` the observer reads those named Stein estimators (``estimator_correctors``);
    ``estimator_target`` and ``estimator_statistics`` then set the oracle's reading and statistics only (each named
    estimator has its own)."""
    diag = cfg.diagnostics
    if not diag.get("estimator") and not diag.get("estimator_correctors"):  # naming estimators switches it on
        return []
    reference = diag.estimator_reference
    data = _known_law(cfg, "diagnostics.estimator_reference", None) if reference == "posterior" else None
    correctors = estimator_correctors(diag.get("estimator_correctors"))
    try:
        return [EstimatorObserver(reference=reference, data=data, target=diag.estimator_target,
                                  statistics=diag.estimator_statistics, num_probes=diag.estimator_probes,
                                  correctors=correctors or None)]
    except ValueError as err:
        raise ConfigError(f"diagnostics.estimator: {err}") from None


_CORRECTORS_KEY = "diagnostics.estimator_correctors"


def estimator_correctors(value) -> dict:
    """{name: corrector} of ``diagnostics.estimator_correctors`` (module docstring); {} when null or empty.

    Every corrector is built from its config (``_target_``) as ``corrector=<option>`` builds it, and must be a Stein
    estimator (a ``SteinCorrector``, the oracle excepted: the observer records it as "oracle_gamma"). A mistake is
    a one-line ConfigError naming the key."""
    if isinstance(value, str):  # estimator_correctors=stein: one option
        value = [value]
    if value is None or (isinstance(value, ListConfig | list | tuple | DictConfig | dict) and not value):
        return {}
    if isinstance(value, ListConfig | list | tuple):
        names = list(value)
        bad = next((n for n in names if not isinstance(n, str) or not n), None)
        if bad is not None or len(set(names)) < len(names):
            shown = f"{bad!r} is not an option name" if bad is not None else "an option is named twice"
            raise ConfigError(f"{_CORRECTORS_KEY}: {shown}; expected corrector options such as [stein,stein_renoised]"
                              f" (or {{name: option}} to name them)")
        specs = {n: n for n in names}
    elif isinstance(value, DictConfig | dict):
        specs = dict(value.items())
    else:
        raise ConfigError(f"{_CORRECTORS_KEY}={value!r} is not accepted: expected a list of corrector options such "
                          "as [stein,stein_renoised], or {name: option}")
    estimators = {}
    for name, spec in specs.items():
        key = f"{_CORRECTORS_KEY}.{name}"
        node = _estimator_config(key, spec)
        cls = _target_class(key, node)
        if not _is_stein_estimator(cls):
            why = " (the observer records the oracle as oracle_gamma)" if issubclass(cls, OracleCorrector) else ""
            raise ConfigError(f"{key}: {node.get('_target_')} is not a Stein estimator{why}; accepted options: "
                              f"{', '.join(_stein_options())}, or a config whose _target_ is a SteinCorrector")
        estimators[str(name)] = built(key, node)
    return estimators


def _estimator_config(key: str, spec) -> DictConfig:
    """The corrector config of one named estimator: an option's file, with overrides, or a config given whole."""
    if isinstance(spec, str):
        return _option_config(key, spec)
    if not isinstance(spec, DictConfig | dict):
        raise ConfigError(f"{key}={spec!r} is not accepted: expected a corrector option (stein), "
                          "{corrector: <option>, <key>: <value>} or a config with _target_")
    spec = OmegaConf.create(OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else spec)
    if "_target_" in spec:
        return spec
    option = spec.pop("corrector", None)
    if not isinstance(option, str):
        raise ConfigError(f"{key}: a config without _target_ names the option it overrides, e.g. "
                          "{corrector: stein, shrinkage: true}")
    node = _option_config(key, option)
    OmegaConf.set_struct(node, False)  # a key the file lacks goes to the constructor, which decides
    return OmegaConf.merge(node, spec)


def _corrector_folder() -> Path:
    """conf/sample/corrector/ of the configs in use: the package's, or $STEINDIFF_CONF's."""
    from steindiff.cli.app import config_folders  # start-up: only runs naming estimators need it

    return Path(config_folders("sample")[0]) / "corrector"


def _compose_option(option: str) -> DictConfig:
    """conf/sample/corrector/<option>.yaml composed by Hydra as ``corrector=<option>`` composes it (its defaults list
    included), also while an app's Hydra is initialised (its state is set aside and restored)."""
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(_corrector_folder().resolve()), version_base="1.3"):
            return compose(config_name=option)
    finally:
        restore_gh_from_backup(backup)


def _option_config(key: str, option: str) -> DictConfig:
    if option not in _options():
        raise ConfigError(f"{key}: no corrector option {option!r}; accepted: {', '.join(_stein_options())} (the Stein "
                          f"estimators in conf/sample/corrector/)")
    return _compose_option(option)


def _options() -> list[str]:
    return sorted(p.stem for p in _corrector_folder().glob("*.yaml"))


def _target_class(key: str, node) -> type:
    try:
        return get_class(str(node.get("_target_")))
    except (ImportError, ValueError) as err:
        raise ConfigError(f"{key}: _target_ {node.get('_target_')!r} does not name a class: "
                          f"{' '.join(str(err).split())}") from None


def _stein_options() -> list[str]:
    """The corrector options that build a Stein estimator (for the messages)."""
    accepted = []
    for option in _options():
        try:
            cls = _target_class(option, _compose_option(option))
        except Exception:  # noqa: BLE001  (a file that does not compose is simply not listed)
            continue
        if _is_stein_estimator(cls):
            accepted.append(option)
    return accepted


def _is_stein_estimator(cls: type) -> bool:
    """A SteinCorrector that estimates gamma (the oracle subclasses it but knows the answer)."""
    return issubclass(cls, SteinCorrector) and not issubclass(cls, OracleCorrector)


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
