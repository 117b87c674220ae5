"""Regenerate the committed docs runs and sweep (docs/runs/, docs/sweeps/) with the commands docs/README.md lists.

    python benchmarks/regenerate_docs.py [--only wandb_offline]

Each folder is deleted and written again by its command (``STEINDIFF_OVERWRITE_TRACKED=1``: these folders hold
files git tracks), from the repository root, with the app's defaults. Then, so that no committed file holds a
path of the machine it was made on, text files are rewritten: the repository root becomes ``.``, the Python
installation ``<python>``, the home folder ``~``. Sample shards (samples/) are not committed (.gitignore). The
W&B offline run is committed as its decoded record (``wandb/run.json``: name, group and config, read with
tests/wandb_records.py) instead of W&B's binary files, which hold the machine's paths. Check the result with
``python benchmarks/reproduce_docs.py`` and ``git diff --stat docs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["-m", "experiment=aniso32_overshoot", "solver=euler,dpmpp_2m", "nfe=4,6,8", "corrector=none,stein_clipped",
         "seed_set=0,1,2", "num_samples=500"]
#: folder (under docs/) -> (overrides, extra environment)
RUNS = {
    "runs/aniso32_overshoot": (["experiment=aniso32_overshoot", "diagnostics.lipschitz=true"], {}),
    "runs/ring2d_stein_ddp": (["experiment=ring2d_stein", "trainer=ddp", "trainer.devices=2",
                               "corrector.statistics=group", "diagnostics.lipschitz=true"], {}),
    "runs/wandb_offline": (["logger=wandb"], {"WANDB_MODE": "offline"}),
    "sweeps/aniso32_overshoot": (SWEEP, {}),
}


def command(folder: str, overrides: list[str]) -> list[str]:
    where = f"hydra.sweep.dir=docs/{folder}" if overrides[:1] == ["-m"] else f"hydra.run.dir=docs/{folder}"
    return [sys.executable, "-m", "steindiff.cli.sample", *overrides, where]


def regenerate(folder: str) -> None:
    overrides, extra = RUNS[folder]
    target = ROOT / "docs" / folder
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "STEINDIFF_OVERWRITE_TRACKED": "1", "WANDB_SILENT": "true", **extra}
    subprocess.run(command(folder, overrides), cwd=ROOT, env=env, check=True)
    if overrides[:1] == ["-m"]:
        subprocess.run([sys.executable, "-m", "steindiff.cli.report", f"docs/{folder}"], cwd=ROOT, env=env,
                       check=True)
    if (target / "wandb").is_dir():
        decode_wandb(target / "wandb")
    for path in target.rglob("*"):
        if path.is_file():
            scrub(path)


def decode_wandb(folder: Path) -> None:
    """Replace W&B's offline folder by the decoded record of its run."""
    sys.path.insert(0, str(ROOT))
    from tests.wandb_records import run_summary  # start-up: the decoder lives with the tests that use it

    run_file = next(folder.glob("offline-run-*/run-*.wandb"))
    record = run_summary(run_file)
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def scrub(path: Path) -> None:
    """Absolute paths of this machine out of a text file (binary files are left alone)."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return
    new = text.replace(str(ROOT), ".").replace(sys.prefix, "<python>").replace(str(Path.home()), "~")
    if new != text:
        path.write_text(new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="only folders whose name contains this text")
    args = parser.parse_args(argv)
    for folder in RUNS:
        if args.only is None or args.only in folder:
            print(f"regenerating docs/{folder}", flush=True)
            regenerate(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
