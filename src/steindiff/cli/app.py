"""The one entry wrapper of every Hydra app (steindiff-sample, steindiff-train).

    def main() -> int:
        return hydra_app("steindiff-train", "train", run, check=validate)

It reads ``.env`` from the working folder, finds the configs, composes the command line once so that a
bad override or value is one line and exit code 2 (before Hydra creates a run folder), then runs Hydra
and turns the errors a user can cause into one line and an exit code.

Configs ship inside the package: ``steindiff/conf/<app>/<app>.yaml`` with the app's groups, and
``steindiff/conf/shared/`` with the groups every app uses (logger/, trainer/, hydra/launcher/).
``STEINDIFF_CONF=<folder>`` names a folder laid out the same way (``<folder>/<app>/<app>.yaml``,
``<folder>/shared/``) to use instead. Hydra's own flags work as usual: ``--help``, ``--hydra-help``,
``--info``, ``--cfg job``, ``-m``, ``-sc install=bash`` (tab completion).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.errors import HydraException, InstantiationException
from hydra.version import setbase
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from steindiff.errors import CheckpointError

__all__ = ["CONF_ENV", "FIRST_MISTAKE", "USER_ERRORS", "ErrorRules", "conf_dir", "config_folders", "hydra_app",
           "load_dotenv", "one_line", "precheck"]

#: the environment variable naming a config folder to use instead of the package's
CONF_ENV = "STEINDIFF_CONF"
#: a mistake in the command line or a config: one line and this exit code
FIRST_MISTAKE = 2
#: exception type -> (exit code, word in the message), for errors that are the user's to fix
ErrorRules = Mapping[type[BaseException], tuple[int, str]]
#: what every app treats as the user's to fix. The first match wins.
#: ConfigError (the apps' checks), CheckpointError, RunFolderError and the loaders' checks are ValueErrors.
USER_ERRORS: ErrorRules = {
    CheckpointError: (FIRST_MISTAKE, "error"),
    ValueError: (FIRST_MISTAKE, "error"),
    FileNotFoundError: (FIRST_MISTAKE, "error"),
    HydraException: (FIRST_MISTAKE, "error"),  # composition and instantiation
    OmegaConfBaseException: (FIRST_MISTAKE, "error"),  # a mandatory value (???) left unset
}


def conf_dir(app: str) -> Path:
    """The packaged config folder of an app ("sample", "train") or of the shared groups ("shared")."""
    return Path(str(resources.files("steindiff.conf").joinpath(app)))


def config_folders(app: str) -> tuple[Path, Path]:
    """(the app's config folder, the shared groups' folder): the package's, or those in $STEINDIFF_CONF."""
    root = os.environ.get(CONF_ENV)
    if not root:
        return conf_dir(app), conf_dir("shared")
    folder = Path(root).expanduser().resolve()
    primary, shared = folder / app, folder / "shared"
    if not (primary / f"{app}.yaml").is_file() or not shared.is_dir():
        raise ValueError(f"{CONF_ENV}={root} is not accepted: expected a folder laid out like the package's "
                         f"{conf_dir(app).parent} ({app}/{app}.yaml and shared/)")
    return primary, shared


def load_dotenv(path: Path) -> None:
    """Read KEY=VALUE lines of a .env file into os.environ (existing variables win)."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key, value = key.strip().removeprefix("export "), value.strip().strip("'\"")
        if key and value:
            os.environ.setdefault(key, value)


def one_line(err: BaseException) -> str:
    """An error and its cause on one line, without Hydra's search-path, full_key and env-var tails.

    A Hydra "Error in call to target" around a loader's own ValueError is replaced by that error.
    """
    cause = err.__cause__
    if isinstance(err, InstantiationException) and isinstance(cause, ValueError | FileNotFoundError):
        err, cause = cause, None
    message = " ".join(str(err).split()).split(" Config search path")[0]
    message = message.split(", set env var HYDRA_FULL_ERROR")[0]
    if cause is not None and str(cause):
        message = f"{message}: {' '.join(str(cause).split()).split(' full_key:')[0]}"
    return message


def precheck(prog: str, primary: str | Path, config_name: str, check: Callable[[DictConfig], object],
             shared: str | Path | None = None) -> int | None:
    """Compose the command line once before Hydra runs: a bad override or value is one line and exit 2.

    ``shared``: the folder of the shared groups (replaces the config's own hydra.searchpath).
    Returns 2 after printing the error, or None when the config is fine (or multirun/flags are used).
    """
    argv = sys.argv[1:]
    if any(a.startswith("-") for a in argv):  # -m, --help, --cfg ...: Hydra's own handling
        return None
    searchpath = [f"hydra.searchpath=[{_quoted(f'file://{Path(shared).resolve()}')}]"] if shared is not None else []
    try:
        with initialize_config_dir(config_dir=str(Path(primary).resolve()), version_base="1.3"):
            # an override of hydra.searchpath given on the command line comes first and wins
            cfg = compose(config_name=config_name, overrides=[*argv, *searchpath], return_hydra_config=False)
        check(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # ConfigError is a ValueError
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return FIRST_MISTAKE
    return None


def _quoted(text: str) -> str:
    """``text`` as a quoted string of Hydra's override grammar (a path with spaces, commas or quotes)."""
    return "'" + text.replace("'", "\\'") + "'"


def hydra_app(prog: str, config: str, run: Callable[[DictConfig], object],
              check: Callable[[DictConfig], object] | None = None,
              errors: ErrorRules | Callable[[], ErrorRules] | None = None) -> int:
    """Run the Hydra app ``prog`` on the config ``<config>/<config>.yaml``; returns the exit code.

    check: called on the composed config before Hydra starts (the app's validate); raises ValueError.
    errors: exception type -> (exit code, word): an exception of that type raised by ``run`` is printed as
    ``<prog>: <word>: <message>`` on one line and exits with that code; the first matching type wins.
    Default USER_ERRORS; the sampling app puts ``RunInterrupted: (3, "interrupted")`` before them. It may
    be a function returning the mapping, called only when ``run`` raises (for types slow to import).
    Anything else is a bug and keeps its traceback.
    """
    load_dotenv(Path.cwd() / ".env")
    try:
        primary, shared = config_folders(config)
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return FIRST_MISTAKE
    if check is not None:
        refused = precheck(prog, primary, config, check, shared=shared)
        if refused is not None:
            return refused
    # what hydra.main does, with the argument list given here: hydra.main would parse sys.argv itself, and
    # sys.argv must stay as typed (Lightning's DDP re-executes it). _run_hydra is private: hydra-core is pinned <1.4
    setbase("1.3")
    parser = get_args_parser()
    # the shared groups join the search path ahead of the config's own hydra.searchpath (the package's), so
    # --help lists them and completion finds them; a --config-dir given by the user replaces this one
    args = parser.parse_args(["--config-dir", str(shared), *sys.argv[1:]])
    task = _task(prog, run, USER_ERRORS if errors is None else errors)
    _run_hydra(args=args, args_parser=parser, task_function=task, config_path=str(primary), config_name=config)
    return 0


def _task(prog: str, run: Callable[[DictConfig], object],
          errors: ErrorRules | Callable[[], ErrorRules]) -> Callable[[DictConfig], None]:
    """Hydra's task function: ``run(cfg)`` with the user's errors turned into one line and an exit code."""

    def task(cfg: DictConfig) -> None:
        try:
            run(cfg)
        except BaseException as err:
            rules = errors() if callable(errors) else errors
            rule = next((rule for kind, rule in rules.items() if isinstance(err, kind)), None)
            if rule is None:
                raise
            print(f"{prog}: {rule[1]}: {one_line(err)}", file=sys.stderr)
            sys.exit(rule[0])

    return task
