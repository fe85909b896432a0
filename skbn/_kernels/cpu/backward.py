"""Numba kernels of the training path: the backward passes and the
per-sample (layer, group, instance) normalize step.

Like the other CPU kernels, every kernel takes validated, C-contiguous
arrays and checks nothing; :mod:`skbn.functional` validates, chooses the
layout and allocates.  Mean and variance are never computed here: they come
from :func:`skbn._core.moments.moments`, the one implementation shared by every
path.

Backward of a normalization over a group of ``M`` values (Ioffe and Szegedy
2015, section 3; written in closed form as in PyTorch's
``batch_norm_backward``).  With ``xhat = (x - mean) * inv_std`` and
``y = gamma * xhat + beta``, the chain rule through ``mean`` and ``var``
collapses to::

    dbeta  = sum(dy)
    dgamma = sum(dy * xhat)
    dx     = gamma * inv_std / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))

so a backward pass is one reduction (the two sums, per group) and one fused
elementwise pass (``dx``).  Both are done here in float64 whatever the
input dtype; the reductions keep per-block partial sums, add them into one
row per task and add the tasks in order, so that results are bit-identical
for any thread count (the task count depends on the shape only, see
``skbn._config``).

Layouts, as in the moment kernels:

* rows ``(n, d)`` and segments ``(outer, c, inner)`` for batch norm, with the
  statistics per column / channel;
* groups ``(N, S1, G, Cg, S2)`` for the per-sample norms: statistics per
  sample ``n`` and group ``g`` over ``(S1, Cg, S2)``; ``gamma`` and ``beta``
  are per channel ``(g, c)``.  Layer norm is ``(rows, 1, 1, features, 1)``,
  instance norm ``Cg = 1``, channels-first data ``S1 = 1``, channels-last
  data ``S2 = 1``.
"""

import numpy as np
from numba import njit, prange

from .common import SUMS_JIT, parallel_kernel
from .lanes import grad_lane_sums, scaled_grad_lane_sums, scratch_lanes
from .moments import rows_moments, segments_moments
from .tasks import (
    block_count,
    block_range,
    segment_unit,
    segment_units,
    split_index,
    task_range,
)

# Compiled code calls a module-level function, not an attribute of one.
rows_moments_serial = rows_moments.serial
segments_moments_serial = segments_moments.serial


@njit(**SUMS_JIT)
def sum_tasks(part):
    """Sum the rows of ``part`` (tasks, ...) in task order (new float64 array)."""
    out = np.zeros(part.shape[1:])
    for t in range(part.shape[0]):
        out += part[t]
    return out


@parallel_kernel(SUMS_JIT)
def chunked_moments(x, chunk, seg_len, transpose):
    """Per-feature moments of ``x`` (1, c, inner) for very many features.

    The statistics of the per-sample norms are per sample and group: the
    features of this view are the rows of the batch, up to millions, too
    many for the per-task arrays of :func:`skbn._core.moments.moments`.  So its
    kernels run here on ``chunk`` features at a time, in parallel, each
    feature reduced whole by one call: :func:`~skbn._kernels.cpu.
    segments_moments` for long rows, and for short rows
    :func:`~skbn._kernels.cpu.rows_moments` on the chunk transposed in cache
    (its loop over features vectorizes, where the segment loop would be a
    handful of values long).  The chunks depend on the shape only.
    """
    _, c, inner = x.shape
    n_chunks = (c + chunk - 1) // chunk
    flat = x.reshape(-1)
    cnt = np.empty(c)
    mean = np.empty(c)
    m2 = np.empty(c)
    for k in prange(n_chunks):
        f0 = k * chunk
        f1 = min(c, f0 + chunk)
        # A slice of the flat array keeps Numba's C-contiguous type (a 3-D
        # slice would not, and its loops would not vectorize).
        part = flat[f0 * inner : f1 * inner].reshape(1, f1 - f0, inner)
        if transpose:
            t = np.ascontiguousarray(part[0].T)
            a, b, q = rows_moments_serial(t, inner, 1)
        else:
            a, b, q = segments_moments_serial(part, seg_len, 1)
        cnt[f0:f1] = a
        mean[f0:f1] = b
        m2[f0:f1] = q
    return cnt, mean, m2


# -- batch norm: rows (n, d) -----------------------------------------------------


@parallel_kernel(SUMS_JIT)
def rows_grad_sums(x, dy, mean, block, n_tasks):
    """Per-column ``sum(dy)`` and ``sum(dy * (x - mean))`` of (n, d) arrays."""
    n, d = x.shape
    s_part = np.zeros((n_tasks, d))
    q_part = np.zeros((n_tasks, d))
    for t in prange(n_tasks):
        b0, b1 = task_range(t, n_tasks, block_count(n, block))
        s = np.empty(d)
        q = np.empty(d)
        for b in range(b0, b1):
            r0, r1 = block_range(b, block, n)
            s[:] = 0.0
            q[:] = 0.0
            # Four rows per sweep, as in cpu.rows_moments: fewer accumulator
            # loads and stores per element.
            r4 = r0 + (r1 - r0) // 4 * 4
            for r in range(r0, r4, 4):
                for j in range(d):
                    m = mean[j]
                    g0 = dy[r, j] * 1.0
                    g1 = dy[r + 1, j] * 1.0
                    g2 = dy[r + 2, j] * 1.0
                    g3 = dy[r + 3, j] * 1.0
                    s[j] += (g0 + g1) + (g2 + g3)
                    q[j] += (g0 * (x[r, j] - m) + g1 * (x[r + 1, j] - m)) + (
                        g2 * (x[r + 2, j] - m) + g3 * (x[r + 3, j] - m)
                    )
            for r in range(r4, r1):
                for j in range(d):
                    g0 = dy[r, j] * 1.0
                    s[j] += g0
                    q[j] += g0 * (x[r, j] - mean[j])
            # Block sums first, then into the task's row: two-level summation.
            for j in range(d):
                s_part[t, j] += s[j]
                q_part[t, j] += q[j]
    return sum_tasks(s_part), sum_tasks(q_part)


@parallel_kernel(SUMS_JIT)
def rows_grad_dx(x, dy, mean, a, b, c, out, block):
    """``out = a * dy - b * (x - mean) - c`` per column of (n, d) arrays."""
    n, d = x.shape
    for blk in prange(block_count(n, block)):
        r0, r1 = block_range(blk, block, n)
        for r in range(r0, r1):
            for j in range(d):
                out[r, j] = a[j] * dy[r, j] - b[j] * (x[r, j] - mean[j]) - c[j]


# -- batch norm: segments (outer, c, inner) ---------------------------------------


@parallel_kernel(SUMS_JIT)
def segments_grad_sums(x, dy, mean, seg_len, n_tasks):
    """Per-channel ``sum(dy)`` and ``sum(dy * (x - mean))`` of (outer, c, inner)."""
    outer, c, inner = x.shape
    k_per, n_units = segment_units(x.shape, seg_len)
    s_part = np.zeros((n_tasks, c))
    q_part = np.zeros((n_tasks, c))
    for t in prange(n_tasks):
        u0, u1 = task_range(t, n_tasks, n_units)
        la, lb = scratch_lanes()
        for u in range(u0, u1):
            o, ch, i0, i1 = segment_unit(u, k_per, c, seg_len, inner)
            s, q = grad_lane_sums(dy[o, ch, i0:i1], x[o, ch, i0:i1], mean[ch], la, lb)
            s_part[t, ch] += s
            q_part[t, ch] += q
    return sum_tasks(s_part), sum_tasks(q_part)


@parallel_kernel(SUMS_JIT)
def segments_grad_dx(x, dy, mean, a, b, c, out):
    """``out = a * dy - b * (x - mean) - c`` per channel of (outer, c, inner)."""
    outer, nc, inner = x.shape
    for oc in prange(outer * nc):
        o, ch = split_index(oc, nc)
        m = mean[ch]
        ac = a[ch]
        bc = b[ch]
        cc = c[ch]
        for i in range(inner):
            out[o, ch, i] = ac * dy[o, ch, i] - bc * (x[o, ch, i] - m) - cc


# -- per-sample norms: groups (N, S1, G, Cg, S2) ------------------------------------


@parallel_kernel(SUMS_JIT)
def groups_affine(x, mean, inv_std, gamma, beta, out):
    """``out = (x - mean[n, g]) * inv_std[n, g] * gamma[g, c] + beta[g, c]``.

    NaN stays NaN; ``out`` may be ``x`` itself.  The innermost loop runs over
    the contiguous axis: the channels when ``S2 == 1`` (layer norm,
    channels-last), the spatial positions otherwise.
    """
    N, S1, G, Cg, S2 = x.shape
    for u in prange(N * S1):
        n, s1 = split_index(u, S1)
        for g in range(G):
            m, rs = mean[n, g], inv_std[n, g]
            if S2 == 1:
                for ch in range(Cg):
                    out[n, s1, g, ch, 0] = (x[n, s1, g, ch, 0] - m) * (
                        rs * gamma[g, ch]
                    ) + beta[g, ch]
            else:
                for ch in range(Cg):
                    a = rs * gamma[g, ch]
                    b = beta[g, ch]
                    for s in range(S2):
                        out[n, s1, g, ch, s] = (x[n, s1, g, ch, s] - m) * a + b


@parallel_kernel(SUMS_JIT)
def groups_grad_sums(x, dy, mean, inv_std, gamma, n_tasks):
    """The sums of the per-sample backward pass.

    Returns
    -------
    a : (N, G)
        ``sum(dy * gamma)`` per sample and group (``sum(dxhat)``).
    b : (N, G)
        ``sum(dy * gamma * (x - mean))`` per sample and group.
    dgamma : (G, Cg)
        ``sum(dy * xhat)`` per channel, over samples and positions.
    dbeta : (G, Cg)
        ``sum(dy)`` per channel.

    Tasks own whole samples, so ``a`` and ``b`` need no merge; the
    per-channel sums are kept per task and added in task order.
    """
    N, S1, G, Cg, S2 = x.shape
    a = np.zeros((N, G))
    b = np.zeros((N, G))
    dg_part = np.zeros((n_tasks, G, Cg))
    db_part = np.zeros((n_tasks, G, Cg))
    for t in prange(n_tasks):
        n0, n1 = task_range(t, n_tasks, N)
        dg = dg_part[t]
        db = db_part[t]
        la, lb = scratch_lanes()
        for n in range(n0, n1):
            for s1 in range(S1):
                for g in range(G):
                    m = mean[n, g]
                    rs = inv_std[n, g]
                    acc_a = 0.0
                    acc_b = 0.0
                    if S2 == 1:
                        # Element-wise first (it vectorizes), then the sums
                        # over the channels in lanes, as along a run.
                        for ch in range(Cg):
                            v = dy[n, s1, g, ch, 0] * 1.0
                            xc = x[n, s1, g, ch, 0] - m
                            dg[g, ch] += v * xc * rs
                            db[g, ch] += v
                        acc_a, acc_b = scaled_grad_lane_sums(
                            dy[n, s1, g, :, 0], x[n, s1, g, :, 0], m, gamma[g], la, lb
                        )
                    else:
                        for ch in range(Cg):
                            sv, sq = grad_lane_sums(
                                dy[n, s1, g, ch], x[n, s1, g, ch], m, la, lb
                            )
                            acc_a += sv * gamma[g, ch]
                            acc_b += sq * gamma[g, ch]
                            dg[g, ch] += sq * rs
                            db[g, ch] += sv
                    a[n, g] += acc_a
                    b[n, g] += acc_b
    return a, b, sum_tasks(dg_part), sum_tasks(db_part)


@parallel_kernel(SUMS_JIT)
def groups_grad_dx(x, dy, mean, inv_std, gamma, p, q, out):
    """``out = inv_std * gamma * dy - p - q * (x - mean)``, ``p``, ``q`` per (n, g)."""
    N, S1, G, Cg, S2 = x.shape
    for u in prange(N * S1):
        n, s1 = split_index(u, S1)
        for g in range(G):
            m, rs = mean[n, g], inv_std[n, g]
            pg = p[n, g]
            qg = q[n, g]
            if S2 == 1:
                for ch in range(Cg):
                    out[n, s1, g, ch, 0] = (
                        rs * gamma[g, ch] * dy[n, s1, g, ch, 0]
                        - pg
                        - qg * (x[n, s1, g, ch, 0] - m)
                    )
            else:
                for ch in range(Cg):
                    k = rs * gamma[g, ch]
                    for s in range(S2):
                        out[n, s1, g, ch, s] = (
                            k * dy[n, s1, g, ch, s] - pg - qg * (x[n, s1, g, ch, s] - m)
                        )
