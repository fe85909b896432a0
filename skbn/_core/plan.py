"""How the work of one kernel call is cut: serial or parallel, tasks, blocks,
folded rows.

Every choice here is a function of the data's shape (and of the constants in
:mod:`skbn._config`, read at call time so that tests can patch them), never
of the thread count, so that the merge order, and every bit of a result, is
the same for 1, 2 or 64 threads.
"""

import math

import numpy as np

from .. import _config


def pick(kernel, n_elements):
    """``kernel`` (compiled with threads) for large inputs, its serial twin
    ``kernel.serial`` for small ones and wherever Numba's threading layer is
    not safe to launch from several Python threads (see
    :func:`skbn._config.use_parallel`).

    Parameters
    ----------
    kernel : callable
        A kernel of :func:`skbn._kernels.cpu.parallel_kernel`: the two
        compilations give the same bits.
    n_elements : int
        Size of the input.

    Returns
    -------
    callable
    """
    return kernel if _config.use_parallel(n_elements) else kernel.serial


def n_tasks(n_elements, n_units):
    """Tasks for a kernel call: a function of the shape only.

    Parameters
    ----------
    n_elements : int
        Size of the input.
    n_units : int
        How many pieces (blocks, segments) the work can be cut into.

    Returns
    -------
    int
    """
    by_size = n_elements // _config.MIN_TASK_ELEMENTS
    return int(max(1, min(by_size, _config.MAX_TASKS, n_units)))


def block_rows(d, itemsize):
    """Rows of width ``d`` in one cache-resident block of the rows kernels.

    Parameters
    ----------
    d : int
        Row width (features).
    itemsize : int
        Bytes per value.

    Returns
    -------
    int
    """
    return max(_config.MIN_BLOCK_ROWS, _config.ROW_BLOCK_BYTES // (d * itemsize))


def fold(n, d):
    """Rows folded together so that the kernels' feature loop is wide enough.

    A rows kernel's inner loop runs over the ``d`` features of one row; with
    few features it is too short to vectorize.  Viewing ``k`` consecutive rows
    as one row of ``k * d`` values fixes that; the ``k`` statistics of each
    feature are then combined (see :func:`over_rows`).

    Parameters
    ----------
    n, d : int
        Rows and features.

    Returns
    -------
    int
        ``k``; 1 means no folding.
    """
    if d >= _config.FOLD_MIN_WIDTH:
        return 1
    k = math.ceil(_config.FOLD_MIN_WIDTH / d)
    return k if n >= 2 * k else 1


def over_rows(run, arrays, vectors, k):
    """Run a rows kernel over 2-D arrays with ``k`` rows folded into one.

    The first rows, a multiple of ``k``, are seen as ``k`` times wider rows
    (the per-feature ``vectors`` tiled ``k`` times to match); the rows left
    over are seen as they are.

    Parameters
    ----------
    run : callable
        Called as ``run(*views, *vectors)``, once per part.
    arrays : sequence of ndarray of shape (n, d)
        C-contiguous arrays of one shape (input, gradient, output, ...).
    vectors : sequence of ndarray of shape (d,)
        Per-feature arguments of ``run``.
    k : int
        From :func:`fold`.

    Returns
    -------
    wide, rest : object or None
        What ``run`` returned for the folded rows and for the rows left over;
        None for a part without rows.
    """
    n, d = arrays[0].shape
    n_main = n - n % k if k > 1 else 0
    wide = rest = None
    if n_main:
        views = [a[:n_main].reshape(n_main // k, k * d) for a in arrays]
        wide = run(*views, *(np.tile(v, k) for v in vectors))
    if n_main < n:
        rest = run(*(a[n_main:] for a in arrays), *vectors)
    return wide, rest
