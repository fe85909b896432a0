"""What every CPU kernel module shares: the JIT option dicts and the
compilation of a parallel kernel with its serial twin.

The option dicts decide the bits: which functions may be rewritten by the
optimizer and which run in IEEE arithmetic (see the comments at each).  A
function keeps its dict wherever it lives, so moving code between modules
changes no result.
"""

import types

from numba import njit

from ..._config import FASTMATH

JIT = {"cache": True, "fastmath": FASTMATH, "nogil": True}
# The per-block and per-feature formulas (merges, a block's M2 from its sums,
# the EMA, the coefficients) run in IEEE arithmetic, as separate functions.
# A compiled function that calls another holds a copy of the callee, linked
# and optimized again with the caller; the process that compiles runs the
# callee's own code, a process that loads from Numba's cache runs the copy
# (issue 13, class 5).  Under fast-math flags the optimizer may rewrite each
# copy differently (``s * s / n`` as ``s * (s / n)``, a product fused into an
# FMA), so the same kernel gave bits that depended on whether it had been
# compiled or loaded.  Without the flags every copy computes the same IEEE
# operations.  They cost nothing measurable: each runs once per block or per
# feature, not per value.  ``exact_sub`` and ``population_var`` use the same
# flags for their own reasons (see them).
IEEE = {**JIT, "fastmath": False}
# The moment kernels run without ``reassoc``, too: under it the optimizer
# vectorized a sum along a run in a different order in the copy of a
# parallel kernel's loop body that a cache load runs than in the one the
# compiling process runs (1 ulp of a mean or an M2; issue 13, class 5).
# Their sums along a run are written in explicit lanes instead
# (:func:`lane_sums`), which vectorize without it; their sums across
# features (the rows kernels) are element-wise and need no flag.  The affine
# kernels keep it: their output is element-wise and the only sum they take,
# the non-finite flag, is 0 or NaN in any order.
SUMS_JIT = {**JIT, "fastmath": FASTMATH - {"reassoc"}}


def parallel_kernel(options):
    """Compile a kernel twice: with threads (``prange``), returned, and
    without them, as its ``.serial`` attribute.

    The serial twin is for inputs too small to pay for waking the threads,
    and for callers on threads of their own (see :func:`skbn._core.plan.pick`);
    ``prange`` is ``range`` there.  Both use ``options``' fast-math flags
    (``SUMS_JIT``, ``JIT`` or ``IEEE``), so they give the same bits.  The twin's
    distinct name (``<kernel>_serial``) keeps the two apart in Numba's on-disk
    cache.

    Parameters
    ----------
    options : dict
        One of the option dicts above.

    Returns
    -------
    callable
        A decorator for the kernel's Python function.
    """

    def compile_both(f):
        kernel = njit(parallel=True, **options)(f)
        name = f"{f.__name__}_serial"
        g = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__)
        g.__qualname__ = name
        g.__doc__ = f.__doc__
        kernel.serial = njit(**options)(g)
        return kernel

    return compile_both
