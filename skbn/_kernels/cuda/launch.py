"""Launch geometry and host-side plumbing of the CUDA drivers.

The grid of every launch is a function of the shape and of ``skbn._config``
only, never of the GPU, so the merge order and every bit of the result are
the same on any device.  :class:`Workspace` is the one device buffer a call
needs, reused per thread by :func:`workspace`; :func:`configured` launches a
kernel without numba-cuda's low-occupancy warning.
"""

import math
import threading
import warnings

import numpy as np

from ... import _config

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


reuse = threading.local()
REUSE_SLOTS = 4


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
        slots = reuse.__dict__.setdefault("slots", {})
        ws = slots.pop((key, d, chunks), None) or Workspace(d, chunks, alloc)
        slots[(key, d, chunks)] = ws  # most recent last
        while len(slots) > REUSE_SLOTS:
            del slots[next(iter(slots))]
    ws.stream = stream
    return ws


def configured(kernel, grid, block, stream):
    """``kernel[grid, block, stream]``, without numba-cuda's low-occupancy
    warning: small grids are by design here (the merge kernels run one block
    per feature, and a small input gets a small grid)."""
    n_blocks = math.prod(grid) if isinstance(grid, tuple) else grid
    if n_blocks >= 128:
        return kernel[grid, block, stream]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        return kernel[grid, block, stream]


def grid_chunks(x3):
    outer, d, inner = x3.shape
    if inner == 1:
        return rows_grid(outer, d)[3]
    return segments_grid(outer, d, inner)[4]
