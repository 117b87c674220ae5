import os

import pytest

from steindiff.core.gaussian import GaussianData

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def gaussian():
    return GaussianData.random(dim=4, seed=0)
