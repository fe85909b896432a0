"""``numba.cuda`` kernels and their host drivers.

The GPU twin of :mod:`skbn._kernels.cpu`, imported only when a CUDA path is
used (``import skbn`` never imports ``numba.cuda``).  The kernels take the same
C-contiguous 3-D view ``(outer, features, inner)`` as the CPU kernels (see
:mod:`skbn._layout`) and check nothing; the drivers at the bottom allocate,
launch and copy the few per-feature numbers that cross to the host.

Statistics (two levels, float64 accumulation whatever the input dtype):

1. A reduction kernel: each thread reduces many elements of one feature with
   coalesced loads (four in flight per iteration) into shifted sums around its
   first value, turns them into moments ``(count, mean, M2)`` with one
   division, and the threads of a block that hold the same feature merge their
   moments in a fixed tree in shared memory.  One partial per block and
   feature is written.  A thread whose shifted sums would cancel by more than
   half (its first value far from its mean compared to the spread, as for the
   CPU kernel :func:`skbn._kernels.cpu.rows_moments`) recomputes its M2 from
   the mean in a second pass, so a constant feature has M2 exactly 0.
2. A tiny merge kernel, one block per feature, merges the partials in a fixed
   order.  Merging on the device keeps the training-mode forward free of a
   round trip to the host between the reduction and the normalize: the merge
   kernel also writes the per-feature ``scale`` and ``shift`` that the
   normalize kernel reads.  Only the merged moments (three numbers per
   feature) are copied to the host, where the running statistics are updated
   by the same routine as on the CPU (:func:`skbn._moments.ema_update`).

Every merge, in a block and across blocks, is the Chan-Golub-LeVeque update
:func:`skbn._kernels.cpu.chan_merge`, compiled for the device from the same
Python function.  The grid is a function of the shape and of
``skbn._config`` only, never of the GPU, so the merge order and every bit of
the result are the same on any device.

Two layouts, both read with coalesced loads:

* rows ``(n, d)`` (per column; ``inner == 1``): the threads of a block cover
  ``cb = min(d, threads)`` consecutive columns of ``rp = threads // cb``
  consecutive rows, so a warp reads consecutive addresses whatever ``d``; a
  thread owns one column and strides over rows.  Grid: column tiles x row
  chunks.
* segments ``(outer, c, inner)`` (per channel, e.g. ``axis=1`` on NCHW): a
  block owns one channel and a range of ``(outer index, piece of inner)``
  units; its threads cover ``it = min(inner, threads)`` consecutive inner
  elements of ``threads // it`` units at a time.  Grid: channels x chunks.

The normalize kernel ``out = (x - shift) * scale + offset`` uses the same
thread layout, so each thread loads its feature's three coefficients once and
the inner loop has no division or modulo.  It computes in float64 (as the CPU
path) and flags infinite inputs for the host to report.

The backward pass of :func:`skbn.functional.batch_norm_backward` has the same
shape: per-feature sums ``sum(dy)`` and ``sum(dy * (x - mean))`` in two fixed
levels, the dx coefficients formed on the device by the merge kernel, and one
fused ``dx`` pass (:func:`backward`).
"""

import math
import threading
import warnings
from functools import cache

import numpy as np
from numba import cuda, float64

from .. import _config
from . import cpu

chan_merge = cuda.jit(device=True)(cpu.chan_merge.py_func)


# -- grid shapes (functions of the shape and _config only) ----------------------------


def _n_chunks(size, per_chunk_limit, units):
    by_size = size // _config.CUDA_MIN_BLOCK_ELEMENTS
    return int(max(1, min(by_size, max(1, per_chunk_limit), units)))


def rows_grid(n, d):
    """``(cb, rp, tiles, chunks)`` of a rows-layout launch on ``(n, d)``."""
    tpb = _config.CUDA_THREADS_PER_BLOCK
    cb = min(d, tpb)
    rp = tpb // cb
    tiles = (d + cb - 1) // cb
    chunks = _n_chunks(n * d, _config.CUDA_MAX_BLOCKS // tiles, (n + rp - 1) // rp)
    return cb, rp, tiles, chunks


def segments_grid(outer, c, inner):
    """``(it, rp, seg, k_per, chunks)`` of a segments-layout launch."""
    tpb = _config.CUDA_THREADS_PER_BLOCK
    it = min(inner, tpb)
    rp = tpb // it
    seg = max(_config.CUDA_SEGMENT_LEN, it)
    k_per = (inner + seg - 1) // seg
    units = outer * k_per
    chunks = _n_chunks(outer * c * inner, _config.CUDA_MAX_BLOCKS // c, units)
    return it, rp, seg, k_per, chunks


# -- device functions ------------------------------------------------------------------
#
# Both layouts are read through a 2-D view: rows ``x2 = x[:, :, 0]`` (n, d)
# walks down a column ``x2[i, fixed]``; segments ``x2 = x.reshape(outer * c,
# inner)`` walks along a row ``x2[fixed, i]``.  Indexing the kernel's argument
# directly (rather than a slice of it) keeps the loads in the global address
# space.


@cache
def _device_functions(by_row, masked, weighted):
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
        # Four independent loads per iteration keep enough bytes in flight
        # for one thread that walks a long strided sequence.
        while i + 3 * step < stop:
            v0 = load(x, fixed, i)
            v1 = load(x, fixed, i + step)
            v2 = load(x, fixed, i + 2 * step)
            v3 = load(x, fixed, i + 3 * step)
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
            v0 = load(x, fixed, i)
            v1 = load(x, fixed, i + step)
            v2 = load(x, fixed, i + 2 * step)
            v3 = load(x, fixed, i + 3 * step)
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

    return first, sums, affine, load, store


@cuda.jit(device=True)
def _moments_of(n, s, q, k):
    """``(mean, m2, redo)`` from shifted sums; ``redo`` when more than half of
    ``q`` cancels (then M2 is recomputed around the mean, as in
    :func:`skbn._kernels.cpu.rows_moments`)."""
    if n > 0.0:
        f = s / n
        c = s * f
        return k + f, q - c, c > 0.5 * q
    return 0.0, 0.0, False


@cuda.jit(device=True)
def _unit(u, k_per, seg, c, ch, inner):
    """Row of ``x.reshape(outer * c, inner)`` and range ``[i0, i1)`` of unit
    ``u`` of channel ``ch``, plus its outer index (for the weight)."""
    o = u // k_per
    i0 = (u - o * k_per) * seg
    return o * c + ch, o, i0, min(inner, i0 + seg)


@cuda.jit(device=True)
def _tree_merge(sn, sm, sq, me, slot, stride, count):
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


# -- kernels ---------------------------------------------------------------------------


@cache
def rows_moments_kernel(tpb, masked, weighted):
    """Partial moments of each column of ``x`` (n, d), one per row chunk.

    ``part`` has shape ``(3, d, chunks)``: count, mean and M2 of column ``j``
    over chunk ``k`` in ``part[:, j, k]``.  ``w`` holds one weight per row
    (ignored unless ``weighted``).
    """
    first, sums, *_ = _device_functions(True, masked, weighted)

    @cuda.jit
    def kernel(x, w, cb, rp, part):
        sn = cuda.shared.array(tpb, float64)
        sm = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        c = tid % cb
        r = tid // cb
        j = cuda.blockIdx.x * cb + c
        chunk = cuda.blockIdx.y
        n_rows, d = x.shape
        chunks = part.shape[2]
        r0 = chunk * n_rows // chunks
        r1 = (chunk + 1) * n_rows // chunks
        na = 0.0
        ma = 0.0
        qa = 0.0
        if r < rp and j < d:
            start = r0 + r
            _, k = first(x, j, start, r1, rp)
            na, s, q = sums(x, j, w, start, r1, rp, k)
            ma, qa, redo = _moments_of(na, s, q, k)
            if redo:
                _, _, qa = sums(x, j, w, start, r1, rp, ma)
        sn[tid] = na
        sm[tid] = ma
        sq[tid] = qa
        _tree_merge(sn, sm, sq, r, tid, cb, rp)
        if r == 0 and j < d:
            part[0, j, chunk] = sn[tid]
            part[1, j, chunk] = sm[tid]
            part[2, j, chunk] = sq[tid]

    return kernel


@cache
def segments_moments_kernel(tpb, masked, weighted):
    """Partial moments of each channel of ``x`` (outer * c, inner), per chunk.

    ``x`` is the segments view ``(outer, c, inner)`` reshaped to 2-D.  A unit
    is one piece (at most ``seg`` long) of one contiguous run of a channel;
    chunk ``k`` of channel ``ch`` covers a contiguous range of its units.
    ``w`` holds one weight per outer index, constant over a unit, so a unit's
    unweighted sums are scaled by it.  ``part`` as in
    :func:`rows_moments_kernel`.
    """
    first, sums, *_ = _device_functions(False, masked, False)

    @cuda.jit(device=True)
    def thread_first(x, c, ch, u0, u1, ustep, k_per, seg, ti, it):
        for u in range(u0, u1, ustep):
            row, _, i0, i1 = _unit(u, k_per, seg, c, ch, x.shape[1])
            found, k = first(x, row, i0 + ti, i1, it)
            if found:
                return k
        return 0.0

    @cuda.jit(device=True)
    def thread_sums(x, w, c, ch, u0, u1, ustep, k_per, seg, ti, it, k):
        n = 0.0
        s = 0.0
        q = 0.0
        for u in range(u0, u1, ustep):
            row, o, i0, i1 = _unit(u, k_per, seg, c, ch, x.shape[1])
            nu, su, qu = sums(x, row, w, i0 + ti, i1, it, k)
            wt = w[o] if weighted else 1.0
            n += wt * nu
            s += wt * su
            q += wt * qu
        return n, s, q

    @cuda.jit
    def kernel(x, w, c, it, rp, seg, k_per, part):
        sn = cuda.shared.array(tpb, float64)
        sm = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        ti = tid % it
        ru = tid // it
        ch = cuda.blockIdx.x
        chunk = cuda.blockIdx.y
        chunks = part.shape[2]
        units = x.shape[0] // c * k_per
        u0 = chunk * units // chunks + ru
        u1 = (chunk + 1) * units // chunks
        na = 0.0
        ma = 0.0
        qa = 0.0
        if ru < rp:
            k = thread_first(x, c, ch, u0, u1, rp, k_per, seg, ti, it)
            na, s, q = thread_sums(x, w, c, ch, u0, u1, rp, k_per, seg, ti, it, k)
            ma, qa, redo = _moments_of(na, s, q, k)
            if redo:
                _, _, qa = thread_sums(x, w, c, ch, u0, u1, rp, k_per, seg, ti, it, ma)
        sn[tid] = na
        sm[tid] = ma
        sq[tid] = qa
        # Every thread of the block holds the same channel: one tree over all.
        _tree_merge(sn, sm, sq, tid, tid, 1, tpb)
        if tid == 0:
            part[0, ch, chunk] = sn[0]
            part[1, ch, chunk] = sm[0]
            part[2, ch, chunk] = sq[0]

    return kernel


@cache
def merge_kernel(tpb):
    """Merge the partials ``part`` (3, d, chunks) of each feature into ``mom``.

    One block per feature; thread ``t`` merges chunks ``t, t + tpb, ...`` in
    order, then the block merges the threads in a fixed tree.  With ``fused``,
    also turns ``coef`` (3, d), which holds ``(0, gamma, beta)`` on entry, into
    the normalize coefficients ``(mean, gamma / sqrt(var + eps), beta)``,
    rounded exactly as :func:`skbn._kernels.cpu.coefficients` rounds them.
    """

    @cuda.jit
    def kernel(part, mom, coef, eps, fused):
        sn = cuda.shared.array(tpb, float64)
        sm = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        j = cuda.blockIdx.x
        t = cuda.threadIdx.x
        chunks = part.shape[2]
        na = 0.0
        ma = 0.0
        qa = 0.0
        for k in range(t, chunks, tpb):
            na, ma, qa = chan_merge(
                na, ma, qa, part[0, j, k], part[1, j, k], part[2, j, k]
            )
        sn[t] = na
        sm[t] = ma
        sq[t] = qa
        _tree_merge(sn, sm, sq, t, t, 1, tpb)
        if t == 0:
            n = sn[0]
            mom[0, j] = n
            mom[1, j] = sm[0]
            mom[2, j] = sq[0]
            if fused:
                var = sq[0] / n if n > 0.0 else 0.0
                coef[0, j] = sm[0]
                coef[1, j] = 1.0 / math.sqrt(var + eps) * coef[1, j]

    return kernel


_rows_affine_pass = _device_functions(True, False, False)[2]
_segments_affine_pass = _device_functions(False, False, False)[2]


@cuda.jit
def rows_affine(x, coef, cb, rp, chunks, out, flag):
    """``out = (x - coef[0]) * coef[1] + coef[2]`` per column of ``x`` (n, d).

    ``flag[0]`` is set to 1 when an input is infinite; ``out`` may be ``x``.
    """
    tid = cuda.threadIdx.x
    c = tid % cb
    r = tid // cb
    j = cuda.blockIdx.x * cb + c
    chunk = cuda.blockIdx.y
    n_rows, d = x.shape
    if r < rp and j < d:
        r0 = chunk * n_rows // chunks
        r1 = (chunk + 1) * n_rows // chunks
        m = coef[0, j]
        a = coef[1, j]
        b = coef[2, j]
        if _rows_affine_pass(x, out, j, r0 + r, r1, rp, m, a, b, False):
            flag[0] = 1.0


@cuda.jit
def segments_affine(x, coef, c, it, rp, seg, k_per, chunks, out, flag):
    """:func:`rows_affine` per channel of ``x`` (outer * c, inner)."""
    tid = cuda.threadIdx.x
    ti = tid % it
    ru = tid // it
    ch = cuda.blockIdx.x
    chunk = cuda.blockIdx.y
    inner = x.shape[1]
    if ru < rp:
        units = x.shape[0] // c * k_per
        u0 = chunk * units // chunks
        u1 = (chunk + 1) * units // chunks
        m = coef[0, ch]
        a = coef[1, ch]
        b = coef[2, ch]
        bad = False
        for u in range(u0 + ru, u1, rp):
            row, _, i0, i1 = _unit(u, k_per, seg, c, ch, inner)
            bad = _segments_affine_pass(x, out, row, i0 + ti, i1, it, m, a, b, bad)
        if bad:
            flag[0] = 1.0


# -- backward ---------------------------------------------------------------------
#
# skbn.functional.batch_norm_backward on the GPU: the per-feature sums
# ``s = sum(dy)`` and ``q = sum(dy * (x - mean))`` (float64, the same two
# levels and fixed order as the moments), then one pass
# ``dx = a * dy - b * (x - mean) - c``, with the coefficients of the CPU code
# formed on the device from the sums.


@cache
def _grad_functions(by_row):
    _, _, _, load, store = _device_functions(by_row, False, False)

    @cuda.jit(device=True)
    def sums(x, dy, fixed, start, stop, step, m, s, q):
        i = start
        while i + 3 * step < stop:
            g0 = load(dy, fixed, i)
            g1 = load(dy, fixed, i + step)
            g2 = load(dy, fixed, i + 2 * step)
            g3 = load(dy, fixed, i + 3 * step)
            x0 = load(x, fixed, i)
            x1 = load(x, fixed, i + step)
            x2 = load(x, fixed, i + 2 * step)
            x3 = load(x, fixed, i + 3 * step)
            s += (g0 + g1) + (g2 + g3)
            q += (g0 * (x0 - m) + g1 * (x1 - m)) + (g2 * (x2 - m) + g3 * (x3 - m))
            i += 4 * step
        while i < stop:
            g0 = load(dy, fixed, i)
            s += g0
            q += g0 * (load(x, fixed, i) - m)
            i += step
        return s, q

    @cuda.jit(device=True)
    def dx(x, dy, out, fixed, start, stop, step, m, a, b, c):
        for i in range(start, stop, step):
            g = load(dy, fixed, i)
            store(out, fixed, i, a * g - b * (load(x, fixed, i) - m) - c)

    return sums, dx


@cuda.jit(device=True)
def _tree_sum(ss, sq, me, slot, stride, count):
    """:func:`_tree_merge` for plain sums."""
    step = 1
    while step < count:
        cuda.syncthreads()
        if me < count and me % (2 * step) == 0 and me + step < count:
            o = slot + step * stride
            ss[slot] += ss[o]
            sq[slot] += sq[o]
        step *= 2
    cuda.syncthreads()


@cache
def rows_grad_sums_kernel(tpb):
    """Partial ``s`` and ``q`` of each column of ``x``, ``dy`` (n, d), per row
    chunk, into ``part[0]`` and ``part[1]`` (as rows_moments_kernel)."""
    sums, _ = _grad_functions(True)

    @cuda.jit
    def kernel(x, dy, coef, cb, rp, part):
        ss = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        c = tid % cb
        r = tid // cb
        j = cuda.blockIdx.x * cb + c
        chunk = cuda.blockIdx.y
        n_rows, d = x.shape
        chunks = part.shape[2]
        s = 0.0
        q = 0.0
        if r < rp and j < d:
            r0 = chunk * n_rows // chunks
            r1 = (chunk + 1) * n_rows // chunks
            s, q = sums(x, dy, j, r0 + r, r1, rp, coef[0, j], 0.0, 0.0)
        ss[tid] = s
        sq[tid] = q
        _tree_sum(ss, sq, r, tid, cb, rp)
        if r == 0 and j < d:
            part[0, j, chunk] = ss[tid]
            part[1, j, chunk] = sq[tid]

    return kernel


@cache
def segments_grad_sums_kernel(tpb):
    """:func:`rows_grad_sums_kernel` per channel of ``(outer * c, inner)``."""
    sums, _ = _grad_functions(False)

    @cuda.jit
    def kernel(x, dy, coef, c, it, rp, seg, k_per, part):
        ss = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        ti = tid % it
        ru = tid // it
        ch = cuda.blockIdx.x
        chunk = cuda.blockIdx.y
        chunks = part.shape[2]
        units = x.shape[0] // c * k_per
        s = 0.0
        q = 0.0
        if ru < rp:
            m = coef[0, ch]
            u0 = chunk * units // chunks
            u1 = (chunk + 1) * units // chunks
            for u in range(u0 + ru, u1, rp):
                row, _, i0, i1 = _unit(u, k_per, seg, c, ch, x.shape[1])
                s, q = sums(x, dy, row, i0 + ti, i1, it, m, s, q)
        ss[tid] = s
        sq[tid] = q
        _tree_sum(ss, sq, tid, tid, 1, tpb)
        if tid == 0:
            part[0, ch, chunk] = ss[0]
            part[1, ch, chunk] = sq[0]

    return kernel


@cache
def grad_merge_kernel(tpb):
    """Sum the partials of each feature (fixed order) into ``mom[0:2]`` and
    turn ``coef`` ``(mean, a, inv_std**2, ...)`` into the dx coefficients
    ``(mean, a, b, c)`` of :func:`skbn.functional.batch_norm_backward`:
    ``b = a * inv_std**2 * q / n`` and ``c = a * s / n`` in training mode,
    zero otherwise."""

    @cuda.jit
    def kernel(part, mom, coef, n, training):
        ss = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        j = cuda.blockIdx.x
        t = cuda.threadIdx.x
        s = 0.0
        q = 0.0
        for k in range(t, part.shape[2], tpb):
            s += part[0, j, k]
            q += part[1, j, k]
        ss[t] = s
        sq[t] = q
        _tree_sum(ss, sq, t, t, 1, tpb)
        if t == 0:
            s = ss[0]
            q = sq[0]
            mom[0, j] = s
            mom[1, j] = q
            a = coef[1, j]
            if training:
                coef[2, j] = a * coef[2, j] * q / n
                coef[3, j] = a * s / n
            else:
                coef[2, j] = 0.0
                coef[3, j] = 0.0

    return kernel


_rows_dx = _grad_functions(True)[1]
_segments_dx = _grad_functions(False)[1]


@cuda.jit
def rows_grad_dx(x, dy, coef, cb, rp, chunks, out):
    """``out = a * dy - b * (x - mean) - c`` per column (``coef`` rows)."""
    tid = cuda.threadIdx.x
    c = tid % cb
    r = tid // cb
    j = cuda.blockIdx.x * cb + c
    chunk = cuda.blockIdx.y
    n_rows, d = x.shape
    if r < rp and j < d:
        r0 = chunk * n_rows // chunks
        r1 = (chunk + 1) * n_rows // chunks
        m = coef[0, j]
        _rows_dx(x, dy, out, j, r0 + r, r1, rp, m, coef[1, j], coef[2, j], coef[3, j])


@cuda.jit
def segments_grad_dx(x, dy, coef, c, it, rp, seg, k_per, chunks, out):
    """:func:`rows_grad_dx` per channel of ``(outer * c, inner)``."""
    tid = cuda.threadIdx.x
    ti = tid % it
    ru = tid // it
    ch = cuda.blockIdx.x
    chunk = cuda.blockIdx.y
    if ru < rp:
        units = x.shape[0] // c * k_per
        u0 = chunk * units // chunks
        u1 = (chunk + 1) * units // chunks
        m = coef[0, ch]
        a = coef[1, ch]
        b = coef[2, ch]
        cc = coef[3, ch]
        for u in range(u0 + ru, u1, rp):
            row, _, i0, i1 = _unit(u, k_per, seg, c, ch, x.shape[1])
            _segments_dx(x, dy, out, row, i0 + ti, i1, it, m, a, b, cc)


@cuda.jit
def gather(src, base, src_strides, shape, out):
    """``out[i] = src[base + sum(idx * src_strides)]`` for ``idx`` the C-order
    index of ``i`` in ``shape``: a strided or permuted array made contiguous
    (and cast to ``out``'s dtype) in one pass."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.shape[0], step):
        rem = i
        off = base
        for a in range(len(shape) - 1, -1, -1):
            off += (rem % shape[a]) * src_strides[a]
            rem //= shape[a]
        out[i] = src[off]


# -- host drivers ----------------------------------------------------------------------


class Workspace:
    """One float64 device buffer, sliced into the arrays a call needs.

    ``head`` is ``[flag, moments (3, d), coef (4, d)]``: the host writes it in
    one copy before the kernels and reads ``flag`` and the moments back in
    one copy after them.  ``part`` holds the per-block partial moments.
    ``stream`` is set by :func:`workspace` for each call.
    """

    def __init__(self, d, chunks, alloc):
        self.d = d
        self.stream = 0
        head = 1 + 7 * d
        self.buf = alloc((head + 3 * d * chunks,), np.float64)
        self.head = self.buf[:head]
        self.flag = self.buf[:1]
        self.mom = self.buf[1 : 1 + 3 * d].reshape(3, d)
        self.coef = self.buf[1 + 3 * d : head].reshape(4, d)
        self.part = self.buf[head:].reshape(3, d, chunks) if chunks else None

    def upload(self, coef):
        """Zero the flag and write the first rows of ``coef``."""
        host = np.zeros(1 + 7 * self.d)
        coef = np.asarray(coef, dtype=np.float64).ravel()
        host[1 + 3 * self.d : 1 + 3 * self.d + coef.size] = coef
        self.head.copy_to_device(host, stream=self.stream)

    def download(self):
        """``(flag, count, mean, m2)`` as host values (synchronizes)."""
        host = self.buf[: 1 + 3 * self.d].copy_to_host(stream=self.stream)
        if self.stream:
            self.stream.synchronize()
        count, mean, m2 = host[1:].reshape(3, self.d)
        return host[0], count, mean, m2


_reuse = threading.local()
_REUSE_SLOTS = 4


def workspace(d, chunks, alloc, key, stream):
    """A :class:`Workspace`, reused by this thread's later calls with the
    same ``key`` (the allocator and device), ``d`` and ``chunks``.

    Every driver waits for its kernels before it returns (it reads the
    moments or the flag back), so a workspace is free again by the next call;
    reuse saves an allocation and the slicing of the views, which cost as
    much host time as a small kernel.  ``key=None`` never reuses.
    """
    if key is None:
        ws = Workspace(d, chunks, alloc)
    else:
        slots = _reuse.__dict__.setdefault("slots", {})
        ws = slots.pop((key, d, chunks), None) or Workspace(d, chunks, alloc)
        slots[(key, d, chunks)] = ws  # most recent last
        while len(slots) > _REUSE_SLOTS:
            del slots[next(iter(slots))]
    ws.stream = stream
    return ws


def _configured(kernel, grid, block, stream):
    """``kernel[grid, block, stream]``, without numba-cuda's low-occupancy
    warning: small grids are by design here (the merge kernels run one block
    per feature, and a small input gets a small grid)."""
    n_blocks = math.prod(grid) if isinstance(grid, tuple) else grid
    if n_blocks >= 128:
        return kernel[grid, block, stream]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        return kernel[grid, block, stream]


def _launch_moments(x3, w, masked, ws):
    outer, d, inner = x3.shape
    tpb = _config.CUDA_THREADS_PER_BLOCK
    weighted = w is not None
    w = w if weighted else ws.flag  # any float64 array: never read
    if inner == 1:
        cb, rp, tiles, chunks = rows_grid(outer, d)
        kernel = rows_moments_kernel(tpb, masked, weighted)
        _configured(kernel, (tiles, chunks), tpb, ws.stream)(
            x3.reshape(outer, d), w, cb, rp, ws.part
        )
    else:
        it, rp, seg, k_per, chunks = segments_grid(outer, d, inner)
        kernel = segments_moments_kernel(tpb, masked, weighted)
        _configured(kernel, (d, chunks), tpb, ws.stream)(
            x3.reshape(outer * d, inner), w, d, it, rp, seg, k_per, ws.part
        )


def _launch_merge(ws, eps, fused):
    tpb = _config.CUDA_MERGE_THREADS
    kernel = _configured(merge_kernel(tpb), ws.d, tpb, ws.stream)
    kernel(ws.part, ws.mom, ws.coef, eps, fused)


def _launch_affine(x3, out3, ws):
    outer, d, inner = x3.shape
    tpb = _config.CUDA_THREADS_PER_BLOCK
    if inner == 1:
        cb, rp, tiles, chunks = rows_grid(outer, d)
        _configured(rows_affine, (tiles, chunks), tpb, ws.stream)(
            x3.reshape(outer, d),
            ws.coef,
            cb,
            rp,
            chunks,
            out3.reshape(outer, d),
            ws.flag,
        )
    else:
        it, rp, seg, k_per, chunks = segments_grid(outer, d, inner)
        _configured(segments_affine, (d, chunks), tpb, ws.stream)(
            x3.reshape(outer * d, inner),
            ws.coef,
            d,
            it,
            rp,
            seg,
            k_per,
            chunks,
            out3.reshape(outer * d, inner),
            ws.flag,
        )


def _chunks(x3):
    outer, d, inner = x3.shape
    if inner == 1:
        return rows_grid(outer, d)[3]
    return segments_grid(outer, d, inner)[4]


def _give_up(host_error):
    host_error()
    # The CPU path found the statistics finite where the GPU did not (an
    # overflow at the edge of float64 that the two reduction orders meet
    # differently): say so rather than return them.
    raise ValueError(
        "The statistics of X are not finite on the GPU (values too large to "
        "square in float64?); rescale X or use device='cpu'."
    )


def _finite(mean, m2):
    return bool(cpu.all_finite(mean, m2))


def moments(x3, w, host_error, *, alloc, key=None, stream=0):
    """Moments of each feature of the device array ``x3`` (outer, d, inner).

    The CUDA counterpart of :func:`skbn._moments.moments`: a dense pass first
    (no NaN test in the loop), the NaN-skipping pass only when the dense
    result is not finite or when weighted.

    Parameters
    ----------
    x3 : device array of float32 or float64, C-contiguous
    w : device array of shape (outer,), float64, or None
        One weight per outer index.
    host_error : callable
        Called without arguments when the statistics are not finite even
        after skipping NaN (an infinite input, or an overflow); it reproduces
        the CPU path's error on a host copy and raises.
    alloc : callable
        ``alloc(shape, dtype)`` returns an uninitialized device array.
    key : hashable or None
        Names ``alloc`` and the device, for :func:`workspace` reuse.
    stream : numba stream or 0

    Returns
    -------
    count, mean, m2 : ndarray of shape (d,), float64, on the host
    """
    ws = workspace(x3.shape[1], _chunks(x3), alloc, key, stream)
    for masked in (False, True) if w is None else (True,):
        _launch_moments(x3, w, masked, ws)
        _launch_merge(ws, 1.0, False)
        _, count, mean, m2 = ws.download()
        if _finite(mean, m2):
            return count, mean, m2
    _give_up(host_error)


def forward(x3, w, gamma, beta, eps, out3, host_error, *, alloc, key=None, stream=0):
    """Training mode, fused: batch moments, then ``out3`` normalized by them.

    Reduction, merge (which also forms the coefficients on the device) and
    normalize are queued back to back; the host waits once, for the moments.

    Parameters
    ----------
    x3, w, host_error, alloc, stream
        As in :func:`moments`.
    gamma, beta : ndarray of shape (d,), float64
        The scale (ones when not scaling) and the shift (zeros when not
        centering).
    eps : float
    out3 : device array of ``x3``'s shape and dtype (may be ``x3``)

    Returns
    -------
    count, mean, m2 : ndarray of shape (d,), float64, on the host
    """
    d = x3.shape[1]
    ws = workspace(d, _chunks(x3), alloc, key, stream)
    for masked in (False, True) if w is None else (True,):
        ws.upload(np.stack([np.zeros(d), gamma, beta]))
        _launch_moments(x3, w, masked, ws)
        _launch_merge(ws, float(eps), True)
        _launch_affine(x3, out3, ws)
        _, count, mean, m2 = ws.download()
        if _finite(mean, m2):
            return count, mean, m2
    _give_up(host_error)


def affine(x3, shift, scale, offset, out3, host_error, *, alloc, key=None, stream=0):
    """``out3 = (x3 - shift) * scale + offset`` per feature, on the device.

    The CUDA counterpart of :func:`skbn._moments.affine`; ``host_error`` is
    called when an input is infinite.
    """
    ws = workspace(x3.shape[1], 0, alloc, key, stream)
    ws.upload(np.stack([shift, scale, offset]))
    _launch_affine(x3, out3, ws)
    flag = ws.download()[0]
    if flag != 0.0:
        host_error()


def backward(
    x3, dy3, mean, inv_std, gamma, training, dx3, *, alloc, key=None, stream=0
):
    """Batch norm backward on the device (see ``functional.batch_norm_backward``).

    Parameters
    ----------
    x3, dy3 : device arrays of shape (outer, d, inner), same float dtype
        The forward input and the gradient of the output, C-contiguous.
    mean, inv_std : ndarray of shape (d,), float64
        The statistics the forward pass normalized with.
    gamma : ndarray of shape (d,), float64
        Ones when the forward pass had no scale.
    training : bool
        Whether the statistics were the batch's own (then they depend on
        ``x`` and ``dx`` has the two extra terms).
    dx3 : device array of ``x3``'s shape and dtype
        Receives ``dx``.
    alloc, key, stream
        As in :func:`moments`.

    Returns
    -------
    s, q : ndarray of shape (d,), float64, on the host
        ``sum(dy)`` and ``sum(dy * (x - mean))`` per feature, from which
        ``dbeta = s`` and ``dgamma = inv_std * q``.
    """
    outer, d, inner = x3.shape
    tpb = _config.CUDA_THREADS_PER_BLOCK
    ws = workspace(d, _chunks(x3), alloc, key, stream)
    ws.upload(np.stack([mean, gamma * inv_std, inv_std * inv_std]))
    if inner == 1:
        x2, g2, o2 = (a.reshape(outer, d) for a in (x3, dy3, dx3))
        cb, rp, tiles, chunks = rows_grid(outer, d)
        grid = (tiles, chunks), tpb, stream
        sums = _configured(rows_grad_sums_kernel(tpb), *grid)
        sums(x2, g2, ws.coef, cb, rp, ws.part)
        _launch_grad_merge(ws, outer * inner, training)
        _configured(rows_grad_dx, *grid)(x2, g2, ws.coef, cb, rp, chunks, o2)
    else:
        x2, g2, o2 = (a.reshape(outer * d, inner) for a in (x3, dy3, dx3))
        it, rp, seg, k_per, chunks = segments_grid(outer, d, inner)
        grid = (d, chunks), tpb, stream
        sums = _configured(segments_grad_sums_kernel(tpb), *grid)
        sums(x2, g2, ws.coef, d, it, rp, seg, k_per, ws.part)
        _launch_grad_merge(ws, outer * inner, training)
        dx = _configured(segments_grad_dx, *grid)
        dx(x2, g2, ws.coef, d, it, rp, seg, k_per, chunks, o2)
    _, s, q, _ = ws.download()
    return s.copy(), q.copy()


def _launch_grad_merge(ws, n, training):
    tpb = _config.CUDA_MERGE_THREADS
    kernel = grad_merge_kernel(tpb)
    kernel = _configured(kernel, ws.d, tpb, ws.stream)
    kernel(ws.part, ws.mom, ws.coef, float(n), training)


def gather_into(src, base, src_strides, shape, out, *, stream=0):
    """Launch :func:`gather` over the flat contiguous ``out``."""
    tpb = _config.CUDA_THREADS_PER_BLOCK
    n = out.shape[0]
    blocks = max(1, min(_config.CUDA_MAX_BLOCKS, (n + tpb - 1) // tpb))
    _configured(gather, blocks, tpb, stream)(
        src, base, tuple(src_strides), tuple(int(s) for s in shape), out
    )
