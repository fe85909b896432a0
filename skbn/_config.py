"""Numba settings for every skbn kernel, in one place.

Tests patch these values (for example a tiny block size so that a 5-row input
spans several blocks and exercises the merge).  The kernels read the block
sizes as arguments, so a change here takes effect without recompiling.

Compiled kernels are cached on disk (``cache=True``).  Numba writes the cache
next to the source file and, when the package folder is not writable (a
system-wide or read-only install), falls back by itself to a user-wide cache
directory; ``NUMBA_CACHE_DIR`` overrides both.  ``tests/test_config.py`` checks
the read-only case.

Importing this module changes no Numba setting: which threading layer runs is
Numba's choice (or the user's, ``NUMBA_THREADING_LAYER``), and
:func:`use_parallel` runs the serial kernels where that layer cannot take
launches from several threads at once.
"""

import functools
import sys

# Fast-math flags without ``nnan`` and ``ninf``: NaN and inf must keep their
# IEEE meaning because NaN marks missing values and inf must be detected.
# ``reassoc`` lets LLVM vectorize the affine kernels' non-finite flag (a sum
# that is 0 or NaN in any order); ``contract`` allows FMA.  The moment kernels
# drop ``reassoc`` and the per-block formulas run without any flag, so that
# their bits cannot depend on how the optimizer treated a copy of them (see
# ``skbn._kernels.cpu``).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Rows layout (n_rows, n_features): a block of rows is reduced in one pass of
# shifted sums and, in the rare case the exactness guard fires, read a second
# time while it still sits in the L2 cache.  Each block ends with a merge per
# feature (a division and a few multiplies), so on wide rows a block must hold
# many rows for the merge to cost little: with 1024 float32 features, 64 KiB
# blocks (16 rows) made fit 1.4 to 1.5x slower than 256 KiB (64 rows) did
# (benchmarks/README.md).  Bytes per block:
ROW_BLOCK_BYTES = 256 * 1024
# Fewest rows in a block, for very wide data.
MIN_BLOCK_ROWS = 4

# Segment layout (outer, channels, inner): each contiguous run of one channel
# is cut into pieces of at most this many elements.
SEGMENT_LEN = 8192
# With a single outer index and at least this many channels, each channel is
# reduced by one thread on its own (enough channels to keep the threads busy).
MIN_CHANNELS_PER_ROW = 64

# Work is split into a number of tasks that depends on the data's shape only,
# never on the thread count, so that the merge order, and therefore every bit
# of the result, is the same for 1, 2 or 64 threads.
MAX_TASKS = 64
MIN_TASK_ELEMENTS = 1 << 16
# scipy.sparse CSR data: the per-task tables of the moments kernel (seven
# 8-byte values per feature and task) take at most this many bytes; data too
# wide for two tasks is converted to CSC (one column per iteration) instead.
SPARSE_TABLE_BYTES = 64 << 20
# Inputs smaller than this run on the serial twin of each kernel: waking the
# thread pool costs more than the work (a streaming loop of small batches).
MIN_PARALLEL_ELEMENTS = 1 << 17

# Data with fewer features than this (and many rows) is folded into a wider
# view so that the inner loop over features is long enough to vectorize.
FOLD_MIN_WIDTH = 64

# -- CUDA (skbn._kernels.cuda) ---------------------------------------------------
# Threads per block of the reduction and normalize kernels (a multiple of 32).
# The CUDA kernels are compiled per value (the shared-memory size depends on
# it), so tests may patch it down to a few threads.
CUDA_THREADS_PER_BLOCK = 256
# Threads per block of the kernel that merges the per-block partial moments.
CUDA_MERGE_THREADS = 128
# Blocks of a reduction grid, at most: about one wave of 256-thread blocks on
# an H100 (132 SMs x 8 blocks).  Like MAX_TASKS, the grid is a function of the
# shape only, so the merge order, and every bit of the result, is the same on
# any GPU.
CUDA_MAX_BLOCKS = 1024
# Fewest elements a block reduces: fewer blocks for small inputs, so that the
# merge has little to do.
CUDA_MIN_BLOCK_ELEMENTS = 1 << 14
# Segment layout: a contiguous run of one channel is cut into pieces of at
# most this many elements, so that few, long runs still spread over blocks.
CUDA_SEGMENT_LEN = 1 << 16

# -- Numba threading layer -------------------------------------------------------
# skbn's estimators may be called from several Python threads at once
# (ThreadPoolExecutor, joblib's threading backend, a web server), each launching
# parallel kernels.  Numba's ``workqueue`` layer aborts the process on such
# concurrent launches; ``tbb`` and ``omp`` are thread-safe.  skbn changes no
# Numba setting (importing a library must not change the process): it asks
# which layer Numba will load, and when that is not a thread-safe one it runs
# the serial twin of every kernel instead, which is slower on large inputs but
# never crashes.  Install ``tbb`` (``pip install tbb``) or an OpenMP runtime to
# get threaded kernels in that case.  Process pools (joblib's default ``loky``
# backend, GridSearchCV(n_jobs=k)) need nothing: loky sets NUMBA_NUM_THREADS in
# each worker to cpu_count // k, so the workers do not oversubscribe the
# machine.  docs/guide/statistics.md says the same for users.
THREADSAFE_LAYERS = ("tbb", "omp")

# The layers Numba tries, in order, for each value of NUMBA_THREADING_LAYER
# (numba.np.ufunc.parallel._launch_threads); "default" follows
# NUMBA_THREADING_LAYER_PRIORITY and a layer's own name asks for it alone.
# Linux's GNU OpenMP is not fork-safe, so "forksafe" skips omp there.
_LAYERS_FOR = {
    "safe": ("tbb",),
    "threadsafe": ("tbb", "omp"),
    "forksafe": ("tbb", "workqueue")
    if sys.platform.startswith("linux")
    else ("tbb", "omp", "workqueue"),
}


def _loadable(layer):
    """Whether Numba can load the threading layer ``layer`` in this process."""
    import importlib

    from numba.np.ufunc import parallel

    try:
        if layer == "tbb":
            # Numba refuses a TBB older than 2021.6 even where tbbpool imports.
            check = getattr(parallel, "_check_tbb_version_compatible", None)
            if check is not None:
                check()
        importlib.import_module(f"numba.np.ufunc.{layer}pool")
    except Exception:  # missing or incompatible runtime library
        return False
    return True


def expected_threading_layer():
    """The threading layer Numba runs, or will load, for parallel kernels.

    Once Numba has started its threads, :func:`numba.threading_layer` tells.
    Before that, the layer is predicted the way Numba chooses it: an explicit
    ``NUMBA_THREADING_LAYER`` (``numba.config.THREADING_LAYER``) is honoured,
    and ``"default"`` tries ``NUMBA_THREADING_LAYER_PRIORITY`` (tbb, omp,
    workqueue) in order.  Nothing is started or changed.

    Returns
    -------
    layer : str or None
        ``"tbb"``, ``"omp"`` or ``"workqueue"``; None when no layer can be
        loaded (Numba would raise on the first parallel kernel).
    """
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # Numba's threads have not started yet
        pass
    requested = str(numba.config.THREADING_LAYER).lower()
    if requested == "default":
        candidates = tuple(numba.config.THREADING_LAYER_PRIORITY)
    else:
        candidates = _LAYERS_FOR.get(requested, (requested,))
    for layer in candidates:
        # workqueue is built into Numba: always there.
        if layer == "workqueue" or _loadable(layer):
            return layer
    return None


@functools.cache
def parallel_is_threadsafe():
    """Whether parallel kernels may be launched from several Python threads.

    True when the threading layer Numba loads is ``tbb`` or ``omp``
    (:func:`expected_threading_layer`).  Decided on the first call, after
    ``import skbn`` and any Numba setting the program makes first, and cached;
    ``parallel_is_threadsafe.cache_clear()`` asks again.

    Returns
    -------
    bool
    """
    return expected_threading_layer() in THREADSAFE_LAYERS


def use_parallel(n_elements):
    """Whether a kernel over ``n_elements`` values takes its threaded form.

    Parameters
    ----------
    n_elements : int
        Values the kernel reads.

    Returns
    -------
    bool
        ``n_elements >= MIN_PARALLEL_ELEMENTS`` (read at each call, so tests
        may patch it) and a thread-safe layer (:func:`parallel_is_threadsafe`);
        otherwise the serial twin runs.
    """
    return n_elements >= MIN_PARALLEL_ELEMENTS and parallel_is_threadsafe()
