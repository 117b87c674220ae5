"""Which files git tracks: scripts and apps refuse to overwrite committed files unless asked.

    tracked_files("docs/runs/aniso32_overshoot")   # ['docs/runs/aniso32_overshoot/results.json', ...]

A neutral module (it imports nothing from steindiff). Outside a git work tree, or without git, nothing is
tracked: the check never stops a run where it cannot know.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["tracked_files"]


def tracked_files(path: str | Path) -> list[str]:
    """The files at or under ``path`` that git tracks (paths relative to the repository root); [] when the path
    does not exist, lies outside a git work tree, or git is not installed."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        return []
    folder = path if path.is_dir() else path.parent
    try:
        listed = subprocess.run(["git", "-C", str(folder), "ls-files", "-z", "--full-name", "--", str(path)],
                                capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if listed.returncode != 0:
        return []
    return [name for name in listed.stdout.decode("utf-8", "replace").split("\0") if name]
