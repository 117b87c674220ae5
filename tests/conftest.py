import os

import pytest
import torch

from steindiff.core.gaussian import GaussianData

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (small tensors and tiny convolutions gain nothing from more, and the
    machine's other core stays free), restored after it. Use: pytestmark = pytest.mark.usefixtures("one_thread")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gaussian():
    return GaussianData.random(dim=4, seed=0)
