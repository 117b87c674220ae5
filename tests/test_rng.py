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
