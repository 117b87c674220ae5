"""steindiff-calibrate: fit a calibrated coefficient schedule once, save it as a small JSON file.

    steindiff-calibrate experiment=digits solver=dpmpp_2m nfe=6 --out digits-2m-nfe6.json
    steindiff-sample experiment=digits solver=dpmpp_2m nfe=6 corrector=calibrated corrector.path=digits-2m-nfe6.json

The overrides are steindiff-sample's (the same denoiser, schedule, solver, NFE, process, dtype make the same sigma
grid): the run they describe is made with the trajectory oracle as its corrector on the calibration seeds
(``--seeds``, default 0-255: seed set 0, disjoint from the evaluation sets 1, 2, 3 when num_samples >= 256), and
the oracle's gamma per step, pooled over the seeds, is written with the grid, the solver, the denoiser's identity,
the seeds, the steindiff version and this command (``steindiff.calibrate``; the format:
``steindiff.core.correctors.calibrated``). No run folder, no metrics. ``batch_size=B`` splits the seeds into
batches of B (default: one batch of all seeds). Every mistake is one line and exit code 2, before any sampling.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

PROG = "steindiff-calibrate"
_EXIT = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block)."""

    def error(self, message: str):
        raise _UserError(message)


class _UserError(Exception):
    pass


def _parser() -> _Parser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0],
                     epilog="Example: steindiff-calibrate experiment=digits solver=heun nfe=6 --out heun6.json")
    parser.add_argument("overrides", nargs="*", help="steindiff-sample overrides (key=value, group=option)")
    parser.add_argument("--out", type=Path, help="the calibration JSON file to write (required)")
    parser.add_argument("--seeds", default=None, help="calibration seeds, e.g. 0-255 (default) or 0-99,500-599")
    parser.add_argument("--substeps", type=int, default=None,
                        help="Heun substeps per grid interval of the oracle's reference (default 32)")
    parser.add_argument("--correct-last", action="store_true",
                        help="apply the oracle's gamma at the last step too (default: 1 there; it is huge)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def out_message(out: Path | None, force: bool) -> str | None:
    """Why ``--out`` cannot be written (missing, a folder, exists without --force, its folder missing or not
    writable), or None."""
    if out is None:
        return "--out FILE is required: the calibration JSON to write (e.g. --out digits-2m-nfe6.json)"
    path = out.expanduser()
    if path.is_dir():
        return f"--out {out} is a folder: give a file name, e.g. --out {out / 'calibration.json'}"
    if path.exists() and not force:
        return f"--out {out} exists: give another file, or --force to replace it"
    folder = path.absolute().parent
    above = next((p for p in folder.parents if p.exists()), None) if not folder.exists() else folder
    if above is not None and above.exists() and not above.is_dir():
        return f"--out {out} lies under {above}, which is a file: give another --out"
    if not folder.is_dir():
        return f"--out {out}: the folder {folder} does not exist: create it or give another --out"
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"--out {out} is not writable (folder {folder}): give another --out"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if any(a in ("-m", "--multirun") for a in argv):
            raise _UserError("-m (a sweep) is not accepted: calibrate one solver, schedule and NFE per command")
        args = _parser().parse_intermixed_args(argv)
        refused = out_message(args.out, args.force)
        if refused:
            raise _UserError(refused)
        if args.substeps is not None and args.substeps < 1:
            raise _UserError(f"--substeps {args.substeps} is not accepted: an integer >= 1 (default 32)")
    except _UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return _EXIT
    return _calibrate(args, argv)


def _calibrate(args, argv: list[str]) -> int:
    from hydra.errors import HydraException  # start-up: --help and argument mistakes never import torch
    from omegaconf.errors import OmegaConfBaseException  # start-up: as above

    from steindiff.calibrate import DEFAULT_SEEDS, DEFAULT_SUBSTEPS, calibrate  # start-up: imports torch
    from steindiff.cli.app import one_line  # start-up: imports Hydra
    from steindiff.core.correctors.calibrated import write_schedule  # start-up: imports torch
    from steindiff.errors import filesystem_message  # start-up: cheap, only a calibration reaches here

    overrides = list(args.overrides)
    batch_size = None
    for override in overrides:  # batch_size=B splits the calibration seeds (default: one batch)
        if override.split("=", 1)[0].lstrip("+") == "batch_size":
            batch_size = override.split("=", 1)[1]
    try:
        if batch_size is not None:
            try:
                batch_size = int(batch_size)
            except ValueError:
                raise ValueError(f"batch_size={batch_size!r} is not accepted: a positive integer") from None
        record = calibrate(overrides, seeds=args.seeds or DEFAULT_SEEDS, correct_last=args.correct_last,
                           substeps=args.substeps or DEFAULT_SUBSTEPS, batch_size=batch_size,
                           progress=not args.no_progress, command=shlex.join([PROG, *argv]), set_threads=True)
        path = write_schedule(args.out.expanduser(), record)
    except (HydraException, OmegaConfBaseException, ValueError, FileNotFoundError, OSError) as err:
        message = filesystem_message(err) if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) \
            else None
        print(f"{PROG}: error: {message or one_line(err)}", file=sys.stderr)
        return _EXIT
    for note in record["notes"]:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    shown = ", ".join(f"{g:.4g}" for g in record["gamma"])
    print(f"{PROG}: wrote {path}: {len(record['gamma'])} steps, gamma [{shown}] from {record['num_seeds']} seeds "
          f"in {record['seconds']:.1f} s; use it with corrector=calibrated corrector.path={args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
