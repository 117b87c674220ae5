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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from steindiff.io import atomic_write_text

__all__ = ["RECORD_DIR", "RunFolderError", "claim_run_folder", "comparable_config", "flatten", "is_rank_zero",
           "read_record"]

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
    return json.loads(path.read_text()) if path.is_file() else None


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
    saved = read_record(out_dir, record)
    if saved is not None and (binding is None or (out_dir / binding).exists()):
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


def _refuse_changes(out_dir: Path, saved: dict, current: dict, kind: str, hint: str) -> None:
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if not differing:
        return
    shown = ", ".join(f"{k} ({saved.get(k)!r} -> {current.get(k)!r})" for k in differing[:_SHOWN])
    more = f" and {len(differing) - _SHOWN} more" if len(differing) > _SHOWN else ""
    raise RunFolderError(f"{out_dir} holds {kind} with another configuration: {shown}{more}; {hint}")
