"""One run folder, one configuration: claim a folder for a run, refuse a folder holding another one.

Both apps record what they compute in ``<run folder>/.steindiff/<record>`` (``run.json`` for sampling,
with the requested seeds; ``train.json`` for training) before they write anything else. Rerunning in the
same folder resumes; a configuration that differs in a key that changes the result is refused in one line
naming the keys. Keys that do not change the result (logger, device count, ...) are the caller's
``resumable_keys`` and may change between attempts.

    claim_run_folder(out_dir, "run.json", OmegaConf.to_container(cfg), SAMPLE_RESUMABLE_KEYS,
                     extra={"seeds": seeds}, orphans="samples/seeds-*.npz", stale=("results.json",))
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from steindiff.io import atomic_write_text

__all__ = ["LOCK_FILE", "RECORD_DIR", "RunFolderError", "claim_run_folder", "comparable_config", "flatten",
           "is_rank_zero", "lock_holder", "lock_run_folder", "read_record", "update_record"]

#: the folder inside a run folder that holds the records
RECORD_DIR = ".steindiff"
_SHOWN = 6  # differing keys named in the message; the rest are counted


class RunFolderError(ValueError):
    """A run folder that holds another run: one line naming the folder and the differing keys."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}. A flat mapping comes back unchanged (empty sub-mappings vanish)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def comparable_config(config: Mapping[str, Any], resumable_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The flattened config without the resumable top-level keys, as JSON would give it back."""
    resumable = set(resumable_keys)
    kept = {k: v for k, v in flatten(config).items() if k.split(".", 1)[0] not in resumable}
    return json.loads(json.dumps(kept, default=str))  # tuples -> lists, paths -> str: compares with a record


def read_record(out_dir: str | Path, record: str) -> dict[str, Any] | None:
    """The record ``<out_dir>/.steindiff/<record>`` as written by claim_run_folder, or None."""
    path = Path(out_dir, RECORD_DIR, record)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path} is not a readable run record (truncated or edited: {err})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise RunFolderError(f"{path} is not a run record (expected a JSON object with a config)")
    return saved


def update_record(out_dir: str | Path, record: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``fields`` to the record ``<out_dir>/.steindiff/<record>`` (sampling: the run's ``fingerprint``), written
    atomically; returns the new record. The record must exist (claim_run_folder wrote it)."""
    body = {**(read_record(out_dir, record) or {}), **fields}
    atomic_write_text(Path(out_dir, RECORD_DIR, record), json.dumps(body, default=str))
    return body


def is_rank_zero() -> bool:
    """Whether this process is the global rank 0 (the variables Lightning reads, in its order)."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(name) is not None:
            return int(os.environ[name]) == 0
    return True


def claim_run_folder(out_dir: str | Path, record: str, config: Mapping[str, Any],
                     resumable_keys: Iterable[str] = (), extra: Mapping[str, Any] | None = None, *,
                     binding: str | None = None, orphans: str | None = None, stale: Iterable[str] = (),
                     kind: str = "a run", hint: str = "use a new folder (hydra.run.dir=...)") -> dict[str, Any]:
    """Refuse ``out_dir`` if it holds a run of another configuration, else record this one in it.

    config: the run's config as a (nested or flat) mapping; it is flattened and ``resumable_keys``
    (top-level keys) are dropped before the comparison. extra: more JSON stored in the record (the seeds).
    binding: a path inside ``out_dir`` without which an earlier record does not bind (training:
    ``checkpoints/last.ckpt``: a run that never saved a checkpoint may change its config).
    orphans: a glob inside ``out_dir`` whose matches without a record are refused (sampling's shards).
    stale: files of an earlier attempt removed after the claim (sampling's results.json).
    Only rank 0 writes; every rank checks. Returns the comparable config that was recorded.
    """
    out_dir = Path(out_dir)
    current = comparable_config(config, resumable_keys)
    try:
        saved = read_record(out_dir, record)
    except RunFolderError as err:
        if wrote_before(out_dir, binding, orphans):
            raise RunFolderError(f"{err}; what the folder holds cannot be matched to a configuration: {hint}") from None
        saved = None  # a damaged record of a run that wrote nothing: replaced below
    # a record binds once the run wrote something: a start that failed before its first shard (or checkpoint)
    # leaves a record that the corrected command may replace
    if saved is not None and wrote_before(out_dir, binding, orphans):
        _refuse_changes(out_dir, saved["config"], current, kind, hint)
    elif saved is None and orphans is not None and any(out_dir.glob(orphans)):
        raise RunFolderError(f"{out_dir} holds {orphans.split('/', 1)[0]} but no run record "
                             f"({RECORD_DIR}/{record}); refusing to mix")
    if is_rank_zero():
        (out_dir / RECORD_DIR).mkdir(parents=True, exist_ok=True)
        body = {"config": current, **(extra or {})}
        atomic_write_text(out_dir / RECORD_DIR / record, json.dumps(body, default=str))
        for name in stale:
            (out_dir / name).unlink(missing_ok=True)
    return current


def wrote_before(out_dir: Path, binding: str | None, orphans: str | None) -> bool:
    """Whether an earlier run in ``out_dir`` wrote what binds its record: the ``binding`` file and a file
    matching ``orphans`` (shards), where given."""
    return (binding is None or (out_dir / binding).exists()) and (orphans is None or any(out_dir.glob(orphans)))


#: the lock file a run holds while it writes its folder (``lock_run_folder``)
LOCK_FILE = "lock"


@contextmanager
def lock_run_folder(out_dir: str | Path, hint: str = "give another hydra.run.dir=<folder>") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<out_dir>/.steindiff/lock`` for the block: a second process on the same
    folder is refused in one line (RunFolderError) instead of mixing its files in. The lock goes with the
    process (exit, kill): nothing stale is left. Only the launching process (rank 0) takes it: the ranks
    Lightning starts share the run."""
    import fcntl  # start-up: POSIX only; the apps run on Linux and macOS

    path = Path(out_dir) / RECORD_DIR / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open for the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise RunFolderError(f"{out_dir} is being written by another steindiff process (pid {holder}): wait for "
                                 f"it to finish, or {hint}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def lock_holder(out_dir: str | Path) -> str | None:
    """The pid (as written) of the process holding ``out_dir``'s lock, or None when the folder is free; takes
    and drops the lock at once and creates nothing (the apps ask before Hydra writes into the folder)."""
    import fcntl  # start-up: POSIX only

    path = Path(out_dir) / RECORD_DIR / LOCK_FILE
    if not path.is_file():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
    return None


def _refuse_changes(out_dir: Path, saved: dict, current: dict, kind: str, hint: str) -> None:
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if not differing:
        return
    shown = ", ".join(f"{k} ({saved.get(k)!r} -> {current.get(k)!r})" for k in differing[:_SHOWN])
    more = f" and {len(differing) - _SHOWN} more" if len(differing) > _SHOWN else ""
    raise RunFolderError(f"{out_dir} holds {kind} with another configuration: {shown}{more}; {hint}")
