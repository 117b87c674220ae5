"""Sample shards: one npz per batch of seeds, written atomically, with checksums and a fingerprint.

A shard ``samples/seeds-<first>-<last>.npz`` holds ``seeds`` (int64), ``samples`` (the run's dtype),
``checksum`` (SHA-256 of seeds and samples), ``nfe`` (the measured NFE per trajectory, final denoising call
included), ``fingerprint`` (``batch_fingerprint``: the run that made it and the batch's seeds), the batch's
per-step trace as numbers (``steindiff.tracecodec``: a constant or evenly spaced column is two numbers, any
other column one float64/int64 array) and ``meta_checksum`` (SHA-256 of nfe, fingerprint and trace).
It is written under a temporary name and renamed, so a process killed at any moment leaves either a whole
shard or none (a leftover ``.tmp-*`` file is never read). A shard whose checksums do not match is reported
and ignored, so its seeds are computed again.

The run's fingerprint (``run_fingerprint``) hashes its comparable config (the record's: the resolved choices
minus the resumable keys) with its denoiser's weights; the run record keeps it, every shard carries it
combined with its seeds, and ``verify_run`` accepts only the shards of the run's own batches that carry it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from steindiff.io import TMP_PREFIX, atomic_open
from steindiff.tracecodec import decode_trace, encode_trace

__all__ = ["shard_path", "write_shard", "read_shard", "valid_shards", "load_samples", "verify_run", "ShardError",
           "Shard", "run_fingerprint", "batch_fingerprint", "expected_shards", "set_aside", "shard_traces",
           "trace_summary", "samples_digest", "results_checksum", "SET_ASIDE_DIR"]

#: where a run moves files it will not use (shards of another run, unknown files in samples/): never deleted
SET_ASIDE_DIR = "samples-set-aside"


class ShardError(ValueError):
    """A shard that cannot be read or fails its checksum (its seeds are sampled again)."""


class Shard(NamedTuple):
    """A shard's contents (indexable as (seeds, samples, trace) like the earlier 3-tuple)."""

    seeds: np.ndarray
    samples: np.ndarray | None
    trace: list[dict]
    nfe: int | None
    fingerprint: str
    checksum: str  # of seeds and samples ("" when the samples were not read)


def shard_path(out_dir: str | Path, seeds: list[int]) -> Path:
    return Path(out_dir) / "samples" / f"seeds-{seeds[0]:08d}-{seeds[-1]:08d}.npz"


def expected_shards(seeds: list[int], batch_size: int) -> dict[str, list[int]]:
    """File name -> seeds of every batch of a run (``seed_batches``' layout: consecutive batches)."""
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    return {shard_path(".", b).name: b for b in batches}


def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def run_fingerprint(config: dict | None, weights: str) -> dict[str, str]:
    """{"config": sha of the comparable config, "weights": the weights hash, "run": both together}."""
    config_sha = _sha(json.dumps(config, sort_keys=True, default=str))
    return {"config": config_sha, "weights": weights, "run": _sha(config_sha, weights)}


def batch_fingerprint(run: str, seeds) -> str:
    """A shard's fingerprint: the run's (``run_fingerprint(...)["run"]``) and the batch's seeds."""
    return _sha(run, np.ascontiguousarray(seeds, dtype=np.int64).tobytes())


def _checksum(seeds: np.ndarray, samples: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(seeds, dtype=np.int64).tobytes())
    h.update(str(samples.dtype).encode())
    h.update(np.ascontiguousarray(samples).tobytes())
    return h.hexdigest()


def _meta_checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{value.dtype}:{value.shape}:".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def write_shard(out_dir: str | Path, seeds: list[int], samples: np.ndarray, trace: list[dict] | None = None, *,
                nfe: int | None = None, fingerprint: str = "") -> Path:
    """Write one batch's shard atomically; ``nfe`` and ``fingerprint`` as the module docstring says."""
    path = shard_path(out_dir, seeds)
    path.parent.mkdir(parents=True, exist_ok=True)
    seeds_arr = np.asarray(seeds, dtype=np.int64)
    meta = {"nfe": np.asarray(-1 if nfe is None else int(nfe), dtype=np.int64),
            "fingerprint": np.asarray(str(fingerprint)), **encode_trace(trace or [])}
    with atomic_open(path, "wb") as f:
        np.savez(f, seeds=seeds_arr, samples=samples, checksum=np.asarray(_checksum(seeds_arr, samples)),
                 meta_checksum=np.asarray(_meta_checksum(meta)), **meta)
    return path


def read_shard(path: str | Path, *, samples: bool = True) -> Shard:
    """A shard's contents; ShardError if it is unreadable or fails a checksum. ``samples=False`` reads all but
    the samples (and skips their checksum): seeds, trace, nfe and fingerprint."""
    try:
        with np.load(path) as f:
            seeds = f["seeds"]
            data = f["samples"] if samples else None
            checksum = str(f["checksum"]) if samples else ""
            meta = {k: f[k] for k in f.files if k not in ("seeds", "samples", "checksum", "meta_checksum")}
            meta_checksum = str(f["meta_checksum"])
            trace = decode_trace(meta)
    except Exception as err:  # truncated zip, missing key, bad trace encoding
        raise ShardError(f"unreadable shard {path}: {type(err).__name__}") from None
    if (samples and checksum != _checksum(seeds, data)) or meta_checksum != _meta_checksum(meta):
        raise ShardError(f"shard {path} fails its checksum")
    nfe = int(meta["nfe"])
    return Shard(seeds, data, trace, None if nfe < 0 else nfe, str(meta["fingerprint"]), checksum)


def set_aside(out_dir: str | Path, path: str | Path) -> Path:
    """Move ``path`` (a file or folder in the run folder) to ``<out_dir>/samples-set-aside/`` under a free name;
    returns where it went. Nothing a user made is deleted."""
    target_dir = Path(out_dir, SET_ASIDE_DIR)
    target_dir.mkdir(exist_ok=True)
    name, n = Path(path).name.lstrip("."), 0
    target = target_dir / name
    while target.exists() or target.is_symlink():
        n += 1
        target = target_dir / f"{name}.{n}"
    os.replace(path, target)
    return target


def valid_shards(out_dir: str | Path) -> tuple[dict[Path, Shard], list[str]]:
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


def trace_summary(traces: list[dict]) -> list[dict]:
    """Per step: the mean over batches of every numeric trace entry."""
    steps: dict[int, dict[str, list[float]]] = {}
    for t in traces:
        row = steps.setdefault(t["step"], {})
        for k, v in t.items():
            if isinstance(v, int | float) and k not in ("batch", "step"):
                row.setdefault(k, []).append(float(v))
    return [{"step": i, **{k: sum(v) / len(v) for k, v in row.items()}} for i, row in sorted(steps.items())]


def shard_traces(out_dir: str | Path, seeds: list[int]) -> list[dict]:
    """The per-step trace rows of every batch of the run, read from its shards (each shard carries its
    batch's trace), in seed order: every rank's batches, the same rows whatever the device count. Shards
    holding other seeds than the run's are left out; the samples are not read."""
    wanted, rows = set(seeds), []
    for path in sorted(Path(out_dir, "samples").glob("seeds-*.npz")):
        try:
            shard = read_shard(path, samples=False)
        except ShardError:  # verify_run reports it ("complete": false)
            continue
        if set(shard.seeds.tolist()) <= wanted:
            rows.extend(shard.trace)
    return rows


def samples_digest(checksums: list[str]) -> str:
    """The hash of a run's samples in seed order: its shards' checksums (seeds and samples), first seed first."""
    return _sha(*checksums)


#: the claims of results.json its ``checksum`` covers (with ``samples_sha256``, the metrics' inputs)
CLAIMS = ("metrics", "nfe", "expected_nfe", "num_steps", "final_step", "num_samples", "seeds", "complete",
          "fingerprint", "samples_sha256")


def results_checksum(results: dict) -> str:
    """SHA-256 of the claims of a results.json (``CLAIMS``): an edit by hand no longer matches."""
    return _sha(json.dumps({k: results.get(k) for k in CLAIMS}, sort_keys=True, default=str))


def verify_run(out_dir: str | Path, requested: list[int], batch_size: int | None = None,
               fingerprint: str | None = None) -> dict:
    """Check a run folder against the requested seeds: every seed present exactly once, in a valid shard.

    With ``batch_size`` (the run's batching) only the shards of the run's own batches count, each holding its
    batch's seeds; every other entry of samples/ is ``unknown``. With ``fingerprint`` (the run record's) a shard
    must carry it (``batch_fingerprint``), else it is ``mismatched``. Both default to the run record's.
    """
    batch_size, fingerprint = _from_record(out_dir, batch_size, fingerprint)
    samples_dir = Path(out_dir, "samples")
    entries = sorted(p for p in samples_dir.iterdir()) if samples_dir.is_dir() else []
    leftovers = [p.name for p in entries if p.name.startswith(TMP_PREFIX)]
    expected = expected_shards(list(requested), batch_size) if batch_size else None
    good, problems, mismatched, unknown = {}, [], [], []
    for path in entries:
        if path.name.startswith(TMP_PREFIX):
            continue
        if (path.name not in expected) if expected is not None else not path.match("seeds-*.npz"):
            unknown.append(path.name)
            continue
        try:
            shard = read_shard(path)
        except ShardError as err:
            problems.append(str(err))
            continue
        why = _mismatch(shard, None if expected is None else expected[path.name], fingerprint)
        if why:
            mismatched.append(f"{path.name}: {why}")
        else:
            good[path] = shard
    return _report(good, problems, mismatched, unknown, leftovers, list(requested))


def _from_record(out_dir, batch_size, fingerprint) -> tuple[int | None, str | None]:
    """The batch size and run fingerprint of the folder's run record where not given (None without one)."""
    if batch_size is not None and fingerprint is not None:
        return batch_size, fingerprint
    try:
        record = json.loads(Path(out_dir, ".steindiff", "run.json").read_text())
        given_size = record["config"].get("batch_size")
        given_fp = record.get("fingerprint", {}).get("run")
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        given_size = given_fp = None
    return (batch_size if batch_size is not None else given_size,
            fingerprint if fingerprint is not None else given_fp)


def _mismatch(shard: Shard, batch: list[int] | None, fingerprint: str | None) -> str:
    """Why a readable shard is not one of the run's (empty when it is)."""
    if batch is not None and shard.seeds.tolist() != batch:
        return "holds other seeds than its name says (another batching)"
    if fingerprint is not None and shard.fingerprint != batch_fingerprint(fingerprint, shard.seeds):
        return "made by another run (fingerprint differs: other config, weights or batching)"
    return ""


def _report(good: dict, problems, mismatched, unknown, leftovers, requested: list[int]) -> dict:
    found = np.concatenate([g.seeds for g in good.values()]) if good else np.zeros(0, dtype=np.int64)
    values, counts = np.unique(found, return_counts=True)
    duplicated = values[counts > 1].tolist()
    present = set(values.tolist())
    missing = sorted(set(requested) - present)
    extra = sorted(present - set(requested))
    ordered = sorted(good.values(), key=lambda s: int(s.seeds[0]) if len(s.seeds) else 0)
    nfes = sorted({s.nfe for s in good.values()}, key=str)
    complete = not missing and not duplicated and not extra and not problems and not mismatched and not unknown
    return {"complete": complete, "requested": len(requested), "present": len(present), "missing": missing,
            "duplicated": duplicated, "unexpected": extra, "bad_shards": problems, "mismatched": mismatched,
            "unknown_files": unknown, "temporary_files": leftovers, "shards": len(good), "nfe": nfes,
            "samples_sha256": samples_digest([s.checksum for s in ordered])}
