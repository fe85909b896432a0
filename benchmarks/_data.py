"""Benchmark data shared by the asv suites: built once per process and case.

asv runs each benchmark in a process of its own (forked from one that has
imported the suites), so the cache below saves the rebuild only between a
benchmark's repeats, not between benchmarks.
"""

import os

import numba
import numpy as np

# skbn and torch run on this many threads; the recorded results are on 2.
THREADS = int(os.environ.get("SKBN_BENCH_THREADS", "2"))

# tests/test_benchmarks.py sets this to cut every array to about this many
# values (2 rows at least): the code paths of the real cases, in seconds.
MAX_ELEMENTS = None

_DATA = {}


def array(shape, dtype="float32", order="C", offset=3.0, which=0):
    """Standard normal data plus ``offset``, the same on every run.

    ``which`` tells apart arrays of the same shape (``x`` and ``dy`` of a
    training step).  The offset keeps the mean away from 0, as real features
    are, so that the kernels' shifted sums do real work.
    """
    shape = tuple(shape)
    if MAX_ELEMENTS is not None:
        rows = max(2, MAX_ELEMENTS // int(np.prod(shape[1:])))
        shape = (min(shape[0], rows), *shape[1:])
    key = (shape, dtype, order, offset, which)
    if key not in _DATA:
        rng = np.random.default_rng(which)
        X = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        X += offset
        if order == "F":
            if len(shape) != 2:
                raise NotImplementedError("Fortran order is benchmarked for 2-D")
            X = np.asfortranarray(X)
        if sum(a.nbytes for a in _DATA.values()) + X.nbytes > 2**30:
            _DATA.clear()  # a few arrays alive at most: some are 800 MB
        _DATA[key] = X
    return _DATA[key]


def set_threads():
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
