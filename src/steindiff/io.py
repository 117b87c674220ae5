"""Atomic file writes: a reader (or a resumed run) sees the old file or the whole new one, never a part.

The data go to a temporary file in the same folder, named ``.tmp-<name>.<random>`` (hidden, and never
matched by a glob such as ``seeds-*.npz``), are flushed to disk, and the file is renamed over the target
with ``os.replace`` (atomic on POSIX and Windows when both are on one file system, which the same folder
guarantees). A process killed mid-write leaves at most a ``.tmp-*`` file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["TMP_PREFIX", "atomic_open", "atomic_write_bytes", "atomic_write_text"]

#: every temporary file starts with this (steindiff-verify counts the ones left in samples/)
TMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes files
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The parent folder
    must exist. ``mode`` is "w" (text: UTF-8 unless ``encoding``, newlines as ``open``'s ``newline``) or "wb".
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode={mode!r} is not accepted: expected 'w' or 'wb'")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        text = {"encoding": encoding or "utf-8", "newline": newline} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, as given (no newline translation); returns ``path``."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)
