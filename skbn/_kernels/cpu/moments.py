"""Moment kernels: per-feature ``(count, mean, M2)`` of the rows, segments
and channels layouts, dense (NaN propagates) or masked (NaN skipped,
weighted).

Each block or run is reduced on its own around a shift (see
:func:`rows_moments`), blocks are merged with
:func:`~.formulas.chan_merge` in order within a task and the tasks in
order (:func:`~.formulas.merge_task_moments`), so results are
bit-identical for any thread count.
"""

import numpy as np
from numba import njit, prange

from .common import SUMS_JIT, parallel_kernel
from .formulas import (
    absolute_means,
    chan_merge,
    corrected_m2,
    exact_sub,
    exact_sub_into,
    merge_task_moments,
    ratio,
    shifted_m2,
)
from .lanes import lane_sums, masked_lane_sums, scratch_lanes
from .tasks import (
    block_count,
    block_range,
    segment_unit,
    segment_units,
    task_range,
    task_tables,
)

# Groups of channels that channels_moments hands to the threads.
_CHANNEL_GROUPS = 256


_SHIFT_ROWS = 16


@njit(**SUMS_JIT)
def shift_reference(x3, w2=None):
    """Per-channel reference ``K`` of ``x3`` (outer, c, inner) for exact means.

    The moment kernels merge their blocks' means *relative to* ``K``
    (``mean - K``), not as absolute values: an absolute mean of data at an
    offset is rounded to the offset's ulp, and in the merge's
    ``delta**2 * n_a * n_b / n`` that rounding is a first-order error (the
    docs' ``1e6 + {0, 1}`` example lost 11 digits of its variance 0.25).
    Relative means are rounded to the ulp of the spread instead, as in a
    two-pass computation.  ``K`` is the first non-NaN value of the channel
    (in memory order) plus the mean offset of up to ``_SHIFT_ROWS`` of its
    first non-NaN values from it: within a fraction of a standard deviation
    of the mean for most data, so that also the blocks' shifted sums rarely
    need the exactness guard's second pass, and exactly the value of a
    constant channel.  It depends on the data only (not on the number of
    tasks), so results stay bit-identical for any thread count.  A channel
    without values gets 0.

    With weights ``w2`` (``(outer, inner)``, those of the masked kernels) a
    value of weight 0 is not one of them: it is not in the statistics, and a
    constant among the weighted values must be ``K`` exactly, or its M2
    comes out as rounding (1e-30) instead of 0.
    """
    outer, c, inner = x3.shape
    ref = np.zeros(c)
    for ch in range(c):
        first = 0.0
        acc = 0.0
        k = 0
        for o in range(outer):
            for i in range(inner):
                v = x3[o, ch, i]
                present = v == v
                if w2 is not None:
                    present = present and w2[o, i] > 0.0
                if present:
                    if k == 0:
                        first = float(v)
                    else:
                        # In float64: float32 values of opposite signs near
                        # the top of the range would overflow their difference.
                        acc += float(v) - first
                    k += 1
                    if k == _SHIFT_ROWS:
                        break
            if k == _SHIFT_ROWS:
                break
        if k > 0:
            ref[ch] = first + acc / k
    return ref


@njit(inline="always", **SUMS_JIT)
def _start_block(k0, ma, shift, srel, s, s2):
    """Start a block of the rows kernels: its shift ``K + ma`` (``ma`` the
    task's mean so far, relative to ``K``), the shift relative to ``K`` as
    rounded (``srel``, see :func:`~.formulas.exact_sub`), and the sums ``s``
    and ``s2`` zeroed."""
    for j in range(shift.shape[0]):
        shift[j] = k0[j] + ma[j]
    exact_sub_into(shift, k0, srel)
    s[:] = 0.0
    s2[:] = 0.0


@parallel_kernel(SUMS_JIT)
def rows_moments(x, block, n_tasks, ref=None):
    """Per-column moments of ``x`` (n, d); NaN propagates (no weights).

    ``ref``, the per-column reference ``K`` of :func:`shift_reference`, is
    taken from ``x`` when omitted and the means come back absolute; given,
    the means come back relative to it (``mean - ref``), for a caller that
    merges them further (the fold of :mod:`skbn._core`).

    Each block is reduced in a single streaming pass of shifted sums
    ``S1 = sum(x - k)`` and ``S2 = sum((x - k)**2)`` with ``k`` the task's
    running mean (``K`` for the first block), then
    ``M2 = S2 - S1**2 / n``.  The subtraction loses accuracy only when ``k``
    is far from the block mean compared to the block's spread; the kernel
    measures that (``S1**2 / n`` against ``S2``) and, when more than half of
    ``S2`` would cancel, recomputes that block's M2 exactly from its mean in a
    second pass over the block, which is still in cache.  So the error is never
    more than twice that of the two-pass algorithm, and a constant column
    gives M2 exactly 0.  Blocks merge with means relative to ``K`` (see
    :func:`shift_reference`).
    """
    n, d = x.shape
    k0 = shift_reference(x.reshape(n, d, 1)) if ref is None else ref
    cnt, mean, m2 = task_tables(n_tasks, d)
    for t in prange(n_tasks):
        b0, b1 = task_range(t, n_tasks, block_count(n, block))
        # The scratch rows are allocated here: taken as a tuple from an
        # inlined helper, they cost this kernel 10 to 15 % of its time.
        shift = np.empty(d)
        srel = np.empty(d)
        s = np.empty(d)
        q = np.empty(d)
        e = np.empty(d)
        ma = mean[t]
        qa = m2[t]
        na = 0.0
        for b in range(b0, b1):
            r0, r1 = block_range(b, block, n)
            nb = float(r1 - r0)
            _start_block(k0, ma, shift, srel, s, q)
            # Four rows per sweep: a quarter of the accumulator loads and
            # stores, which otherwise bound this loop rather than memory.
            r4 = r0 + (r1 - r0) // 4 * 4
            for r in range(r0, r4, 4):
                for j in range(d):
                    k = shift[j]
                    a0 = x[r, j] - k
                    a1 = x[r + 1, j] - k
                    a2 = x[r + 2, j] - k
                    a3 = x[r + 3, j] - k
                    s[j] += (a0 + a1) + (a2 + a3)
                    q[j] += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3)
            for r in range(r4, r1):
                for j in range(d):
                    dv = x[r, j] - shift[j]
                    s[j] += dv
                    q[j] += dv * dv
            redo = False
            for j in range(d):
                # s becomes the block mean minus the shift.
                s[j], q[j], far = shifted_m2(s[j], q[j], nb)
                redo |= far
            if redo:
                for j in range(d):
                    shift[j] = shift[j] + s[j]  # the block mean, rounded
                q[:] = 0.0
                e[:] = 0.0
                for r in range(r0, r1):
                    for j in range(d):
                        dv = x[r, j] - shift[j]
                        e[j] += dv
                        q[j] += dv * dv
                for j in range(d):
                    q[j] = corrected_m2(q[j], e[j], nb)
            n_new = na
            for j in range(d):
                n_new, ma[j], qa[j] = chan_merge(
                    na, ma[j], qa[j], nb, srel[j] + s[j], q[j]
                )
            na = n_new
        cnt[t, :] = na
    if n_tasks == 1:  # what the merge would return, without its allocations
        out = cnt[0], mean[0], m2[0]
    else:
        out = merge_task_moments(cnt, mean, m2)
    if ref is None:
        absolute_means(out[0], out[1], k0)
    return out


@parallel_kernel(SUMS_JIT)
def rows_moments_masked(x, w, block, n_tasks, ref=None):
    """Per-column weighted moments of ``x`` (n, d) that skip NaN entries.

    ``w`` has shape ``(n, 1)`` (one weight per row, any strides); ``ref`` as
    in :func:`rows_moments`.  The mean of a block is formed around a shift
    (``K`` plus the task's mean so far) so that a constant feature has
    exactly its value as mean and exactly 0 as M2, whatever the weights.
    """
    n, d = x.shape
    k0 = shift_reference(x.reshape(n, d, 1), w) if ref is None else ref
    cnt, mean, m2 = task_tables(n_tasks, d)
    for t in prange(n_tasks):
        b0, b1 = task_range(t, n_tasks, block_count(n, block))
        shift = np.empty(d)
        srel = np.empty(d)
        s = np.empty(d)
        sw = np.empty(d)
        q = np.empty(d)
        e = np.empty(d)
        na = cnt[t]
        ma = mean[t]
        qa = m2[t]
        for b in range(b0, b1):
            r0, r1 = block_range(b, block, n)
            _start_block(k0, ma, shift, srel, s, sw)
            for r in range(r0, r1):
                wr = w[r, 0]
                for j in range(d):
                    v = x[r, j]
                    if v == v:
                        s[j] += wr * (v - shift[j])
                        sw[j] += wr
            for j in range(d):
                s[j] = ratio(s[j], sw[j])
                shift[j] = shift[j] + s[j]  # the block mean, rounded
                srel[j] = srel[j] + s[j] if sw[j] > 0.0 else 0.0
            q[:] = 0.0
            e[:] = 0.0
            for r in range(r0, r1):
                wr = w[r, 0]
                for j in range(d):
                    v = x[r, j]
                    if v == v:
                        dv = v - shift[j]
                        e[j] += wr * dv
                        q[j] += wr * dv * dv
            for j in range(d):
                q[j] = corrected_m2(q[j], e[j], sw[j])
            for j in range(d):
                na[j], ma[j], qa[j] = chan_merge(
                    na[j], ma[j], qa[j], sw[j], srel[j], q[j]
                )
    out = merge_task_moments(cnt, mean, m2)
    if ref is None:
        absolute_means(out[0], out[1], k0)
    return out


@njit(inline="always", **SUMS_JIT)
def _run_moments(v, k, ls, lq):
    """Moments ``(n, mean - k, M2)`` of the contiguous run ``v``, shifted by ``k``.

    One pass of shifted sums, redone two-pass from the mean when the shift
    would cost accuracy, exactly as in :func:`rows_moments`; NaN propagates.
    ``ls``, ``lq`` are the scratch lanes of :func:`lane_sums`.
    """
    nb = float(v.shape[0])
    s, q = lane_sums(v, k, ls, lq)
    loc, m2, far = shifted_m2(s, q, nb)
    if far:
        e, q = lane_sums(v, k + loc, ls, lq)
        return nb, loc, corrected_m2(q, e, nb)
    return nb, loc, m2


@parallel_kernel(SUMS_JIT)
def channels_moments(x, seg_len, ref=None):
    """Per-row moments of ``x`` (c, inner): the segments layout with
    ``outer == 1`` and many channels (per-sample statistics, Fortran-ordered
    columns).  Each channel is one thread's work, merged over its runs in
    order, so no per-task table of all channels is needed.  ``ref`` as in
    :func:`rows_moments`."""
    c, inner = x.shape
    if ref is None:
        k0 = shift_reference(x.reshape(1, c, inner))
    else:
        k0 = ref
    cnt = np.zeros(c)
    mean = np.zeros(c)
    m2 = np.zeros(c)
    # Channels in contiguous groups, one scratch pair per group (not per
    # channel: a per-sample fit has a channel per sample).  A channel's
    # result does not depend on its group.
    n_groups = min(c, _CHANNEL_GROUPS)
    for g in prange(n_groups):
        c0, c1 = task_range(g, n_groups, c)
        ls, lq = scratch_lanes()
        for ch in range(c0, c1):
            na = 0.0
            ma = 0.0
            qa = 0.0
            for i0 in range(0, inner, seg_len):
                run = x[ch, i0 : min(inner, i0 + seg_len)]
                k = k0[ch] + ma
                nb, loc, q = _run_moments(run, k, ls, lq)
                rel = exact_sub(k, k0[ch]) + loc
                na, ma, qa = chan_merge(na, ma, qa, nb, rel, q)
            cnt[ch] = na
            mean[ch] = ma
            m2[ch] = qa
    if ref is None:
        absolute_means(cnt, mean, k0)
    return cnt, mean, m2


@njit(inline="always", **SUMS_JIT)
def _masked_run_moments(v, w, k, la, lb):
    """Weighted moments ``(sum(w), mean - k, M2)`` of the values of the run
    ``v`` that are not NaN, in two passes (the second around the mean);
    ``la``, ``lb`` are the scratch lanes of :func:`masked_lane_sums`."""
    sw, s = masked_lane_sums(v, w, k, la, lb, False)
    loc = ratio(s, sw)
    e, q = masked_lane_sums(v, w, k + loc, la, lb, True)
    return sw, loc, corrected_m2(q, e, sw)


@njit(inline="always", **SUMS_JIT)
def _segments_tables(x, w, seg_len, n_tasks, k0, masked):
    """The per-task moment tables ``(n_tasks, c)`` of
    :func:`segments_moments` (``masked`` False, ``w`` unused) and
    :func:`segments_moments_masked` (``masked`` True), means relative to
    ``k0``; the kernels merge them and handle their ``ref`` themselves."""
    outer, c, inner = x.shape
    k_per, n_units = segment_units(x.shape, seg_len)
    cnt, mean, m2 = task_tables(n_tasks, c)
    for t in prange(n_tasks):
        u0, u1 = task_range(t, n_tasks, n_units)
        la, lb = scratch_lanes()
        for u in range(u0, u1):
            o, ch, i0, i1 = segment_unit(u, k_per, c, seg_len, inner)
            run = x[o, ch, i0:i1]
            k = k0[ch] + mean[t, ch]
            if masked:
                nb, loc, q = _masked_run_moments(run, w[o, i0:i1], k, la, lb)
            else:
                nb, loc, q = _run_moments(run, k, la, lb)
            # A dense run is never empty; an empty weighted one merges as
            # a no-op.
            rel = exact_sub(k, k0[ch]) + loc if nb > 0.0 else 0.0
            cnt[t, ch], mean[t, ch], m2[t, ch] = chan_merge(
                cnt[t, ch], mean[t, ch], m2[t, ch], nb, rel, q
            )
    return cnt, mean, m2


@parallel_kernel(SUMS_JIT)
def segments_moments(x, seg_len, n_tasks, ref=None):
    """Per-channel moments of ``x`` (outer, c, inner); NaN propagates.

    ``ref`` as in :func:`rows_moments`."""
    k0 = shift_reference(x) if ref is None else ref
    cnt, mean, m2 = _segments_tables(x, x[:, 0], seg_len, n_tasks, k0, False)
    out = merge_task_moments(cnt, mean, m2)
    if ref is None:
        absolute_means(out[0], out[1], k0)
    return out


@parallel_kernel(SUMS_JIT)
def segments_moments_masked(x, w, seg_len, n_tasks, ref=None):
    """Weighted, NaN-skipping per-channel moments of ``x`` (outer, c, inner).

    ``w`` has shape ``(outer, inner)`` (any strides, zero strides allowed);
    ``ref`` as in :func:`rows_moments`.
    """
    k0 = shift_reference(x, w) if ref is None else ref
    cnt, mean, m2 = _segments_tables(x, w, seg_len, n_tasks, k0, True)
    out = merge_task_moments(cnt, mean, m2)
    if ref is None:
        absolute_means(out[0], out[1], k0)
    return out
