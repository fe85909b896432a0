"""Numba settings for every skbn kernel, in one place.

Tests patch these values (for example a tiny block size so that a 5-row input
spans several blocks and exercises the merge).  The kernels read the block
sizes as arguments, so a change here takes effect without recompiling.

Compiled kernels are cached on disk (``cache=True``).  Numba writes the cache
next to the source file and, when the package folder is not writable (a
system-wide or read-only install), falls back by itself to a user-wide cache
directory; ``NUMBA_CACHE_DIR`` overrides both.  ``tests/test_config.py`` checks
the read-only case.
"""

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
# concurrent launches; ``tbb`` and ``omp`` are thread-safe.  Unless the user
# chose a layer (NUMBA_THREADING_LAYER), skbn asks Numba for a thread-safe one
# when one can be loaded, and otherwise runs the serial twin of every kernel
# (MIN_PARALLEL_ELEMENTS below), which is slower on large inputs but never
# crashes.  Install ``tbb`` (``pip install tbb``) or an OpenMP runtime to get
# threaded kernels in that case.  The choice is made before the first parallel
# kernel runs and has no effect when Numba has already started its threads.
# Process pools (joblib's default ``loky`` backend, GridSearchCV(n_jobs=k))
# need nothing: loky sets NUMBA_NUM_THREADS in each worker to cpu_count // k,
# so the workers do not oversubscribe the machine.
THREADSAFE_LAYER = None


def _choose_threading_layer():
    import importlib
    import os

    import numba

    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER not in (
        "default",
        "",
    ):
        return numba.config.THREADING_LAYER
    for layer in ("tbb", "omp"):
        try:
            importlib.import_module(f"numba.np.ufunc.{layer}pool")
        except Exception:  # missing or incompatible runtime library
            continue
        numba.config.THREADING_LAYER = "threadsafe"
        return layer
    return None


THREADSAFE_LAYER = _choose_threading_layer()
if THREADSAFE_LAYER in (None, "workqueue"):
    MIN_PARALLEL_ELEMENTS = 1 << 62  # serial kernels only: see above
