"""Shared fixtures of the evaluation tests."""
import pytest


@pytest.fixture
def one_thread():
    """Tiny matrices: torch's thread pool costs more than it gives on a shared 2-core machine (and one thread
    makes small fits exactly repeatable)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
