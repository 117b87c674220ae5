"""steindiff-verify: check that a run folder is complete and consistent.

    steindiff-verify <run folder>

Reads the run record (.steindiff/run.json: the requested seeds), every sample shard (checksums) and
results.json. Prints a summary; exit code 0 when every requested seed is present exactly once in
valid shards and results.json says complete, 1 when something is missing or wrong, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="steindiff-verify", description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    record = folder / ".steindiff" / "run.json"
    if not record.is_file():
        print(f"steindiff-verify: error: {folder} is not a steindiff run folder (no .steindiff/run.json)",
              file=sys.stderr)
        return 2
    from steindiff.shards import verify_run  # start-up: numpy

    seeds = json.loads(record.read_text())["seeds"]
    report = verify_run(folder, seeds)
    results_path = folder / "results.json"
    results_complete = None
    if results_path.is_file():
        try:
            results_complete = bool(json.loads(results_path.read_text()).get("complete"))
        except json.JSONDecodeError:
            report["bad_shards"].append("results.json is not valid JSON")
    ok = report["complete"] and results_complete is True
    print(f"{folder}: {report['present']}/{report['requested']} seeds in {report['shards']} valid shards; "
          f"missing {len(report['missing'])}, duplicated {len(report['duplicated'])}, "
          f"unexpected {len(report['unexpected'])}, bad shards {len(report['bad_shards'])}, "
          f"temporary files {len(report['temporary_files'])}; results.json: "
          + ("absent" if results_complete is None else "complete" if results_complete else "incomplete"))
    for problem in report["bad_shards"]:
        print(f"  {problem}")
    if report["missing"]:
        print(f"  first missing seeds: {report['missing'][:10]}")
    print("OK" if ok else "NOT COMPLETE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
