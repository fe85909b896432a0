import numba
import numpy as np
import pytest

from skbn import _config

# Block sizes small enough that a handful of rows spans several blocks,
# segments and tasks, so that every merge in the kernels runs on small inputs.
TINY_BLOCKS = {
    "ROW_BLOCK_BYTES": 1,  # every block has MIN_BLOCK_ROWS rows
    "MIN_BLOCK_ROWS": 2,
    "SEGMENT_LEN": 3,
    "MIN_TASK_ELEMENTS": 1,
    "MAX_TASKS": 5,
    "FOLD_MIN_WIDTH": 8,
    "MIN_CHANNELS_PER_ROW": 2,
    "MIN_PARALLEL_ELEMENTS": 1,  # threaded kernels (on a thread-safe layer)
}


def _patch_blocks(monkeypatch):
    for name, value in TINY_BLOCKS.items():
        if hasattr(_config, name):
            monkeypatch.setattr(_config, name, value)


@pytest.fixture
def rng():
    """A seeded generator, fresh for each test."""
    return np.random.default_rng(20240611)


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Patch ``skbn._config`` so that small inputs span many blocks and tasks."""
    _patch_blocks(monkeypatch)
    return TINY_BLOCKS


@pytest.fixture(params=["default_blocks", "tiny_blocks"])
def blocks(request, monkeypatch):
    """Run a test with the shipped block sizes and with tiny ones."""
    if request.param == "tiny_blocks":
        _patch_blocks(monkeypatch)
    return request.param


@pytest.fixture
def restore_threads():
    """Give the test a way to change Numba's thread count, restored afterwards."""
    before = numba.get_num_threads()
    yield numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(before)
