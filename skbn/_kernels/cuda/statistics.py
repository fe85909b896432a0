"""Moments on the GPU: the reduction kernels of both layouts, the merge
kernel, and the drivers :func:`moments` and :func:`forward`."""

from functools import cache

import numpy as np
from numba import cuda, float64

from ... import _config
from ..cpu import formulas
from .device import (
    chan_merge,
    device_functions,
    feature_scale,
    moments_of,
    ratio,
    rows_place,
    segments_place,
    segments_unit,
    tree_merge,
)
from .launch import configured, grid_chunks, rows_grid, segments_grid, workspace
from .normalize import launch_affine


@cache
def rows_moments_kernel(tpb, masked, weighted):
    """Partial moments of each column of ``x`` (n, d), one per row chunk.

    ``part`` has shape ``(3, d, chunks)``: count, mean and M2 of column ``j``
    over chunk ``k`` in ``part[:, j, k]``.  ``w`` holds one weight per row
    (ignored unless ``weighted``).
    """
    first, sums, *_ = device_functions(True, masked, weighted)

    @cuda.jit
    def kernel(x, w, cb, rp, part):
        sn = cuda.shared.array(tpb, float64)
        sm = cuda.shared.array(tpb, float64)
        sq = cuda.shared.array(tpb, float64)
        n_rows, d = x.shape
        tid, r, j, chunk, active, start, r1 = rows_place(
            cb, rp, n_rows, d, part.shape[2]
        )
        na = 0.0
        ma = 0.0
        qa = 0.0
        if active:
            _, k = first(x, j, start, r1, rp)
            na, s, q = sums(x, j, w, start, r1, rp, k)
            ma, qa, redo = moments_of(na, s, q, k)
            if redo:
                _, _, qa = sums(x, j, w, start, r1, rp, ma)
        sn[tid] = na
        sm[tid] = ma
        sq[tid] = qa
        tree_merge(sn, sm, sq, r, tid, cb, rp)
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
    first, sums, *_ = device_functions(False, masked, False)

    @cuda.jit(device=True)
    def thread_first(x, c, ch, u0, u1, ustep, k_per, seg, ti, it):
        for u in range(u0, u1, ustep):
            row, _, i0, i1 = segments_unit(u, k_per, seg, c, ch, x.shape[1])
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
            row, o, i0, i1 = segments_unit(u, k_per, seg, c, ch, x.shape[1])
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
        tid, ti, ch, chunk, active, u0, u1 = segments_place(
            it, rp, c, k_per, x.shape[0], part.shape[2]
        )
        na = 0.0
        ma = 0.0
        qa = 0.0
        if active:
            k = thread_first(x, c, ch, u0, u1, rp, k_per, seg, ti, it)
            na, s, q = thread_sums(x, w, c, ch, u0, u1, rp, k_per, seg, ti, it, k)
            ma, qa, redo = moments_of(na, s, q, k)
            if redo:
                _, _, qa = thread_sums(x, w, c, ch, u0, u1, rp, k_per, seg, ti, it, ma)
        sn[tid] = na
        sm[tid] = ma
        sq[tid] = qa
        # Every thread of the block holds the same channel: one tree over all.
        tree_merge(sn, sm, sq, tid, tid, 1, tpb)
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
        tree_merge(sn, sm, sq, t, t, 1, tpb)
        if t == 0:
            n = sn[0]
            mom[0, j] = n
            mom[1, j] = sm[0]
            mom[2, j] = sq[0]
            if fused:
                coef[0, j] = sm[0]
                coef[1, j] = feature_scale(ratio(sq[0], n), eps, coef[1, j])

    return kernel


def _launch_moments(x3, w, masked, ws):
    outer, d, inner = x3.shape
    tpb = _config.CUDA_THREADS_PER_BLOCK
    weighted = w is not None
    w = w if weighted else ws.flag  # any float64 array: never read
    if inner == 1:
        cb, rp, tiles, chunks = rows_grid(outer, d)
        kernel = rows_moments_kernel(tpb, masked, weighted)
        configured(kernel, (tiles, chunks), tpb, ws.stream)(
            x3.reshape(outer, d), w, cb, rp, ws.part
        )
    else:
        it, rp, seg, k_per, chunks = segments_grid(outer, d, inner)
        kernel = segments_moments_kernel(tpb, masked, weighted)
        configured(kernel, (d, chunks), tpb, ws.stream)(
            x3.reshape(outer * d, inner), w, d, it, rp, seg, k_per, ws.part
        )


def _launch_merge(ws, eps, fused):
    tpb = _config.CUDA_MERGE_THREADS
    kernel = configured(merge_kernel(tpb), ws.d, tpb, ws.stream)
    kernel(ws.part, ws.mom, ws.coef, eps, fused)


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
    return bool(formulas.all_finite(mean, m2))


def moments(x3, w, host_error, *, alloc, key=None, stream=0):
    """Moments of each feature of the device array ``x3`` (outer, d, inner).

    The CUDA counterpart of :func:`skbn._core.moments.moments`: a dense pass first
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
    ws = workspace(x3.shape[1], grid_chunks(x3), alloc, key, stream)
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
    ws = workspace(d, grid_chunks(x3), alloc, key, stream)
    for masked in (False, True) if w is None else (True,):
        ws.upload(np.stack([np.zeros(d), gamma, beta]))
        _launch_moments(x3, w, masked, ws)
        _launch_merge(ws, float(eps), True)
        launch_affine(x3, out3, ws)
        _, count, mean, m2 = ws.download()
        if _finite(mean, m2):
            return count, mean, m2
    _give_up(host_error)
