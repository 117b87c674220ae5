"""The bad command lines of tests/test_bad_inputs.py (CONFIG_CASES), each run as a user would, against a source tree.

    python benchmarks/bad_inputs.py                      # this checkout
    python benchmarks/bad_inputs.py --src <checkout>/src  # another one (e.g. a worktree of an earlier commit)

Each case runs ``python -m steindiff.cli.sample <argv>`` in a fresh folder (2 at a time, 60 s each) and passes
when it ends as promised: exit code 2, exactly one stderr line ``steindiff-sample: error: ...`` without a
traceback, and nothing written. Prints the count and the failures; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_bad_inputs import CONFIG_CASES  # noqa: E402


def run_case(case, src: Path | None) -> tuple[str, bool, str]:
    name, argv, _ = case
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "STEINDIFF_RUNS_DIR": str(Path(work, "runs")), "WANDB_MODE": "disabled"}
        if src is not None:
            env["PYTHONPATH"] = str(src)
        try:
            proc = subprocess.run([sys.executable, "-m", "steindiff.cli.sample", *argv], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return name, False, "still running after 60 s"
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        written = [p for p in Path(work).rglob("*")]
        ok = (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("steindiff-sample: error: ")
              and "Traceback" not in proc.stderr and not written)
        why = f"exit {proc.returncode}, {len(lines)} stderr lines, {len(written)} paths written: " + \
            (lines[-1][:120] if lines else "")
        return name, ok, why


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=None, help="the src/ folder of the checkout to run")
    args = parser.parse_args(argv)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: run_case(c, args.src), CONFIG_CASES))
    for name, ok, why in results:
        if not ok:
            print(f"FAILS {name}: {why}")
    print(f"{sum(ok for _, ok, _ in results)} of {len(results)} bad command lines end as promised")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
