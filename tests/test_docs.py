"""Committed files hold no absolute paths of the machine they were made on (docs runs, results, notes)."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(/root/|/work/|/home/\w|/Users/\w|/tmp/\w|site-packages)")


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs the git work tree of the repository")
    return [REPO / p for p in out.splitlines() if not p.startswith("tests/")]  # tests hold such patterns on purpose


def test_no_committed_file_holds_an_absolute_path_of_this_machine():
    found = []
    for path in _tracked():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        found += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in ABSOLUTE.finditer(text)]
    assert not found, f"{len(found)} absolute paths, first: {found[:5]}"
