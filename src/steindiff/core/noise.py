"""Per-seed initial noise: sample i's noise comes from its own generator seeded with seed i.

So a sample never depends on the batch size, its position in the batch or the device count.
The noise is drawn in float64 on the CPU and then cast, so float32 and float64 runs (and runs on
any device) start from the same noise up to rounding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["check_seeds", "parse_seeds", "initial_noise"]


def check_seeds(seeds: Iterable[int]) -> list[int]:
    """Seeds as a list of distinct non-negative ints (0 is a valid seed)."""
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | Tensor) or int(s) != s or int(s) < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise ValueError("seeds must be distinct (a repeated seed would duplicate a sample)")
    if not out:
        raise ValueError("no seeds given")
    return out


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seeds(spec: str | int | Sequence[int]) -> list[int]:
    """Seeds from '0-99', '0-9,20,30-31', an int n (= 0..n-1 is NOT implied: the single seed n)
    or a list. Ranges are inclusive, as in EDM's command line."""
    if isinstance(spec, int):
        return check_seeds([spec])
    if not isinstance(spec, str):
        return check_seeds(spec)
    seeds: list[int] = []
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"malformed seed range {part.strip()!r} in {spec!r}; use e.g. '0-99' or '0-9,20'")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"seed range {part.strip()!r} runs backwards")
        seeds.extend(range(lo, hi + 1))
    return check_seeds(seeds)


def initial_noise(seeds: Sequence[int], shape: Sequence[int], dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> Tensor:
    """(len(seeds), *shape) standard normal noise, row i drawn from torch.Generator(seed_i)."""
    rows = []
    for s in check_seeds(seeds):
        g = torch.Generator(device="cpu").manual_seed(s)
        rows.append(torch.randn(tuple(shape), generator=g, dtype=torch.float64))
    return torch.stack(rows).to(device=device, dtype=dtype)
