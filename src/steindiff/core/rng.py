"""Randomness keyed by seeds: the one place where seeds are checked and mixed.

- ``initial_noise``: sample i's noise comes from its own ``torch.Generator`` seeded with seed i, so a
  sample never depends on the batch size, its position in the batch or the device count. The noise
  is drawn in float64 on the CPU and then cast, so float32 and float64 runs (and runs on any
  device) start from the same noise up to rounding.
- ``splitmix64`` / ``splitmix64_int``: the SplitMix64 finaliser, a bijective 64-bit mix, used as a
  counter-based hash (per-seed Stein probes) and to separate streams (per-seed class labels).
- ``check_seed`` / ``check_seeds`` / ``parse_seeds``: seeds are distinct integers in [0, 2**63 - 1]
  (0 is a valid seed; 2**63 - 1 is the largest int64, the dtype seeds travel in).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["MAX_SEED", "check_seed", "check_seeds", "parse_seeds", "initial_noise", "splitmix64", "splitmix64_int"]

MAX_SEED = (1 << 63) - 1
_MASK64 = (1 << 64) - 1


def check_seed(seed) -> int:
    """One seed as a Python int in [0, MAX_SEED]; a one-line ValueError otherwise."""
    if isinstance(seed, bool) or (isinstance(seed, Tensor) and seed.is_floating_point()):
        raise ValueError(f"seeds must be non-negative integers, got {seed!r}")
    try:
        value = operator.index(seed)
    except TypeError:
        raise ValueError(f"seeds must be non-negative integers, got {seed!r}") from None
    if value < 0:
        raise ValueError(f"seeds must be non-negative integers, got {value}")
    if value > MAX_SEED:
        raise ValueError(f"seeds must be integers in [0, 2**63 - 1], got {value}")
    return value


def check_seeds(seeds: Iterable[int]) -> list[int]:
    """Seeds as a list of distinct ints in [0, MAX_SEED] (0 is a valid seed)."""
    out = [check_seed(s) for s in seeds]
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


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def shift_right(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: Tensor) -> Tensor:
    """SplitMix64 finaliser on int64 tensors, elementwise, in wrapping arithmetic (bit patterns).

    A new tensor (``z`` is not changed); the steps run in place on it and one scratch tensor.
    """
    z = z + _GOLDEN
    scratch = torch.empty_like(z)
    for shift, multiplier in ((30, _MIX1), (27, _MIX2), (31, None)):
        torch.bitwise_right_shift(z, shift, out=scratch)
        scratch &= (1 << (64 - shift)) - 1  # a logical shift: clear the copied sign bits
        z ^= scratch
        if multiplier is not None:
            z *= multiplier
    return z


def splitmix64_int(z: int) -> int:
    """SplitMix64 of one unsigned 64-bit Python int, as an unsigned int (the same bits as ``splitmix64``)."""
    mixed = splitmix64(torch.tensor([_signed(int(z) & _MASK64)], dtype=torch.int64))
    return int(mixed[0]) & _MASK64
