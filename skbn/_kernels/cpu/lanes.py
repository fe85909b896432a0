"""Sums along a contiguous run, in explicit lanes.

The moment and backward kernels run without ``reassoc`` (``SUMS_JIT``, see
:mod:`.common`): under it the optimizer may order a sum differently in the
copy of a parallel loop body that a load from Numba's cache runs.  Their
sums along a run are written here in lanes instead (element ``j`` of each
chunk of ``LANES`` values adds to lane ``j``), a loop without a reduction
that LLVM vectorizes without the flag; the lanes are then folded in a fixed
tree and the tail is added in index order, so the order of every addition
is fixed by the code.  All are inlined into their callers.
"""

import numpy as np
from numba import njit

from .common import SUMS_JIT

# Lanes of :func:`lane_sums`: a chunk is four AVX-512 registers of float64;
# a power of two, at least 8 (see :func:`fold_lanes`).
LANES = 32


@njit(inline="always", **SUMS_JIT)
def fold_lanes(lanes):
    """The sum of ``lanes`` (a power of two long, at least 8), in a fixed
    tree: the upper half adds onto the lower half down to eight lanes (an
    element-wise loop, which vectorizes), then the eight in pairs.  A sum
    lane by lane would be a chain of dependent additions, a third of a short
    run's own time.  Overwrites ``lanes``."""
    h = lanes.shape[0] // 2
    while h >= 8:
        for j in range(h):
            lanes[j] += lanes[j + h]
        h //= 2
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
        (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
    )


@njit(inline="always", **SUMS_JIT)
def scratch_lanes():
    """Two scratch lanes ``(LANES,)``, one per sum, for a task's calls of
    the functions here."""
    return np.empty(LANES), np.empty(LANES)


@njit(inline="always", **SUMS_JIT)
def _start_lanes(la, lb, n, per):
    """Zero the lanes; returns their width and where the sweeps of ``per``
    chunks of a run of ``n`` values end."""
    width = la.shape[0]
    la[:] = 0.0
    lb[:] = 0.0
    return width, n - n % (per * width)


@njit(inline="always", **SUMS_JIT)
def _chunk_pair(v, i0, width):
    """The two chunks of ``width`` values of ``v`` from ``i0``."""
    return v[i0 : i0 + width], v[i0 + width : i0 + 2 * width]


@njit(inline="always", **SUMS_JIT)
def lane_sums(v, k, ls, lq):
    """``(sum(v - k), sum((v - k)**2))`` of the contiguous run ``v``, summed
    in an order fixed by the code; NaN propagates.

    ``ls`` and ``lq`` (L,) are scratch lanes: element ``j`` of each chunk of
    ``L`` values adds to lane ``j`` (a loop without a reduction, which LLVM
    vectorizes without ``reassoc``), four chunks per sweep so that the lanes
    are loaded and stored a quarter as often; the lanes are summed by
    :func:`fold_lanes`, then the tail is added in index order.
    """
    n = v.shape[0]
    width, m = _start_lanes(ls, lq, n, 4)
    for i0 in range(0, m, 4 * width):
        u0, u1 = _chunk_pair(v, i0, width)
        u2, u3 = _chunk_pair(v, i0 + 2 * width, width)
        for j in range(width):
            a0 = u0[j] - k
            a1 = u1[j] - k
            a2 = u2[j] - k
            a3 = u3[j] - k
            ls[j] += (a0 + a1) + (a2 + a3)
            lq[j] += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3)
    m1 = n - n % width
    for i0 in range(m, m1, width):
        u0 = v[i0 : i0 + width]
        for j in range(width):
            a0 = u0[j] - k
            ls[j] += a0
            lq[j] += a0 * a0
    s = fold_lanes(ls)
    q = fold_lanes(lq)
    for i in range(m1, n):
        a0 = v[i] - k
        s += a0
        q += a0 * a0
    return s, q


@njit(inline="always", **SUMS_JIT)
def masked_lane_sums(v, w, k, la, lb, second):
    """Weighted sums over the values of the run ``v`` that are not NaN, in an
    order fixed by the code (the lanes of :func:`lane_sums`, two chunks per
    sweep): ``(sum(w), sum(w * d))`` with ``d = v - k``, or with ``second``
    ``(sum(w * d), sum(w * d**2))``.

    A weight broadcast along the run (stride 0: no ``sample_weight``, or one
    per sample of a segments layout) is read once: a strided load would keep
    the loop from vectorizing.  The arithmetic, and so the result, is the
    same as with the weight repeated.
    """
    n = v.shape[0]
    same = n > 0 and w.strides[0] == 0
    wc = w[0] if n > 0 else 0.0
    width, m = _start_lanes(la, lb, n, 2)
    for i0 in range(0, m, 2 * width):
        u0, u1 = _chunk_pair(v, i0, width)
        w0, w1 = _chunk_pair(w, i0, width)
        for j in range(width):
            a0 = u0[j]
            a1 = u1[j]
            ok0 = a0 == a0
            ok1 = a1 == a1
            p0 = (wc if same else w0[j]) if ok0 else 0.0
            p1 = (wc if same else w1[j]) if ok1 else 0.0
            d0 = a0 - k if ok0 else 0.0
            d1 = a1 - k if ok1 else 0.0
            if second:
                la[j] += p0 * d0 + p1 * d1
                lb[j] += p0 * d0 * d0 + p1 * d1 * d1
            else:
                la[j] += p0 + p1
                lb[j] += p0 * d0 + p1 * d1
    sa = fold_lanes(la)
    sb = fold_lanes(lb)
    for i in range(m, n):
        a0 = v[i]
        if a0 == a0:
            d0 = a0 - k
            if second:
                sa += w[i] * d0
                sb += w[i] * d0 * d0
            else:
                sa += w[i]
                sb += w[i] * d0
    return sa, sb


@njit(inline="always", **SUMS_JIT)
def grad_lane_sums(dy, x, m, la, lb):
    """``(sum(dy), sum(dy * (x - m)))`` of the runs ``dy`` and ``x``, summed
    in an order fixed by the code: the lanes of
    :func:`skbn._kernels.cpu.fold_lanes`, two chunks per sweep, then the
    tail in index order.  Every kernel of this module runs without
    ``reassoc`` (``SUMS_JIT``): under it the optimizer may order a sum, or
    regroup a formula such as ``k * dy - p - q * (x - m)``, differently in
    the copy that a load from Numba's cache runs."""
    n = dy.shape[0]
    width, m2 = _start_lanes(la, lb, n, 2)
    for i0 in range(0, m2, 2 * width):
        g0, g1 = _chunk_pair(dy, i0, width)
        x0, x1 = _chunk_pair(x, i0, width)
        for j in range(width):
            a0 = g0[j] * 1.0
            a1 = g1[j] * 1.0
            la[j] += a0 + a1
            lb[j] += a0 * (x0[j] - m) + a1 * (x1[j] - m)
    m1 = n - n % width
    for i0 in range(m2, m1, width):
        g0 = dy[i0 : i0 + width]
        x0 = x[i0 : i0 + width]
        for j in range(width):
            a0 = g0[j] * 1.0
            la[j] += a0
            lb[j] += a0 * (x0[j] - m)
    s = fold_lanes(la)
    q = fold_lanes(lb)
    for i in range(m1, n):
        a0 = dy[i] * 1.0
        s += a0
        q += a0 * (x[i] - m)
    return s, q


@njit(inline="always", **SUMS_JIT)
def scaled_grad_lane_sums(dy, x, m, w, la, lb):
    """``(sum(dy * w), sum(dy * w * (x - m)))`` in the order of
    :func:`grad_lane_sums` (one chunk per sweep)."""
    n = dy.shape[0]
    width, m1 = _start_lanes(la, lb, n, 1)
    for i0 in range(0, m1, width):
        g0 = dy[i0 : i0 + width]
        x0 = x[i0 : i0 + width]
        w0 = w[i0 : i0 + width]
        for j in range(width):
            a0 = g0[j] * w0[j]
            la[j] += a0
            lb[j] += a0 * (x0[j] - m)
    s = fold_lanes(la)
    q = fold_lanes(lb)
    for i in range(m1, n):
        a0 = dy[i] * w[i]
        s += a0
        q += a0 * (x[i] - m)
    return s, q
