"""The floor loops of benchmarks/floors.py do the work they stand for.

A floor that skipped work would make every ratio against it look better than
it is, so each loop is checked against NumPy on an awkward shape.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from benchmarks import floors


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (301, 65)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_floor_loops_do_the_work(shape, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype) + 5
    assert_allclose(floors.one_read(x), x.sum(dtype=np.float64), rtol=1e-9)
    out = np.empty_like(x)
    assert floors.copy_into(x, out) is out
    assert_array_equal(out, x)
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    got = floors.least_batch_norm(x)
    assert got.dtype == dtype
    assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_identity_transformer_returns_its_input():
    x = np.ones((3, 2))
    assert floors._Identity().fit_transform(x) is x
    assert floors._AtomicIdentity().fit_transform(x) is x
