"""The one RNG module: SplitMix64 (tensor and int forms agree with the published algorithm), seed checks."""

import random

import pytest
import torch

from steindiff.core.rng import MAX_SEED, check_seed, check_seeds, splitmix64, splitmix64_int

MASK = (1 << 64) - 1


def splitmix64_reference(z: int) -> int:
    """SplitMix64's finaliser in plain Python integers (Steele, Lea and Flood 2014)."""
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_splitmix64_int_and_tensor_forms_equal_the_reference():
    rng = random.Random(0)
    values = [0, 1, 2**63 - 1, 2**63, MASK] + [rng.getrandbits(64) for _ in range(2000)]
    assert [splitmix64_int(v) for v in values] == [splitmix64_reference(v) for v in values]
    signed = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values], dtype=torch.int64)
    assert [int(v) & MASK for v in splitmix64(signed)] == [splitmix64_reference(v) for v in values]
    assert splitmix64_reference(0) == 0xE220A8397B1DCDAF  # the first output of SplitMix64 seeded with 0


@pytest.mark.parametrize("bad,message", [(-1, "non-negative"), (1.5, "non-negative"), ("3", "non-negative"),
                                         (True, "non-negative"), (None, "non-negative"),
                                         (torch.tensor(2.0), "non-negative"), (MAX_SEED + 1, r"2\*\*63 - 1")])
def test_bad_seeds_are_one_line_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        check_seed(bad)


def test_good_seeds():
    assert check_seed(0) == 0 and check_seed(torch.tensor(7)) == 7 and check_seed(MAX_SEED) == MAX_SEED
    assert check_seeds(range(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="distinct"):
        check_seeds([1, 1])


def _seeded_probes_by_formula(seeds, step, num_probes, shape, kind, salt):
    """The per-seed probes written as plainly as possible (no in-place steps): the reference."""
    def mix(z):  # SplitMix64 on int64 bit patterns, each step a new tensor
        def shr(v, k):
            return (v >> k) & ((1 << (64 - k)) - 1)
        z = z + (0x9E3779B97F4A7C15 - (1 << 64))
        z = (z ^ shr(z, 30)) * (0xBF58476D1CE4E5B9 - (1 << 64))
        z = (z ^ shr(z, 27)) * (0x94D049BB133111EB - (1 << 64))
        return z ^ shr(z, 31)

    n = num_probes * int(torch.Size(shape).numel())
    key = mix(seeds.to(torch.int64) * 1_000_003 + step * 7919 + salt * 104_729)
    bits = mix(key[:, None] ^ mix(torch.arange(2 * n, dtype=torch.int64))[None, :])
    if kind == "rademacher":
        values = (((bits[:, :n] >> 63) & 1) * 2 - 1).to(torch.float64)
    else:
        u = (((bits >> 11) & ((1 << 53) - 1)).to(torch.float64) + 0.5) / float(1 << 53)
        values = torch.sqrt(-2.0 * torch.log(u[:, :n])) * torch.cos(2 * torch.pi * u[:, n:])
    return values.reshape(len(seeds), num_probes, *shape).transpose(0, 1)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
@pytest.mark.parametrize("shape", [(32,), (1, 8, 8)])
def test_seeded_probes_equal_their_formula_bit_for_bit(kind, shape):
    from steindiff.core.divergence import seeded_probes

    seeds = torch.tensor([0, 1, 7, 2**62, 123456789012, MAX_SEED])
    fast = seeded_probes(seeds, 3, 5, shape, kind, salt=2, dtype=torch.float64)
    assert torch.equal(fast, _seeded_probes_by_formula(seeds, 3, 5, shape, kind, 2))
