"""Batch norm backward on the GPU: the reduction and merge kernels of the
per-feature sums, the fused ``dx`` pass, and the driver :func:`backward`."""

from functools import cache

import numpy as np
from numba import cuda, float64

from ... import _config
from .device import device_functions, rows_place, segments_place, segments_unit
from .launch import configured, grid_chunks, rows_grid, segments_grid, workspace

# -- backward ---------------------------------------------------------------------
#
# skbn.functional.batch_norm_backward on the GPU: the per-feature sums
# ``s = sum(dy)`` and ``q = sum(dy * (x - mean))`` (float64, the same two
# levels and fixed order as the moments), then one pass
# ``dx = a * dy - b * (x - mean) - c``, with the coefficients of the CPU code
# formed on the device from the sums.


@cache
def _grad_functions(by_row):
    _, _, _, load, store, load4 = device_functions(by_row, False, False)

    @cuda.jit(device=True)
    def sums(x, dy, fixed, start, stop, step, m, s, q):
        i = start
        while i + 3 * step < stop:
            g0, g1, g2, g3 = load4(dy, fixed, i, step)
            x0, x1, x2, x3 = load4(x, fixed, i, step)
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
    """:func:`tree_merge` for plain sums."""
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
        n_rows, d = x.shape
        tid, r, j, chunk, active, start, stop = rows_place(
            cb, rp, n_rows, d, part.shape[2]
        )
        ss = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        s = q = 0.0
        if active:
            s, q = sums(x, dy, j, start, stop, rp, coef[0, j], 0.0, 0.0)
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
        tid, ti, ch, chunk, active, u0, u1 = segments_place(
            it, rp, c, k_per, x.shape[0], part.shape[2]
        )
        ss = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        s = q = 0.0
        if active:
            m = coef[0, ch]
            for u in range(u0, u1, rp):
                row, _, i0, i1 = segments_unit(u, k_per, seg, c, ch, x.shape[1])
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
    n_rows, d = x.shape
    _, _, j, _, active, start, stop = rows_place(cb, rp, n_rows, d, chunks)
    if active:
        m = coef[0, j]
        _rows_dx(x, dy, out, j, start, stop, rp, m, coef[1, j], coef[2, j], coef[3, j])


@cuda.jit
def segments_grad_dx(x, dy, coef, c, it, rp, seg, k_per, chunks, out):
    """:func:`rows_grad_dx` per channel of ``(outer * c, inner)``."""
    _, ti, ch, _, active, u0, u1 = segments_place(it, rp, c, k_per, x.shape[0], chunks)
    if active:
        m = coef[0, ch]
        a = coef[1, ch]
        b = coef[2, ch]
        cc = coef[3, ch]
        for u in range(u0, u1, rp):
            row, _, i0, i1 = segments_unit(u, k_per, seg, c, ch, x.shape[1])
            _segments_dx(x, dy, out, row, i0 + ti, i1, it, m, a, b, cc)


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
    ws = workspace(d, grid_chunks(x3), alloc, key, stream)
    ws.upload(np.stack([mean, gamma * inv_std, inv_std * inv_std]))
    if inner == 1:
        x2, g2, o2 = (a.reshape(outer, d) for a in (x3, dy3, dx3))
        cb, rp, tiles, chunks = rows_grid(outer, d)
        grid = (tiles, chunks), tpb, stream
        sums = configured(rows_grad_sums_kernel(tpb), *grid)
        sums(x2, g2, ws.coef, cb, rp, ws.part)
        _launch_grad_merge(ws, outer * inner, training)
        configured(rows_grad_dx, *grid)(x2, g2, ws.coef, cb, rp, chunks, o2)
    else:
        x2, g2, o2 = (a.reshape(outer * d, inner) for a in (x3, dy3, dx3))
        it, rp, seg, k_per, chunks = segments_grid(outer, d, inner)
        grid = (d, chunks), tpb, stream
        sums = configured(segments_grad_sums_kernel(tpb), *grid)
        sums(x2, g2, ws.coef, d, it, rp, seg, k_per, ws.part)
        _launch_grad_merge(ws, outer * inner, training)
        dx = configured(segments_grad_dx, *grid)
        dx(x2, g2, ws.coef, d, it, rp, seg, k_per, chunks, o2)
    _, s, q, _ = ws.download()
    return s.copy(), q.copy()


def _launch_grad_merge(ws, n, training):
    tpb = _config.CUDA_MERGE_THREADS
    kernel = grad_merge_kernel(tpb)
    kernel = configured(kernel, ws.d, tpb, ws.stream)
    kernel(ws.part, ws.mom, ws.coef, float(n), training)
