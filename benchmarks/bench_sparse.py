"""skbn against ``StandardScaler(with_mean=False)`` on scipy.sparse data.

``BatchNormalizer(with_mean=False, momentum=None)`` computes the statistics
``StandardScaler`` computes; both run ``fit``, ``transform`` and
``fit_transform`` on the same random (fixed-state) 1M x 1000 CSR or CSC matrix
(:func:`skbn._bench.sparse_data`), built once per process.  JIT compilation
happens in ``setup``.
"""

import os

import numba

from skbn._bench import sparse_cases, sparse_data

THREADS = int(os.environ.get("SKBN_BENCH_THREADS", "2"))
SHAPE = (1_000_000, 1000)
_DATA = {}


def data(fmt, density):
    """Random sparse data (a fixed state), built once per process and case."""
    key = (fmt, density)
    if key not in _DATA:
        _DATA.clear()  # keep one matrix alive
        _DATA[key] = sparse_data(SHAPE, density, fmt)
    return _DATA[key]


class Sparse:
    """Times ``<peer> <operation>`` of :func:`skbn._bench.sparse_cases`."""

    params = (
        ["csr", "csc"],
        [0.001, 0.01],
        ["skbn", "StandardScaler"],
        ["fit", "transform", "fit_transform"],
    )
    param_names = ["format", "density", "peer", "operation"]
    timeout = 600

    def setup(self, fmt, density, peer, operation):
        numba.set_num_threads(THREADS)
        self.f = sparse_cases(data(fmt, density))[f"{peer} {operation}"]
        self.f()  # compile, and fault in the pages of first use

    def time_op(self, fmt, density, peer, operation):
        self.f()

    def peakmem_op(self, fmt, density, peer, operation):
        self.f()
