"""The one error every loader raises for a file it cannot use."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint or statistics file that is missing, truncated, of the wrong format or shape.

    The message is one line naming the file and what was expected; the apps print it and exit 2.
    Loaders raise it before returning anything, so a caller never sees a half-loaded model.
    """
