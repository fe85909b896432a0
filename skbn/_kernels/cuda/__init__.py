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
   by the same routine as on the CPU (:func:`skbn._core.moments.ema_update`).

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

Modules: :mod:`.launch` (grid shapes, the workspace, configured launches),
:mod:`.device` (device functions), :mod:`.statistics` (moments and the
fused training forward), :mod:`.normalize` (the normalize step),
:mod:`.gradients` (the backward pass), :mod:`.strided` (a strided array made
contiguous).  The drivers are exported here.
"""

from .gradients import backward
from .launch import (
    REUSE_SLOTS,
    Workspace,
    configured,
    reuse,
    rows_grid,
    segments_grid,
    workspace,
)
from .normalize import affine
from .statistics import forward, moments
from .strided import gather, gather_into

__all__ = [
    "REUSE_SLOTS",
    "Workspace",
    "affine",
    "backward",
    "configured",
    "forward",
    "gather",
    "gather_into",
    "moments",
    "reuse",
    "rows_grid",
    "segments_grid",
    "workspace",
]
