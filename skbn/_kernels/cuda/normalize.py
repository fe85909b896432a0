"""The normalize step on the GPU, ``out = (x - shift) * scale + offset`` per
feature, and its driver :func:`affine`.

The kernels use the thread layout of the reduction kernels, so each thread
loads its feature's three coefficients once and the inner loop has no
division or modulo.  They compute in float64 (as the CPU path) and flag
infinite inputs for the host to report.
"""

import numpy as np
from numba import cuda

from ... import _config
from .device import device_functions, rows_place, segments_place, segments_unit
from .launch import configured, rows_grid, segments_grid, workspace

_rows_affine_pass = device_functions(True, False, False)[2]
_segments_affine_pass = device_functions(False, False, False)[2]


@cuda.jit
def rows_affine(x, coef, cb, rp, chunks, out, flag):
    """``out = (x - coef[0]) * coef[1] + coef[2]`` per column of ``x`` (n, d).

    ``flag[0]`` is set to 1 when an input is infinite; ``out`` may be ``x``.
    """
    n_rows, d = x.shape
    _, _, j, _, active, start, stop = rows_place(cb, rp, n_rows, d, chunks)
    if active:
        m = coef[0, j]
        a = coef[1, j]
        b = coef[2, j]
        if _rows_affine_pass(x, out, j, start, stop, rp, m, a, b, False):
            flag[0] = 1.0


@cuda.jit
def segments_affine(x, coef, c, it, rp, seg, k_per, chunks, out, flag):
    """:func:`rows_affine` per channel of ``x`` (outer * c, inner)."""
    n_rows, inner = x.shape
    _, ti, ch, _, active, u0, u1 = segments_place(it, rp, c, k_per, n_rows, chunks)
    if active:
        m = coef[0, ch]
        a = coef[1, ch]
        b = coef[2, ch]
        bad = False
        for u in range(u0, u1, rp):
            row, _, i0, i1 = segments_unit(u, k_per, seg, c, ch, inner)
            bad = _segments_affine_pass(x, out, row, i0 + ti, i1, it, m, a, b, bad)
        if bad:
            flag[0] = 1.0


def launch_affine(x3, out3, ws):
    outer, d, inner = x3.shape
    tpb = _config.CUDA_THREADS_PER_BLOCK
    if inner == 1:
        cb, rp, tiles, chunks = rows_grid(outer, d)
        configured(rows_affine, (tiles, chunks), tpb, ws.stream)(
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
        configured(segments_affine, (d, chunks), tpb, ws.stream)(
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


def affine(x3, shift, scale, offset, out3, host_error, *, alloc, key=None, stream=0):
    """``out3 = (x3 - shift) * scale + offset`` per feature, on the device.

    The CUDA counterpart of :func:`skbn._core.norm.affine`; ``host_error`` is
    called when an input is infinite.
    """
    ws = workspace(x3.shape[1], 0, alloc, key, stream)
    ws.upload(np.stack([shift, scale, offset]))
    launch_affine(x3, out3, ws)
    flag = ws.download()[0]
    if flag != 0.0:
        host_error()
