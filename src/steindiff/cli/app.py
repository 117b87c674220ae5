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

import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, InstantiationException
from hydra.version import setbase
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from steindiff.errors import CheckpointError, filesystem_message
from steindiff.tracked import tracked_files

__all__ = ["CONF_ENV", "FIRST_MISTAKE", "OVERWRITE_TRACKED_ENV", "USER_ERRORS", "ErrorRules", "added_key_message",
           "conf_dir", "config_folders", "hydra_app", "load_dotenv", "missing_message", "missing_values", "one_line",
           "precheck", "required_hint", "sweep_jobs", "tracked_folder_message",
           "unwritable_folder_message"]

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
    if message.startswith("Config group override must be a string or a list. Got NoneType"):  # logger=null
        message += (": a config group takes an option name, not null (no logger: 'logger=[]'; no corrector or "
                    "metrics: corrector=none, metrics=none)")
    return message


def precheck(prog: str, primary: str | Path, config_name: str, check: Callable[[DictConfig], object] | None,
             shared: str | Path | None = None) -> int | None:
    """Compose the command line before Hydra runs: a mistake is one line and exit 2, and nothing is written.

    Every job of a ``-m`` sweep is composed and checked; the structural checks run once per distinct set of group
    choices and added keys. Refused:
    a bad override, a mandatory value (``???``) left unset (``missing_message``), a top-level key added with
    ``+`` that the config does not have (``added_key_message``), a run or sweep folder holding files tracked
    by git (``tracked_folder_message``), and whatever ``check`` (the app's value checks) raises.
    ``shared``: the folder of the shared groups (replaces the config's own hydra.searchpath).
    Returns 2 after printing the error, or None when the config is fine (or Hydra's own flags are used).
    """
    jobs = sweep_jobs(sys.argv[1:])
    if jobs is None:  # --help, --cfg, --info ...: Hydra's own handling
        return None
    multirun = "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]
    searchpath = [f"hydra.searchpath=[{_quoted(f'file://{Path(shared).resolve()}')}]"] if shared is not None else []
    folders = [Path(primary), *([Path(shared)] if shared is not None else [])]
    try:
        with initialize_config_dir(config_dir=str(Path(primary).resolve()), version_base="1.3"):
            def composed(overrides: list[str]) -> DictConfig:
                # an override of hydra.searchpath given on the command line comes first and wins
                return compose(config_name=config_name, overrides=[*overrides, *searchpath], return_hydra_config=True)

            seen: set[tuple[str, ...]] = set()
            groups: Mapping[str, object] = {}
            for number, overrides in enumerate(jobs):
                shape = _job_shape(overrides, groups)  # the first job's groups: decided before composing
                known = number and shape in seen  # the same groups and added keys as a job checked: values differ
                seen.add(shape)
                cfg = composed(overrides)  # every job: its values go through ``check`` (nfe=4,0)
                choices = dict(cfg.hydra.runtime.choices)
                if not groups:
                    groups = choices
                    seen.add(_job_shape(overrides, groups))
                job = _Job(cfg, overrides, choices, folders, config_name, composed)
                refusal = None if known else job.refusal(
                    folder_key=("hydra.sweep.dir" if multirun else "hydra.run.dir") if number == 0 else None)
                if refusal is None and check is not None:
                    check(job.cfg)
                if refusal is not None:
                    print(f"{prog}: error: {refusal}", file=sys.stderr)
                    return FIRST_MISTAKE
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # ConfigError is a ValueError
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return FIRST_MISTAKE
    return None


def sweep_jobs(argv: list[str]) -> list[list[str]] | None:
    """The override lists of the jobs a command line runs: one without flags, every job of the basic sweeper's
    cartesian product with ``-m``; None with any other flag (``--help``, ``--cfg``: Hydra handles them)."""
    flags = [a for a in argv if a.startswith("-")]
    if not flags:
        return [list(argv)]
    if not set(flags) <= {"-m", "--multirun"}:
        return None
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _job_shape(overrides: list[str], choices: Mapping[str, object]) -> tuple[str, ...]:
    """What decides which keys a job's config has: its group choices and its added or deleted keys."""
    keep = [o for o in overrides if o.startswith(("+", "~")) or o.split("=", 1)[0] in choices]
    return tuple(sorted(keep))


class _Job:
    """One composed job of a command line: its config without the hydra node, and what refuses it."""

    def __init__(self, cfg: DictConfig, overrides: list[str], choices: Mapping[str, object], folders: list[Path],
                 config_name: str, composed: Callable[[list[str]], DictConfig]):
        self.overrides, self.choices, self.folders, self.config_name = overrides, choices, folders, config_name
        self.composed = composed
        # the run folder may name config keys (train: runs/train/${name}): resolve it before the split
        self.run_dir, self.sweep_dir = _resolved(cfg.hydra.run, "dir"), _resolved(cfg.hydra.sweep, "dir")
        with open_dict(cfg):
            cfg.pop("hydra")
        self.cfg = cfg

    def refusal(self, folder_key: str | None) -> str | None:
        """The first structural mistake (missing value, tracked folder, unknown added key), or None."""
        missing = missing_values(self.cfg)
        if missing:
            return missing_message(missing, self.choices, self.folders, self.config_name)
        folder = self.sweep_dir if folder_key == "hydra.sweep.dir" else self.run_dir
        if folder_key is not None and folder is not None:
            refused = unwritable_folder_message(Path(folder), folder_key) or tracked_folder_message(Path(folder),
                                                                                                     folder_key)
            if refused:
                return refused
        return self.unknown_added_key()

    def unknown_added_key(self) -> str | None:
        """``+key=value`` (or ``++``) for a top-level key the config does not have: Hydra would add it, and
        nothing would read it (``+seed=42`` next to ``seeds``)."""
        parsed = OverridesParser.create().parse_overrides(self.overrides)
        added = [o for o in parsed if (o.is_add() or o.is_force_add()) and "." not in o.key_or_group
                 and "/" not in o.key_or_group and o.key_or_group not in self.choices and o.key_or_group != "hydra"]
        if not added:
            return None
        base = self.composed([o.input_line for o in parsed if all(o is not a for a in added)])  # without them
        accepted = sorted(k for k in base if k != "hydra")
        for override in added:
            if override.key_or_group not in accepted:
                return added_key_message(override.input_line, accepted)
        return None


def _resolved(node: DictConfig, key: str) -> str | None:
    """``node[key]`` resolved, or None where it needs the Hydra runtime (``${hydra:...}``: known only as it runs)."""
    try:
        return str(node[key])
    except OmegaConfBaseException:
        return None


def missing_values(cfg: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """The dotted keys of mandatory values (``???``) left unset, in config order; nothing is resolved."""
    found: list[str] = []
    keys = range(len(cfg)) if isinstance(cfg, ListConfig) else list(cfg.keys())
    for key in keys:
        name = f"{prefix}{key}" if isinstance(cfg, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        if OmegaConf.is_missing(cfg, key):
            found.append(name)
        elif not OmegaConf.is_interpolation(cfg, key) and OmegaConf.is_config(cfg[key]):
            found += missing_values(cfg[key], f"{name}.")
    return found


def missing_message(missing: list[str], choices: Mapping[str, object], folders: list[Path], config_name: str) -> str:
    """``denoiser.path is required (a diffusers UNet folder ...): add denoiser.path=<folder>`` for the first
    missing key; what to give is the comment after ``???`` in the config file that left it unset, written
    ``# <placeholder>: what it is`` (see ``required_hint``)."""
    key = missing[0]
    placeholder, what = required_hint(key, choices, folders, config_name)
    message = f"{key} is required" + (f" ({what})" if what else "") + f": add {key}={placeholder}"
    return message + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")


def required_hint(key: str, choices: Mapping[str, object], folders: list[Path], config_name: str) -> tuple[str, str]:
    """(placeholder, description) from the comment on the ``<leaf>: ???`` line of the config files the key
    can come from: the chosen option of its group, the chosen experiment, the app's own config. A comment
    ``# <folder>: a diffusers UNet folder`` gives ("<folder>", "a diffusers UNet folder"); none gives
    ("<value>", "")."""
    top, leaf = key.split(".")[0], key.rsplit(".", 1)[-1].split("[")[0]
    names = [f"{group}/{choices[group]}.yaml" for group in (top, "experiment") if choices.get(group)]
    pattern = re.compile(rf"^\s*{re.escape(leaf)}\s*:\s*['\"]?\?\?\?['\"]?\s*(?:#\s*(.*?))?\s*$", re.MULTILINE)
    for path in (folder / name for name in [*names, f"{config_name}.yaml"] for folder in folders):
        match = pattern.search(path.read_text()) if path.is_file() else None
        if match:
            comment = match.group(1) or ""
            placeholder = re.match(r"(<[^>]+>):?\s*(.*)", comment)
            return (placeholder.group(1), placeholder.group(2)) if placeholder else ("<value>", comment)
    return "<value>", ""


def added_key_message(override: str, accepted: list[str]) -> str:
    """``+seed=42 is not accepted: seed is not a key of this config (did you mean seeds=42?); ...``."""
    key, _, value = override.lstrip("+").partition("=")
    close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}={value}?)" if close else ""
    return (f"{override} is not accepted: {key} is not a key of this config, and a key added with + is read by "
            f"nothing{hint}; accepted top-level keys: {', '.join(accepted)}")


#: set to 1 to let an app write into a run or sweep folder that holds files tracked by git
OVERWRITE_TRACKED_ENV = "STEINDIFF_OVERWRITE_TRACKED"


def tracked_folder_message(folder: Path, key: str) -> str | None:
    """A one-line refusal when ``folder`` holds files tracked by git (committed runs under docs/, say), unless
    $STEINDIFF_OVERWRITE_TRACKED=1; None otherwise (also outside a git work tree or without git)."""
    if os.environ.get(OVERWRITE_TRACKED_ENV) == "1":
        return None
    tracked = tracked_files(folder)
    if not tracked:
        return None
    shown = ", ".join(tracked[:3]) + (f" and {len(tracked) - 3} more" if len(tracked) > 3 else "")
    return (f"{key}={folder} holds {len(tracked)} files tracked by git ({shown}), which this run would overwrite: "
            f"give another {key}=<folder>, or set {OVERWRITE_TRACKED_ENV}=1 to replace them")


def unwritable_folder_message(folder: Path, key: str) -> str | None:
    """A one-line refusal when the run folder cannot be written: it is a file, lies under a file, its records
    (.steindiff/, samples/) are files, another process holds its lock (``steindiff.runfolder.lock_run_folder``),
    or the nearest folder that exists is not writable; None otherwise."""
    path = folder.expanduser().absolute()
    if path.exists() and not path.is_dir():
        return f"{key}={folder} is a file, not a folder: give another {key}=<folder>, or move the file"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{key}={folder} lies under {existing}, which is a file: give another {key}=<folder>"
    for inner in (".steindiff", "samples"):
        if (path / inner).exists() and not (path / inner).is_dir():
            return (f"{key}={folder} holds a file {inner} where the run keeps a folder: move it, or give another "
                    f"{key}=<folder>")
    from steindiff.runfolder import is_rank_zero, lock_holder  # start-up: the apps' run folders

    holder = lock_holder(path) if path.is_dir() and is_rank_zero() else None  # DDP ranks share rank 0's lock
    if holder is not None:
        return (f"{key}={folder} is being written by another steindiff process (pid {holder}): wait for it to "
                f"finish, or give another {key}=<folder>")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing}, where it would be made, is not writable)"
        return f"{key}={folder} is not writable{where}: make it writable, or give another {key}=<folder>"
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
            filesystem = filesystem_message(err)
            if filesystem is not None:  # no space, permission, not a directory: the user's to fix
                print(f"{prog}: error: {filesystem}", file=sys.stderr)
                sys.exit(FIRST_MISTAKE)
            rules = errors() if callable(errors) else errors
            rule = next((rule for kind, rule in rules.items() if isinstance(err, kind)), None)
            if rule is None:
                raise
            print(f"{prog}: {rule[1]}: {one_line(err)}", file=sys.stderr)
            sys.exit(rule[0])

    return task
