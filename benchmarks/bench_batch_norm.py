"""skbn against its peers: every operation on every shape, dtype and order.

Peers are a parameter (``skbn``, a plain NumPy class,
``StandardScaler``, ``torch``), so one asv run compares them on the same
machine; a combination a peer does not support is skipped.  Data is seeded
and built once per process; JIT compilation happens in ``setup``.
"""

import os
import subprocess
import sys

import numba
import numpy as np

from skbn._bench import PEERS, Peer

# name: (shape, feature axis)
SHAPES = {
    "10M x 4": ((10_000_000, 4), -1),
    "1M x 64": ((1_000_000, 64), -1),
    "100k x 1024": ((100_000, 1024), -1),
    "NCHW 64x64x56x56": ((64, 64, 56, 56), 1),
    "256 x 64": ((256, 64), -1),
}
THREADS = int(os.environ.get("SKBN_BENCH_THREADS", "2"))
_DATA = {}


def data(shape_name, dtype, order):
    """Seeded data, built once per process and shape."""
    key = (shape_name, dtype, order)
    if key not in _DATA:
        shape, _ = SHAPES[shape_name]
        rng = np.random.default_rng(0)
        X = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        X += 3.0
        if order == "F":
            if len(shape) != 2:
                raise NotImplementedError("Fortran order is benchmarked for 2-D")
            X = np.asfortranarray(X)
        _DATA.clear()  # keep one array alive: some are 800 MB
        _DATA[key] = X
    return _DATA[key]


class _Operation:
    """Times ``peer.<operation>(X)`` over the parameter grid."""

    operation = None
    params = (
        ["float32", "float64"],
        list(SHAPES),
        ["C", "F"],
        list(PEERS),
    )
    param_names = ["dtype", "shape", "order", "peer"]
    timeout = 600

    def setup(self, dtype, shape, order, peer):
        numba.set_num_threads(THREADS)
        X = data(shape, dtype, order)
        cls = PEERS[peer]
        kwargs = {"threads": THREADS} if peer == "torch" else {}
        self.peer = cls(X, SHAPES[shape][1], **kwargs)
        if getattr(cls, self.operation) is Peer._missing:
            raise NotImplementedError(f"{peer} has no {self.operation}")
        self.f = getattr(self.peer, self.operation)
        self.X = (
            getattr(self.peer, "Y", X) if self.operation == "inverse_transform" else X
        )
        self.f(self.X)  # compile, and fault in the pages of first use

    def time_op(self, dtype, shape, order, peer):
        self.f(self.X)

    def peakmem_op(self, dtype, shape, order, peer):
        self.f(self.X)


class Fit(_Operation):
    operation = "fit"


class Transform(_Operation):
    operation = "transform"


class FitTransform(_Operation):
    operation = "fit_transform"


class PartialFitTransform(_Operation):
    operation = "partial_fit_transform"


class InverseTransform(_Operation):
    operation = "inverse_transform"


class PartialFitLoop:
    """A streaming loop: ``partial_fit`` over 100 batches of 256 x 64."""

    params = (["float32", "float64"], list(PEERS))
    param_names = ["dtype", "peer"]

    def setup(self, dtype, peer):
        numba.set_num_threads(THREADS)
        rng = np.random.default_rng(0)
        self.batches = [
            rng.standard_normal((256, 64)).astype(dtype) + 3.0 for _ in range(100)
        ]
        cls = PEERS[peer]
        if cls.partial_fit is Peer._missing:
            raise NotImplementedError(f"{peer} has no partial_fit")
        kwargs = {"threads": THREADS} if peer == "torch" else {}
        self.peer = cls(self.batches[0], -1, **kwargs)
        self.peer.partial_fit(self.batches[0])

    def time_partial_fit_100_batches(self, dtype, peer):
        for b in self.batches:
            self.peer.partial_fit(b)


class ColdStart:
    """Import + first ``fit_transform`` in a new process, kernel cache warm."""

    timeout = 300
    code = (
        "import time; t = time.perf_counter(); import numpy as np; "
        "from skbn import BatchNormalizer; "
        "BatchNormalizer().fit_transform(np.ones((1000, 8), np.float32)); "
        "print(time.perf_counter() - t)"
    )

    def setup(self):
        # A first run fills the on-disk kernel cache.
        subprocess.run([sys.executable, "-c", self.code], check=True)

    def track_cold_start_seconds(self):
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", self.code],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for _ in range(3)
        ]
        return float(np.median(runs))

    track_cold_start_seconds.unit = "seconds"
