"""Device functions shared by the CUDA kernels: the per-thread loops of each
layout, a thread's place in a launch, and the fixed-tree merges of a block.

:func:`chan_merge`, :func:`feature_scale` and :func:`ratio` are the CPU's
functions of :mod:`skbn._kernels.cpu.formulas` compiled for the device from
the same Python source: every merge, in a block and across blocks, is the one
update, and the normalize scale is the one formula.
"""

import math
from functools import cache

from numba import cuda

from ..cpu import formulas

chan_merge = cuda.jit(device=True)(formulas.chan_merge.py_func)
feature_scale = cuda.jit(device=True)(formulas.feature_scale.py_func)
ratio = cuda.jit(device=True)(formulas.ratio.py_func)


# -- device functions ------------------------------------------------------------------
#
# Both layouts are read through a 2-D view: rows ``x2 = x[:, :, 0]`` (n, d)
# walks down a column ``x2[i, fixed]``; segments ``x2 = x.reshape(outer * c,
# inner)`` walks along a row ``x2[fixed, i]``.  Indexing the kernel's argument
# directly (rather than a slice of it) keeps the loads in the global address
# space.


@cache
def device_functions(by_row, masked, weighted):
    """Per-thread loops for one variant.  ``by_row``: the index walks down a
    column; ``masked``: NaN is skipped; ``weighted``: one weight per element
    index.  The flags are closure constants, so each variant compiles without
    the branches of the others."""

    @cuda.jit(device=True)
    def load(x, fixed, i):
        if by_row:
            return float(x[i, fixed])
        return float(x[fixed, i])

    @cuda.jit(device=True)
    def load4(x, fixed, i, step):
        # Four independent loads keep enough bytes in flight for one thread
        # that walks a long strided sequence.
        return (
            load(x, fixed, i),
            load(x, fixed, i + step),
            load(x, fixed, i + 2 * step),
            load(x, fixed, i + 3 * step),
        )

    @cuda.jit(device=True)
    def store(out, fixed, i, y):
        if by_row:
            out[i, fixed] = y
        else:
            out[fixed, i] = y

    @cuda.jit(device=True)
    def first(x, fixed, start, stop, step):
        """``(found, value)``: the first (non-NaN, when masked) value of the
        sequence, the shift of a thread's shifted sums."""
        for i in range(start, stop, step):
            v = load(x, fixed, i)
            if v == v or not masked:
                return True, v
        return False, 0.0

    @cuda.jit(device=True)
    def add(v, wt, k, n, s, q):
        if masked:
            if v == v:
                dv = v - k
                wd = wt * dv
                return n + wt, s + wd, q + wd * dv
            return n, s, q
        dv = v - k
        return n + 1.0, s + dv, q + dv * dv

    @cuda.jit(device=True)
    def sums(x, fixed, w, start, stop, step, k):
        """``n, sum(w * (v - k)), sum(w * (v - k)**2)`` over the sequence."""
        n = 0.0
        s = 0.0
        q = 0.0
        i = start
        while i + 3 * step < stop:
            v0, v1, v2, v3 = load4(x, fixed, i, step)
            if weighted:
                w0 = w[i]
                w1 = w[i + step]
                w2 = w[i + 2 * step]
                w3 = w[i + 3 * step]
            else:
                w0 = w1 = w2 = w3 = 1.0
            n, s, q = add(v0, w0, k, n, s, q)
            n, s, q = add(v1, w1, k, n, s, q)
            n, s, q = add(v2, w2, k, n, s, q)
            n, s, q = add(v3, w3, k, n, s, q)
            i += 4 * step
        while i < stop:
            wi = w[i] if weighted else 1.0
            n, s, q = add(load(x, fixed, i), wi, k, n, s, q)
            i += step
        return n, s, q

    @cuda.jit(device=True)
    def affine(x, out, fixed, start, stop, step, m, a, b, bad):
        """``out = (x - m) * a + b`` over the sequence; returns whether an
        input was infinite (NaN passes through: it is allowed)."""
        i = start
        while i + 3 * step < stop:
            v0, v1, v2, v3 = load4(x, fixed, i, step)
            bad |= math.isinf(v0) | math.isinf(v1) | math.isinf(v2) | math.isinf(v3)
            store(out, fixed, i, (v0 - m) * a + b)
            store(out, fixed, i + step, (v1 - m) * a + b)
            store(out, fixed, i + 2 * step, (v2 - m) * a + b)
            store(out, fixed, i + 3 * step, (v3 - m) * a + b)
            i += 4 * step
        while i < stop:
            v = load(x, fixed, i)
            bad |= math.isinf(v)
            store(out, fixed, i, (v - m) * a + b)
            i += step
        return bad

    return first, sums, affine, load, store, load4


@cuda.jit(device=True)
def moments_of(n, s, q, k):
    """``(mean, m2, redo)`` from shifted sums; ``redo`` when more than half of
    ``q`` cancels (then M2 is recomputed around the mean, as in
    :func:`skbn._kernels.cpu.rows_moments`)."""
    if n > 0.0:
        f = s / n
        c = s * f
        return k + f, q - c, c > 0.5 * q
    return 0.0, 0.0, False


@cuda.jit(device=True)
def segments_unit(u, k_per, seg, c, ch, inner):
    """Row of ``x.reshape(outer * c, inner)`` and range ``[i0, i1)`` of unit
    ``u`` of channel ``ch``, plus its outer index (for the weight)."""
    o = u // k_per
    i0 = (u - o * k_per) * seg
    return o * c + ch, o, i0, min(inner, i0 + seg)


@cuda.jit(device=True)
def tree_merge(sn, sm, sq, me, slot, stride, count):
    """Merge slots ``slot + m * stride`` for ``m < count`` into ``m == 0``.

    ``me`` is this thread's ``m``.  A fixed binary tree (pairs at distance 1,
    2, 4, ...), so the order does not depend on timing.  Every thread of the
    block calls it (it synchronizes).
    """
    step = 1
    while step < count:
        cuda.syncthreads()
        if me < count and me % (2 * step) == 0 and me + step < count:
            o = slot + step * stride
            sn[slot], sm[slot], sq[slot] = chan_merge(
                sn[slot], sm[slot], sq[slot], sn[o], sm[o], sq[o]
            )
        step *= 2
    cuda.syncthreads()


@cuda.jit(device=True)
def rows_place(cb, rp, n_rows, d, chunks):
    """A rows-layout thread's place: ``(tid, r, j, chunk, active, start, stop)``.

    Thread ``tid`` of the block owns column ``j`` and walks rows ``start,
    start + rp, ...`` below ``stop``, row ``r`` of the block's ``rp`` rows
    within row chunk ``chunk``; ``active`` is False for a thread past the
    last column or the block's rows.
    """
    tid = cuda.threadIdx.x
    r = tid // cb
    j = cuda.blockIdx.x * cb + tid % cb
    chunk = cuda.blockIdx.y
    r0 = chunk * n_rows // chunks
    r1 = (chunk + 1) * n_rows // chunks
    return tid, r, j, chunk, r < rp and j < d, r0 + r, r1


@cuda.jit(device=True)
def segments_place(it, rp, c, k_per, n_rows, chunks):
    """A segments-layout thread's place: ``(tid, ti, ch, chunk, active, u0,
    u1)``.

    Thread ``tid`` of the block reads inner offset ``ti`` of the units
    ``u0, u0 + rp, ...`` below ``u1`` of channel ``ch`` (see
    :func:`segments_unit`) in chunk ``chunk``; ``active`` is False for a
    thread past the block's units.
    """
    tid = cuda.threadIdx.x
    ru = tid // it
    chunk = cuda.blockIdx.y
    units = n_rows // c * k_per
    u0 = chunk * units // chunks + ru
    u1 = (chunk + 1) * units // chunks
    return tid, tid % it, cuda.blockIdx.x, chunk, ru < rp, u0, u1
