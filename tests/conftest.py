import warnings

import pytest

# torch warns that sparse CSR support is beta each time one is built; it says nothing about rlsub.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


@pytest.fixture(autouse=True)
def _quiet_sparse_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        yield


@pytest.fixture
def one_thread():
    """torch on one thread for the test: two threads on busy cores make tiny steps a hundred times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
