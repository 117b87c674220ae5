"""Sample shards: one npz per batch of seeds, written atomically, with a checksum.

A shard ``samples/seeds-<first>-<last>.npz`` holds ``seeds`` (int64), ``samples`` (the run's dtype),
``trace`` (the batch's per-step trace as JSON) and ``checksum`` (SHA-256 of seeds and samples). It is
written under a temporary name and renamed, so a process killed at any moment leaves either a whole
shard or none (a leftover ``.tmp-*`` file is never read). A shard whose checksum does not match is
reported and ignored, so its seeds are computed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from steindiff.io import TMP_PREFIX, atomic_open

__all__ = ["shard_path", "write_shard", "read_shard", "valid_shards", "load_samples", "verify_run", "ShardError"]


class ShardError(ValueError):
    """A shard that cannot be read or fails its checksum (its seeds are sampled again)."""


def shard_path(out_dir: str | Path, seeds: list[int]) -> Path:
    return Path(out_dir) / "samples" / f"seeds-{seeds[0]:08d}-{seeds[-1]:08d}.npz"


def _checksum(seeds: np.ndarray, samples: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(seeds, dtype=np.int64).tobytes())
    h.update(str(samples.dtype).encode())
    h.update(np.ascontiguousarray(samples).tobytes())
    return h.hexdigest()


def write_shard(out_dir: str | Path, seeds: list[int], samples: np.ndarray, trace: list[dict] | None = None) -> Path:
    path = shard_path(out_dir, seeds)
    path.parent.mkdir(parents=True, exist_ok=True)
    seeds_arr = np.asarray(seeds, dtype=np.int64)
    with atomic_open(path, "wb") as f:
        np.savez(f, seeds=seeds_arr, samples=samples, trace=np.asarray(json.dumps(trace or [])),
                 checksum=np.asarray(_checksum(seeds_arr, samples)))
    return path


def read_shard(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(seeds, samples, trace) of a shard; ShardError if it is unreadable or fails its checksum."""
    try:
        with np.load(path) as f:
            seeds, samples = f["seeds"], f["samples"]
            trace, checksum = json.loads(str(f["trace"])), str(f["checksum"])
    except Exception as err:  # truncated zip, missing key, bad JSON
        raise ShardError(f"unreadable shard {path}: {type(err).__name__}") from None
    if checksum != _checksum(seeds, samples):
        raise ShardError(f"shard {path} fails its checksum")
    return seeds, samples, trace


def valid_shards(out_dir: str | Path) -> tuple[dict[Path, tuple], list[str]]:
    """Every readable shard of a run folder and the problems found in the others."""
    good, problems = {}, []
    for path in sorted(Path(out_dir, "samples").glob("seeds-*.npz")):
        try:
            good[path] = read_shard(path)
        except ShardError as err:
            problems.append(str(err))
    return good, problems


def load_samples(out_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All valid shards of a run folder, sorted by seed: (seeds, samples)."""
    good, _ = valid_shards(out_dir)
    if not good:
        raise FileNotFoundError(f"no sample shards under {Path(out_dir, 'samples')}")
    seeds = np.concatenate([g[0] for g in good.values()])
    samples = np.concatenate([g[1] for g in good.values()])
    order = np.argsort(seeds, kind="stable")
    return seeds[order], samples[order]


def verify_run(out_dir: str | Path, requested: list[int]) -> dict:
    """Check a run folder against the requested seeds: every seed present exactly once."""
    good, problems = valid_shards(out_dir)
    found = np.concatenate([g[0] for g in good.values()]) if good else np.zeros(0, dtype=np.int64)
    values, counts = np.unique(found, return_counts=True)
    duplicated = values[counts > 1].tolist()
    present = set(values.tolist())
    requested_set = set(requested)
    missing = sorted(requested_set - present)
    extra = sorted(present - requested_set)
    samples_dir = Path(out_dir, "samples")
    leftovers = sorted(p.name for p in samples_dir.glob(TMP_PREFIX + "*")) if samples_dir.exists() else []
    complete = not missing and not duplicated and not extra and not problems
    return {"complete": complete, "requested": len(requested), "present": len(present), "missing": missing,
            "duplicated": duplicated, "unexpected": extra, "bad_shards": problems, "temporary_files": leftovers,
            "shards": len(good)}
