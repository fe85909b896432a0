"""The normalize step ``out = (x - shift) * scale + offset`` per feature of
the rows and segments layouts, with a flag for non-finite inputs."""

import numpy as np
from numba import prange

from .common import JIT, parallel_kernel
from .tasks import block_count, block_range, split_index


@parallel_kernel(JIT)
def rows_affine(x, shift, scale, offset, out, block):
    """``out = (x - shift) * scale + offset`` per column of ``x`` (n, d).

    Returns a flag: 0 when every input is finite, NaN when one is NaN or
    infinite.  ``v * 0.0`` is how the flag is
    formed because it costs no measurable time in this memory-bound loop,
    unlike a comparison with inf (the caller looks for the infinity only
    when a flag is set).  ``out`` may be ``x`` itself.
    """
    n, d = x.shape
    n_blocks = block_count(n, block)
    flags = np.zeros(n_blocks)
    for b in prange(n_blocks):
        r0, r1 = block_range(b, block, n)
        acc = 0.0
        for r in range(r0, r1):
            for j in range(d):
                v = x[r, j]
                acc += v * 0.0
                out[r, j] = (v - shift[j]) * scale[j] + offset[j]
        flags[b] = acc
    return flags.sum()


@parallel_kernel(JIT)
def segments_affine(x, shift, scale, offset, out):
    """``out = (x - shift) * scale + offset`` per channel of ``x`` (outer, c, inner).

    Returns the non-finite flag of :func:`rows_affine`.
    """
    outer, c, inner = x.shape
    flags = np.zeros(outer * c)
    for oc in prange(outer * c):
        o, ch = split_index(oc, c)
        m = shift[ch]
        a = scale[ch]
        b = offset[ch]
        acc = 0.0
        for i in range(inner):
            v = x[o, ch, i]
            acc += v * 0.0
            out[o, ch, i] = (v - m) * a + b
        flags[oc] = acc
    return flags.sum()
