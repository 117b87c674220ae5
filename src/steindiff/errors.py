"""Errors shared by every layer above the core: the loaders' ``CheckpointError`` and ``first_line``.

A neutral module (it imports nothing from steindiff), so that models, metrics and the apps can all
raise and format the same errors without importing each other.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "first_line"]


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


class ConfigError(ValueError):
    """A config value that is not accepted: one line naming the key, the value given and what is accepted.

    Args:
        message: the one-line message.
    """
