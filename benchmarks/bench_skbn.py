"""skbn's own benchmarks: the time series that track skbn from commit to commit.

Only skbn runs here, on a handful of cases, so that each graph of the
published asv site is a few lines that mean one thing each.  This module is
the quick profile (``asv run --quick --bench bench_skbn``, see
``benchmarks/README.md``).  The comparisons with NumPy, ``StandardScaler``
and torch are in ``bench_peers.py``.
"""

import subprocess
import sys

import numpy as np

from skbn import BatchNormalizer
from skbn import functional as F

from ._data import array, set_threads

# name: (shape, dtype, feature axis).  The shapes of the benchmarks README's
# first table; one float64 case, one image batch normalized per channel.
CASES = {
    "1M x 64 float32": ((1_000_000, 64), "float32", -1),
    "1M x 64 float64": ((1_000_000, 64), "float64", -1),
    "NCHW 64x64x56x56 float32": ((64, 64, 56, 56), "float32", 1),
}


class Estimator:
    """``BatchNormalizer``'s methods on full-size arrays."""

    params = [list(CASES)]
    param_names = ["case"]
    timeout = 300

    def setup(self, case):
        set_threads()
        shape, dtype, axis = CASES[case]
        self.X = array(shape, dtype)
        self.bn = BatchNormalizer(axis=axis).fit(self.X)
        # The first call of each method loads its kernels from Numba's cache
        # (or compiles them) and faults in the output's pages: not timed.
        self.bn.transform(self.X)
        self.bn.partial_fit_transform(self.X)

    def time_fit(self, case):
        self.bn.fit(self.X)

    def time_partial_fit(self, case):
        self.bn.partial_fit(self.X)

    def time_transform(self, case):
        self.bn.transform(self.X)

    def time_fit_transform(self, case):
        self.bn.fit_transform(self.X)

    def time_partial_fit_transform(self, case):
        self.bn.partial_fit_transform(self.X)

    def peakmem_fit(self, case):
        # fit makes no copy of X: this stays at the data's size plus the
        # interpreter's.
        self.bn.fit(self.X)


class SmallBatches:
    """A stream of 100 batches of 256 x 64 float32, the per-call cost."""

    n_batches = 100

    def setup(self):
        set_threads()
        self.batches = [array((256, 64), which=i) for i in range(self.n_batches)]
        self.bn = BatchNormalizer(momentum=0.9).fit(self.batches[0])
        for b in self.batches[:2]:  # kernels loaded, as in Estimator.setup
            self.bn.partial_fit(b)
            self.bn.transform(b)
            self.bn.partial_fit_transform(b)
            self.bn.fit_transform(b)

    def time_partial_fit(self):
        for b in self.batches:
            self.bn.partial_fit(b)

    def time_transform(self):
        for b in self.batches:
            self.bn.transform(b)

    def time_partial_fit_transform(self):
        for b in self.batches:
            self.bn.partial_fit_transform(b)

    def time_fit_transform(self):
        for b in self.batches:
            self.bn.fit_transform(b)


class Training:
    """``skbn.functional``'s forward and backward passes, 1M x 64 float32."""

    params = [["batch", "layer", "group"]]
    param_names = ["norm"]
    timeout = 300
    shape = (1_000_000, 64)
    n_groups = 8

    def setup(self, norm):
        set_threads()
        self.x = array(self.shape)
        self.dy = array(self.shape, offset=0.0, which=1)
        width = self.shape[1]
        gamma = np.ones(width, np.float32)
        beta = np.zeros(width, np.float32)
        if norm == "batch":
            self.forward = lambda: F.batch_norm_forward(self.x, gamma, beta)
        elif norm == "layer":
            self.forward = lambda: F.layer_norm_forward(self.x, gamma, beta)
        else:
            self.forward = lambda: F.group_norm_forward(
                self.x, gamma, beta, n_groups=self.n_groups
            )
        self.backward = getattr(F, f"{norm}_norm_backward")
        _, self.cache = self.forward()
        self.backward(self.dy, self.cache)

    def time_forward(self, norm):
        self.forward()

    def time_backward(self, norm):
        self.backward(self.dy, self.cache)

    def time_forward_backward(self, norm):
        _, cache = self.forward()
        self.backward(self.dy, cache)


class ColdStart:
    """Import plus the first ``fit_transform`` in a new process.

    The kernel cache is warm (``setup`` fills it), as it is for a user after
    the first run.  A median of three processes.
    """

    timeout = 120
    code = (
        "import time; t = time.perf_counter(); import numpy as np; "
        "from skbn import BatchNormalizer; "
        "BatchNormalizer().fit_transform(np.ones((1000, 8), np.float32)); "
        "print(time.perf_counter() - t)"
    )
    runs = 3

    def setup(self):
        subprocess.run([sys.executable, "-c", self.code], check=True)

    def track_cold_start_seconds(self):
        times = [
            float(
                subprocess.run(
                    [sys.executable, "-c", self.code],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for _ in range(self.runs)
        ]
        return float(np.median(times))

    track_cold_start_seconds.unit = "seconds"
