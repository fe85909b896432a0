"""How a kernel cuts its work: blocks of rows, tasks, segment units, and
the per-task tables that the tasks fill, as functions inlined into the
kernels.

Every cut is a function of the shape only (see :mod:`skbn._core.plan`),
never of the thread count.
"""

import numpy as np
from numba import njit

from .common import JIT


@njit(inline="always", **JIT)
def block_count(n, block):
    """Blocks of at most ``block`` that cover ``n`` items."""
    return (n + block - 1) // block


@njit(inline="always", **JIT)
def block_range(b, block, n):
    """Items ``[i0, i1)`` of block ``b`` of ``n`` items cut into blocks of
    ``block``."""
    i0 = b * block
    return i0, min(n, i0 + block)


@njit(inline="always", **JIT)
def task_tables(n_tasks, d):
    """The zeroed ``(n_tasks, d)`` count, mean and M2 tables of the moment
    kernels, a row per task, for the merge in task order after the tasks."""
    return np.zeros((n_tasks, d)), np.zeros((n_tasks, d)), np.zeros((n_tasks, d))


@njit(inline="always", **JIT)
def split_index(u, n):
    """``(u // n, u % n)``: the outer and inner index of the flat index
    ``u`` over an inner axis of length ``n``."""
    return u // n, u % n


@njit(inline="always", **JIT)
def segment_units(shape, seg_len):
    """``(k_per, n_units)`` of the segments layout of ``shape``
    ``(outer, c, inner)``: the pieces per run and the units in all (see
    :func:`segment_unit`)."""
    outer, c, inner = shape
    k_per = block_count(inner, seg_len)
    return k_per, outer * c * k_per


@njit(inline="always", **JIT)
def segment_unit(u, k_per, c, seg_len, inner):
    """Unit ``u`` of the segments layout: ``(o, channel, i0, i1)``.

    Units run in memory order, ``k_per`` pieces of at most ``seg_len`` per
    ``(o, channel)`` run of length ``inner``.
    """
    oc, k = split_index(u, k_per)
    o, ch = split_index(oc, c)
    return o, ch, k * seg_len, min(inner, (k + 1) * seg_len)


@njit(inline="always", **JIT)
def task_range(t, n_tasks, n_units):
    """Units ``[u0, u1)`` of task ``t``: ``n_units`` cut into ``n_tasks``
    contiguous ranges in order, a function of the shape only."""
    return t * n_units // n_tasks, (t + 1) * n_units // n_tasks
