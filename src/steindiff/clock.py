"""When this process started, for start-up timings (``results.json`` ``timing``, benchmarks/startup.py)."""

from __future__ import annotations

import os
import time

__all__ = ["process_start", "since_process_start"]

_IMPORTED = time.time()


def process_start() -> float:
    """Unix time at which this process started: from /proc on Linux (10 ms resolution), elsewhere the time
    this module was first imported (which misses the interpreter's own start-up)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: starttime
        return time.time() - (uptime - started_after_boot)
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def since_process_start() -> float:
    """Seconds since this process started (``process_start``)."""
    return time.time() - process_start()
