"""steindiff-verify: check that a run folder is complete and consistent.

    steindiff-verify <run folder>

Reads the run record (.steindiff/run.json: the requested seeds, the config, the run's fingerprint), every
entry of samples/ and results.json, and recomputes what results.json claims instead of trusting it:

- every requested seed is present exactly once, in a shard of one of the run's batches (named for its seeds,
  holding them, passing its checksums) that carries the run's fingerprint (same config, same denoiser
  weights, same batching); shards of another run, unreadable shards and unknown files are named, never counted;
- results.json's sample count, NFE (the NFE every shard measured), fingerprint, per-step trace (recomputed
  from the shards) and ``samples_sha256`` (the shards' checksums in seed order) match, and its ``checksum``
  matches its claims: metrics or NFE edited by hand fail.

Exit code 0 when all of this holds, 1 when something is missing or wrong (each problem on its own line),
2 on bad input (no run folder, an unreadable record or results.json), in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_MISTAKE = 2  # bad input: one line, this exit code


class _BadInput(ValueError):
    """A folder that cannot be verified at all (one line, exit 2)."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="steindiff-verify", description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    try:
        record = _read_record(folder)
        results = _read_results(folder)
    except _BadInput as err:
        print(f"steindiff-verify: error: {err}", file=sys.stderr)
        return _MISTAKE
    from steindiff.shards import verify_run  # start-up: numpy

    fingerprint = record.get("fingerprint") if isinstance(record.get("fingerprint"), dict) else None
    report = verify_run(folder, record["seeds"], batch_size=record["config"].get("batch_size"),
                        fingerprint=(fingerprint or {}).get("run"))
    problems = _record_problems(record, fingerprint) + _shard_problems(report)
    if results is not None:
        problems += _results_problems(folder, record, results, report)
    ok = report["complete"] and results is not None and not problems
    print(f"{folder}: {report['present']}/{report['requested']} seeds in {report['shards']} valid shards; "
          f"missing {len(report['missing'])}, duplicated {len(report['duplicated'])}, "
          f"unexpected {len(report['unexpected'])}, bad shards {len(report['bad_shards'])}, "
          f"of another run {len(report['mismatched'])}, unknown files {len(report['unknown_files'])}, "
          f"temporary files {len(report['temporary_files'])}; results.json: "
          + ("absent" if results is None else "complete" if results.get("complete") is True else "incomplete"))
    for problem in problems:
        print(f"  {problem}")
    print("OK" if ok else "NOT COMPLETE")
    return 0 if ok else 1


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise _BadInput(f"cannot read {what} {path}: {err.strerror or type(err).__name__}") from None
    except json.JSONDecodeError as err:
        raise _BadInput(f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno}; truncated?)") from None


def _read_record(folder: Path) -> dict:
    """The run record, checked for the fields verify reads; _BadInput names what is wrong."""
    if not folder.exists():
        raise _BadInput(f"{folder} does not exist")
    if not folder.is_dir():
        raise _BadInput(f"{folder} is a file, not a steindiff run folder")
    path = folder / ".steindiff" / "run.json"
    if not path.is_file():
        raise _BadInput(f"{folder} is not a steindiff run folder (no .steindiff/run.json)")
    record = _read_json(path, "the run record")
    seeds = record.get("seeds") if isinstance(record, dict) else None
    if not isinstance(seeds, list) or not all(type(s) is int for s in seeds) or not isinstance(
            record.get("config"), dict):
        raise _BadInput(f"the run record {path} is not one steindiff-sample writes (expected an object with a "
                        "list of integer seeds and a config)")
    return record


def _read_results(folder: Path) -> dict | None:
    path = folder / "results.json"
    if not path.exists():
        return None
    results = _read_json(path, "results file")
    if not isinstance(results, dict):
        raise _BadInput(f"results file {path} holds a JSON {type(results).__name__}, expected an object")
    return results


def _record_problems(record: dict, fingerprint: dict | None) -> list[str]:
    from steindiff.shards import run_fingerprint  # start-up: numpy

    if fingerprint is None:
        return ["the run record holds no fingerprint (a run stopped before sampling, or made before "
                "fingerprints): the shards cannot be matched to the run"]
    recomputed = run_fingerprint(record["config"], str(fingerprint.get("weights")))
    if recomputed != fingerprint:
        return ["the run record's config does not match its fingerprint (the record was edited)"]
    return []


def _shard_problems(report: dict) -> list[str]:
    problems = list(report["bad_shards"])
    problems += [f"shard of another run, not counted: samples/{m}" for m in report["mismatched"]]
    problems += [f"unknown file in samples/, not counted: {name}" for name in report["unknown_files"]]
    problems += [f"temporary file left in samples/: {name}" for name in report["temporary_files"]]
    if report["duplicated"]:
        problems.append(f"seeds present more than once: {report['duplicated'][:10]}")
    if report["unexpected"]:
        problems.append(f"seeds the run did not ask for: {report['unexpected'][:10]}")
    if report["missing"]:
        problems.append(f"{len(report['missing'])} seeds missing, the first: {report['missing'][:10]}")
    return problems


def _results_problems(folder: Path, record: dict, results: dict, report: dict) -> list[str]:
    """What results.json claims that the shards do not bear out."""
    from steindiff.shards import results_checksum, shard_traces, trace_summary  # start-up: numpy

    problems = [] if results.get("complete") is True else ["results.json says complete: false"]
    recomputed = {"num_samples": report["present"],
                  "nfe": report["nfe"][0] if len(report["nfe"]) == 1 else f"shards disagree: {report['nfe']}",
                  "fingerprint": (record.get("fingerprint") or {}).get("run"),
                  "samples_sha256": report["samples_sha256"]}
    for key, value in recomputed.items():
        if results.get(key) != value:
            problems.append(f"results.json says {key} {results.get(key)!r}, the shards give {value!r}")
    trace = trace_summary(shard_traces(folder, record["seeds"]))
    if json.dumps(trace, sort_keys=True) != json.dumps(results.get("trace"), sort_keys=True):
        problems.append("results.json's per-step trace differs from the shards' traces")
    if results.get("checksum") != results_checksum(results):
        problems.append("results.json does not match its checksum: its metrics, NFE or counts were edited "
                        "after the run")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
