"""Errors shared by every layer above the core: the loaders' ``CheckpointError`` and ``first_line``.

A neutral module (it imports nothing from steindiff), so that models, metrics and the apps can all
raise and format the same errors without importing each other.
"""

from __future__ import annotations

import errno

__all__ = ["CheckpointError", "ConfigError", "filesystem_message", "first_line"]

#: errno -> what the user can do about it (the run folder stays resumable: shards are written whole or not at all)
_FILESYSTEM_ADVICE = {
    errno.ENOSPC: "free some space, then rerun the same command in the same folder to resume",
    errno.EDQUOT: "free some space (disk quota), then rerun the same command in the same folder to resume",
    errno.EACCES: "make it writable, or give another hydra.run.dir=<folder>",
    errno.EPERM: "make it writable, or give another hydra.run.dir=<folder>",
    errno.EROFS: "the file system is read-only: give hydra.run.dir=<folder> on a writable one",
    errno.ENOTDIR: "a file stands where a folder is needed: move it, or give another hydra.run.dir=<folder>",
    errno.EISDIR: "a folder stands where a file is needed: move it, or give another hydra.run.dir=<folder>",
    errno.EEXIST: "a file stands where a folder is needed: move it, or give another hydra.run.dir=<folder>",
    errno.ENAMETOOLONG: "give a shorter hydra.run.dir=<folder>",
}


class CheckpointError(ValueError):
    """A checkpoint or statistics file that is missing, truncated, of the wrong format or shape.

    The message is one line naming the file and what was expected; the apps print it and exit 2.
    Loaders raise it before returning anything, so a caller never sees a half-loaded model.

    Args:
        message: the one-line message (file, what was found, what is accepted).
    """


def first_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` of a foreign exception on one line (its first two non-empty lines), at most ``limit``
    characters: what a one-line error quotes of the library error behind it."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = f"{type(err).__name__}: {' '.join(lines[:2])}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def filesystem_message(err: BaseException) -> str | None:
    """One line for a file system error a user can fix (no space, permission, not a directory), naming the file
    and what to do; None for any other error."""
    if not isinstance(err, OSError) or err.errno not in _FILESYSTEM_ADVICE:
        return None
    reason = err.strerror or errno.errorcode.get(err.errno, str(err.errno))
    where = f": {err.filename}" if err.filename else ""
    return f"{reason}{where}: {_FILESYSTEM_ADVICE[err.errno]}"


class ConfigError(ValueError):
    """A config value that is not accepted: one line naming the key, the value given and what is accepted.

    Args:
        message: the one-line message.
    """
