"""A strided or permuted device array made contiguous in one pass."""

from numba import cuda

from ... import _config
from .launch import configured


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


def gather_into(src, base, src_strides, shape, out, *, stream=0):
    """Launch :func:`gather` over the flat contiguous ``out``."""
    tpb = _config.CUDA_THREADS_PER_BLOCK
    n = out.shape[0]
    blocks = max(1, min(_config.CUDA_MAX_BLOCKS, (n + tpb - 1) // tpb))
    configured(gather, blocks, tpb, stream)(
        src, base, tuple(src_strides), tuple(int(s) for s in shape), out
    )
