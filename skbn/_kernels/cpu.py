"""Numba CPU kernels.

Every kernel takes validated, C-contiguous float32/float64 arrays and checks
nothing; the wrappers in :mod:`skbn._moments` validate, choose the layout and
allocate.  Two layouts cover every supported input without copying it:

* rows ``(n, d)``: statistics per column (2-D data, channels-last images);
* segments ``(outer, c, inner)``: statistics per channel over ``outer`` and
  ``inner`` (``axis=1`` on ``(N, C, H, W)``, Fortran-ordered 2-D data seen
  through its transpose).

Moments are ``(count, mean, M2)`` per feature, accumulated in float64 whatever
the input dtype.  Each cache-resident block is reduced on its own (two-pass,
or shifted sums with an exactness guard, see :func:`rows_moments`; never the
cancelling ``E[x^2] - E[x]^2``) and blocks are then combined with the pairwise
update of Chan, Golub and LeVeque (1979)::

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

The work is cut into a number of tasks that depends on the shape only (see
``skbn._config``); each task merges its blocks in order and the tasks are
merged in order, so results are bit-identical for any thread count.
"""

import types

import numpy as np
from numba import njit, prange

from .._config import FASTMATH

_JIT = {"cache": True, "fastmath": FASTMATH, "nogil": True}
# The per-block and per-feature formulas (merges, a block's M2 from its sums,
# the EMA, the coefficients) run in IEEE arithmetic, as separate functions.
# A compiled function that calls another holds a copy of the callee, linked
# and optimized again with the caller; the process that compiles runs the
# callee's own code, a process that loads from Numba's cache runs the copy
# (issue 13, class 5).  Under fast-math flags the optimizer may rewrite each
# copy differently (``s * s / n`` as ``s * (s / n)``, a product fused into an
# FMA), so the same kernel gave bits that depended on whether it had been
# compiled or loaded.  Without the flags every copy computes the same IEEE
# operations.  They cost nothing measurable: each runs once per block or per
# feature, not per value.  ``_exact_sub`` and ``population_var`` use the same
# flags for their own reasons (see them).
_IEEE = {**_JIT, "fastmath": False}
# The moment kernels run without ``reassoc``, too: under it the optimizer
# vectorized a sum along a run in a different order in the copy of a
# parallel kernel's loop body that a cache load runs than in the one the
# compiling process runs (1 ulp of a mean or an M2; issue 13, class 5).
# Their sums along a run are written in explicit lanes instead
# (:func:`_lane_sums`), which vectorize without it; their sums across
# features (the rows kernels) are element-wise and need no flag.  The affine
# kernels keep it: their output is element-wise and the only sum they take,
# the non-finite flag, is 0 or NaN in any order.
SUMS_JIT = {**_JIT, "fastmath": FASTMATH - {"reassoc"}}


@njit(**_IEEE)
def chan_merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Merge moments ``b`` into ``a``; the one implementation of the update.

    An empty side (count 0, mean 0, M2 0) leaves the other side bit-for-bit
    unchanged.
    """
    n = n_a + n_b
    f = n_b / n if n > 0.0 else 0.0  # weight of the new side
    delta = mean_b - mean_a  # new minus old mean
    w = n_a * f
    # With an empty side the correction is exactly 0, also when delta * delta
    # overflows (|mean| > 1.3e154; inf * 0 would be NaN).
    corr = delta * (delta * w) if w > 0.0 else 0.0
    return n, mean_a + delta * f, m2_a + m2_b + corr


@njit(**_IEEE)
def merge_task_moments(cnt, mean, m2):
    """Merge rows of ``(tasks, features)`` moments in task order.

    Serial: at most ``MAX_TASKS`` rows, cheaper than waking the threads.
    """
    n_tasks, d = mean.shape
    out_n = np.zeros(d)
    out_mean = np.zeros(d)
    out_m2 = np.zeros(d)
    for j in range(d):
        na = 0.0
        ma = 0.0
        qa = 0.0
        for t in range(n_tasks):
            na, ma, qa = chan_merge(na, ma, qa, cnt[t, j], mean[t, j], m2[t, j])
        out_n[j] = na
        out_mean[j] = ma
        out_m2[j] = qa
    return out_n, out_mean, out_m2


@njit(**_IEEE)
def merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Element-wise merge of two sets of per-feature moments (new arrays)."""
    d = mean_a.shape[0]
    n = np.empty(d)
    mean = np.empty(d)
    m2 = np.empty(d)
    for j in range(d):
        n[j], mean[j], m2[j] = chan_merge(
            n_a[j], mean_a[j], m2_a[j], n_b[j], mean_b[j], m2_b[j]
        )
    return n, mean, m2


@njit(inline="always", **_JIT)
def segment_unit(u, k_per, c, seg_len, inner):
    """Unit ``u`` of the segments layout: ``(o, channel, i0, i1)``.

    Units run in memory order, ``k_per`` pieces of at most ``seg_len`` per
    ``(o, channel)`` run of length ``inner``.
    """
    k = u % k_per
    oc = u // k_per
    return oc // c, oc % c, k * seg_len, min(inner, (k + 1) * seg_len)


@njit(inline="always", **_JIT)
def _task_range(t, n_tasks, n_units):
    return t * n_units // n_tasks, (t + 1) * n_units // n_tasks


_SHIFT_ROWS = 16


@njit(**SUMS_JIT)
def shift_reference(x3):
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
                if v == v:
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


@njit(**_IEEE)
def corrected_m2(q, e, sw):
    """M2 of a block from its second pass around a rounded mean ``m``.

    ``q = sum(w * (x - m)**2)`` and ``e = sum(w * (x - m))``.  At an offset
    the block mean is rounded to the offset's ulp, and ``q`` alone is M2 plus
    ``sw * (m - mean)**2``, an error of the order of the two-pass algorithm's
    own; the correction ``e**2 / sw`` removes it (the corrected two-pass
    algorithm of Chan, Golub and LeVeque).  ``e`` is tiny, so the
    subtraction cancels nothing.  ``sw == 0`` gives ``q`` (that is, 0).
    """
    return q - e * e / sw if sw > 0.0 else q


@njit(**_IEEE)
def shifted_m2(s, q, n):
    """``(s / n, q - s**2 / n, redo)`` of a block's shifted sums.

    ``s = sum(x - k)`` and ``q = sum((x - k)**2)`` over ``n`` values; ``redo``
    says that the shift ``k`` is too far from the mean for ``q - s**2 / n``
    to keep its accuracy (more than half of ``q`` cancels), so the block is
    read again around its mean.
    """
    c = s * s / n
    return s / n, q - c, c > 0.5 * q


@njit(**_IEEE)
def ratio(a, b):
    """``a / b``, or 0 where ``b`` is not positive (an empty weighted block)."""
    return a / b if b > 0.0 else 0.0


@njit(**_IEEE)
def _exact_sub(a, b):
    """``a - b`` in IEEE arithmetic.

    A kernel's shift is ``K + m`` (``m`` its running mean relative to ``K``)
    and its relative value must be the rounded shift minus ``K``, not ``m``:
    fastmath's reassoc would fold ``(K + m) - K`` into ``m``.  Compiled
    apart, without fastmath, so that the subtraction is kept.
    """
    return a - b


@njit(**_IEEE)
def exact_sub_into(a, b, out):
    """``out[:] = a - b`` in IEEE arithmetic, as :func:`_exact_sub`.

    One call per block for a whole row of features: a call per feature cost
    the wide rows kernels a tenth of their time.
    """
    for j in range(out.shape[0]):
        out[j] = a[j] - b[j]


@njit(**_JIT)
def absolute_means(count, mean, ref):
    """``mean + ref`` in place where ``count > 0`` (an empty feature keeps
    mean 0, so that it merges as a no-op); returns ``mean``."""
    for j in range(mean.shape[0]):
        if count[j] > 0.0:
            mean[j] = ref[j] + mean[j]
    return mean


@njit(parallel=True, **SUMS_JIT)
def rows_moments(x, block, n_tasks, ref=None):
    """Per-column moments of ``x`` (n, d); NaN propagates (no weights).

    ``ref``, the per-column reference ``K`` of :func:`shift_reference`, is
    taken from ``x`` when omitted and the means come back absolute; given,
    the means come back relative to it (``mean - ref``), for a caller that
    merges them further (the fold of :mod:`skbn._moments`).

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
    if ref is None:
        k0 = shift_reference(x.reshape(n, d, 1))
    else:
        k0 = ref
    n_blocks = (n + block - 1) // block
    cnt = np.zeros((n_tasks, d))
    mean = np.zeros((n_tasks, d))
    m2 = np.zeros((n_tasks, d))
    for t in prange(n_tasks):
        b0, b1 = _task_range(t, n_tasks, n_blocks)
        shift = np.empty(d)
        srel = np.empty(d)
        s = np.empty(d)
        q = np.empty(d)
        e = np.empty(d)
        ma = mean[t]
        qa = m2[t]
        na = 0.0
        for b in range(b0, b1):
            r0 = b * block
            r1 = min(n, r0 + block)
            nb = float(r1 - r0)
            for j in range(d):
                shift[j] = k0[j] + ma[j]
            exact_sub_into(shift, k0, srel)
            s[:] = 0.0
            q[:] = 0.0
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


@njit(parallel=True, **SUMS_JIT)
def rows_moments_masked(x, w, block, n_tasks, ref=None):
    """Per-column weighted moments of ``x`` (n, d) that skip NaN entries.

    ``w`` has shape ``(n, 1)`` (one weight per row, any strides); ``ref`` as
    in :func:`rows_moments`.  The mean of a block is formed around a shift
    (``K`` plus the task's mean so far) so that a constant feature has
    exactly its value as mean and exactly 0 as M2, whatever the weights.
    """
    n, d = x.shape
    if ref is None:
        k0 = shift_reference(x.reshape(n, d, 1))
    else:
        k0 = ref
    n_blocks = (n + block - 1) // block
    cnt = np.zeros((n_tasks, d))
    mean = np.zeros((n_tasks, d))
    m2 = np.zeros((n_tasks, d))
    for t in prange(n_tasks):
        b0, b1 = _task_range(t, n_tasks, n_blocks)
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
            r0 = b * block
            r1 = min(n, r0 + block)
            for j in range(d):
                shift[j] = k0[j] + ma[j]
            exact_sub_into(shift, k0, srel)
            s[:] = 0.0
            sw[:] = 0.0
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


# Lanes of :func:`_lane_sums`: a chunk is four AVX-512 registers of float64;
# a power of two, at least 8 (see :func:`fold_lanes`).
LANES = 32
# Groups of channels that channels_moments hands to the threads.
_CHANNEL_GROUPS = 256


@njit(inline="always", **SUMS_JIT)
def fold_lanes(lanes):
    """The sum of ``lanes`` (a power of two long, at least 8), in a fixed
    tree: the upper half adds onto the lower half down to eight lanes (an
    element-wise loop, which vectorizes), then the eight in pairs.  A sum
    lane by lane would be a chain of dependent additions, a third of a short
    run's own time.  Overwrites ``lanes``."""
    h = lanes.shape[0] // 2
    while h >= 8:
        for j in range(h):
            lanes[j] += lanes[j + h]
        h //= 2
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
        (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
    )


@njit(inline="always", **SUMS_JIT)
def _lane_sums(v, k, ls, lq):
    """``(sum(v - k), sum((v - k)**2))`` of the contiguous run ``v``, summed
    in an order fixed by the code; NaN propagates.

    ``ls`` and ``lq`` (L,) are scratch lanes: element ``j`` of each chunk of
    ``L`` values adds to lane ``j`` (a loop without a reduction, which LLVM
    vectorizes without ``reassoc``), four chunks per sweep so that the lanes
    are loaded and stored a quarter as often; the lanes are summed by
    :func:`fold_lanes`, then the tail is added in index order.
    """
    n = v.shape[0]
    width = ls.shape[0]
    ls[:] = 0.0
    lq[:] = 0.0
    m = n - n % (4 * width)
    for i0 in range(0, m, 4 * width):
        u0 = v[i0 : i0 + width]
        u1 = v[i0 + width : i0 + 2 * width]
        u2 = v[i0 + 2 * width : i0 + 3 * width]
        u3 = v[i0 + 3 * width : i0 + 4 * width]
        for j in range(width):
            a0 = u0[j] - k
            a1 = u1[j] - k
            a2 = u2[j] - k
            a3 = u3[j] - k
            ls[j] += (a0 + a1) + (a2 + a3)
            lq[j] += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3)
    m1 = n - n % width
    for i0 in range(m, m1, width):
        u0 = v[i0 : i0 + width]
        for j in range(width):
            a0 = u0[j] - k
            ls[j] += a0
            lq[j] += a0 * a0
    s = fold_lanes(ls)
    q = fold_lanes(lq)
    for i in range(m1, n):
        a0 = v[i] - k
        s += a0
        q += a0 * a0
    return s, q


@njit(inline="always", **SUMS_JIT)
def _masked_lane_sums(v, w, k, la, lb, second):
    """Weighted sums over the values of the run ``v`` that are not NaN, in an
    order fixed by the code (the lanes of :func:`_lane_sums`, two chunks per
    sweep): ``(sum(w), sum(w * d))`` with ``d = v - k``, or with ``second``
    ``(sum(w * d), sum(w * d**2))``.

    A weight broadcast along the run (stride 0: no ``sample_weight``, or one
    per sample of a segments layout) is read once: a strided load would keep
    the loop from vectorizing.  The arithmetic, and so the result, is the
    same as with the weight repeated.
    """
    n = v.shape[0]
    width = la.shape[0]
    same = n > 0 and w.strides[0] == 0
    wc = w[0] if n > 0 else 0.0
    la[:] = 0.0
    lb[:] = 0.0
    m = n - n % (2 * width)
    for i0 in range(0, m, 2 * width):
        u0 = v[i0 : i0 + width]
        u1 = v[i0 + width : i0 + 2 * width]
        w0 = w[i0 : i0 + width]
        w1 = w[i0 + width : i0 + 2 * width]
        for j in range(width):
            a0 = u0[j]
            a1 = u1[j]
            ok0 = a0 == a0
            ok1 = a1 == a1
            p0 = (wc if same else w0[j]) if ok0 else 0.0
            p1 = (wc if same else w1[j]) if ok1 else 0.0
            d0 = a0 - k if ok0 else 0.0
            d1 = a1 - k if ok1 else 0.0
            if second:
                la[j] += p0 * d0 + p1 * d1
                lb[j] += p0 * d0 * d0 + p1 * d1 * d1
            else:
                la[j] += p0 + p1
                lb[j] += p0 * d0 + p1 * d1
    sa = fold_lanes(la)
    sb = fold_lanes(lb)
    for i in range(m, n):
        a0 = v[i]
        if a0 == a0:
            d0 = a0 - k
            if second:
                sa += w[i] * d0
                sb += w[i] * d0 * d0
            else:
                sa += w[i]
                sb += w[i] * d0
    return sa, sb


@njit(inline="always", **SUMS_JIT)
def _run_moments(v, k, ls, lq):
    """Moments ``(n, mean - k, M2)`` of the contiguous run ``v``, shifted by ``k``.

    One pass of shifted sums, redone two-pass from the mean when the shift
    would cost accuracy, exactly as in :func:`rows_moments`; NaN propagates.
    ``ls``, ``lq`` are the scratch lanes of :func:`_lane_sums`.
    """
    nb = float(v.shape[0])
    s, q = _lane_sums(v, k, ls, lq)
    loc, m2, far = shifted_m2(s, q, nb)
    if far:
        e, q = _lane_sums(v, k + loc, ls, lq)
        return nb, loc, corrected_m2(q, e, nb)
    return nb, loc, m2


@njit(parallel=True, **SUMS_JIT)
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
        c0, c1 = _task_range(g, n_groups, c)
        ls = np.empty(LANES)
        lq = np.empty(LANES)
        for ch in range(c0, c1):
            na = 0.0
            ma = 0.0
            qa = 0.0
            for i0 in range(0, inner, seg_len):
                run = x[ch, i0 : min(inner, i0 + seg_len)]
                k = k0[ch] + ma
                nb, loc, q = _run_moments(run, k, ls, lq)
                rel = _exact_sub(k, k0[ch]) + loc
                na, ma, qa = chan_merge(na, ma, qa, nb, rel, q)
            cnt[ch] = na
            mean[ch] = ma
            m2[ch] = qa
    if ref is None:
        absolute_means(cnt, mean, k0)
    return cnt, mean, m2


@njit(parallel=True, **SUMS_JIT)
def segments_moments(x, seg_len, n_tasks, ref=None):
    """Per-channel moments of ``x`` (outer, c, inner); NaN propagates.

    ``ref`` as in :func:`rows_moments`."""
    outer, c, inner = x.shape
    k0 = shift_reference(x) if ref is None else ref
    k_per = (inner + seg_len - 1) // seg_len
    n_units = outer * c * k_per
    cnt = np.zeros((n_tasks, c))
    mean = np.zeros((n_tasks, c))
    m2 = np.zeros((n_tasks, c))
    for t in prange(n_tasks):
        u0, u1 = _task_range(t, n_tasks, n_units)
        ls = np.empty(LANES)
        lq = np.empty(LANES)
        for u in range(u0, u1):
            o, ch, i0, i1 = segment_unit(u, k_per, c, seg_len, inner)
            k = k0[ch] + mean[t, ch]
            nb, loc, q = _run_moments(x[o, ch, i0:i1], k, ls, lq)
            cnt[t, ch], mean[t, ch], m2[t, ch] = chan_merge(
                cnt[t, ch],
                mean[t, ch],
                m2[t, ch],
                nb,
                _exact_sub(k, k0[ch]) + loc,
                q,
            )
    out = merge_task_moments(cnt, mean, m2)
    if ref is None:
        absolute_means(out[0], out[1], k0)
    return out


@njit(parallel=True, **SUMS_JIT)
def segments_moments_masked(x, w, seg_len, n_tasks, ref=None):
    """Weighted, NaN-skipping per-channel moments of ``x`` (outer, c, inner).

    ``w`` has shape ``(outer, inner)`` (any strides, zero strides allowed);
    ``ref`` as in :func:`rows_moments`.
    """
    outer, c, inner = x.shape
    k0 = shift_reference(x) if ref is None else ref
    k_per = (inner + seg_len - 1) // seg_len
    n_units = outer * c * k_per
    cnt = np.zeros((n_tasks, c))
    mean = np.zeros((n_tasks, c))
    m2 = np.zeros((n_tasks, c))
    for t in prange(n_tasks):
        u0, u1 = _task_range(t, n_tasks, n_units)
        la = np.empty(LANES)
        lb = np.empty(LANES)
        for u in range(u0, u1):
            o, ch, i0, i1 = segment_unit(u, k_per, c, seg_len, inner)
            run = x[o, ch, i0:i1]
            wr = w[o, i0:i1]
            k = k0[ch] + mean[t, ch]
            sw, s = _masked_lane_sums(run, wr, k, la, lb, False)
            loc = ratio(s, sw)
            e, q = _masked_lane_sums(run, wr, k + loc, la, lb, True)
            q = corrected_m2(q, e, sw)
            rel = _exact_sub(k, k0[ch]) + loc if sw > 0.0 else 0.0
            cnt[t, ch], mean[t, ch], m2[t, ch] = chan_merge(
                cnt[t, ch], mean[t, ch], m2[t, ch], sw, rel, q
            )
    out = merge_task_moments(cnt, mean, m2)
    if ref is None:
        absolute_means(out[0], out[1], k0)
    return out


@njit(parallel=True, **_JIT)
def rows_affine(x, shift, scale, offset, out, block):
    """``out = (x - shift) * scale + offset`` per column of ``x`` (n, d).

    Returns a flag: 0 when every input is finite, NaN when one is NaN or
    infinite.  ``v * 0.0`` is how the flag is
    formed because it costs no measurable time in this memory-bound loop,
    unlike a comparison with inf (the caller looks for the infinity only
    when a flag is set).  ``out`` may be ``x`` itself.
    """
    n, d = x.shape
    n_blocks = (n + block - 1) // block
    flags = np.zeros(n_blocks)
    for b in prange(n_blocks):
        r0 = b * block
        r1 = min(n, r0 + block)
        acc = 0.0
        for r in range(r0, r1):
            for j in range(d):
                v = x[r, j]
                acc += v * 0.0
                out[r, j] = (v - shift[j]) * scale[j] + offset[j]
        flags[b] = acc
    return flags.sum()


@njit(parallel=True, **_JIT)
def segments_affine(x, shift, scale, offset, out):
    """``out = (x - shift) * scale + offset`` per channel of ``x`` (outer, c, inner).

    Returns the non-finite flag of :func:`rows_affine`.
    """
    outer, c, inner = x.shape
    flags = np.zeros(outer * c)
    for oc in prange(outer * c):
        ch = oc % c
        o = oc // c
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


@njit(**_JIT)
def all_finite(a, b):
    """True when every entry of ``a`` and ``b`` is finite."""
    for i in range(a.shape[0]):
        if not (np.isfinite(a[i]) and np.isfinite(b[i])):
            return False
    return True


@njit(**_IEEE)
def coefficients(var, gamma, beta, eps, use_gamma, use_beta):
    """Per-feature ``scale = gamma / sqrt(var + eps)`` and ``offset = beta``."""
    d = var.shape[0]
    scale = np.empty(d)
    offset = np.zeros(d)
    for j in range(d):
        scale[j] = 1.0 / np.sqrt(var[j] + eps)
        if use_gamma:
            scale[j] *= gamma[j]
        if use_beta:
            offset[j] = beta[j]
    return scale, offset


# Counts beyond 2**53 are sums of weights, not numbers of values: the overflow
# test of a pooled update counts at most this many unit-weight values.
_MAX_UNIT_COUNT = 2.0**53


@njit(**_IEEE)
def ema_update(running_mean, running_var, seen, count, mean, m2, momentum):
    """Fold batch moments into running statistics, per feature (new arrays).

    ``momentum < 0`` means pooled (exact cumulative) statistics: a merge of
    moments, written with the weight fractions ``f_a = n_a / n`` and
    ``f_b = n_b / n``::

        mean = mean_a + f_b * delta
        var  = f_a * var_a + f_b * var_b + (f_a * delta) * (f_b * delta)

    so that no product of a count with a variance is formed (weights of 1e300
    would overflow it although the variance is representable) and multiplying
    every weight by a constant leaves the result unchanged.  With momentum the
    update is ``running + (1 - momentum) * (batch - running)``: a feature whose
    batch statistic equals its running one keeps it bit for bit, which
    ``momentum * running + (1 - momentum) * batch`` does not (its two
    roundings need not cancel).

    A feature first seen in this batch takes the batch statistics; a feature
    absent from the batch keeps its running statistics.  Where the result
    overflows, the variance is returned as ``inf`` (the caller raises): for
    pooled statistics also where the sum of squared deviations of the pooled
    sample, ``n * var`` counted in values (at most ``2**53``), overflows,
    which is exactly when the moments of one ``fit`` on the same data would.
    """
    d = running_mean.shape[0]
    new_mean = running_mean.copy()
    new_var = running_var.copy()
    new_seen = seen.copy()
    for j in range(d):
        nb = count[j]
        if nb <= 0.0:
            continue
        na = seen[j]
        mb = mean[j]
        vb = m2[j] / nb
        n = na + nb
        if na <= 0.0:
            mu = mb
            var = vb
        elif momentum < 0.0:
            fb = nb / n
            fa = na / n
            delta = mb - running_mean[j]
            mu = running_mean[j] + fb * delta
            var = fa * running_var[j] + fb * vb + (fa * delta) * (fb * delta)
        else:
            g = 1.0 - momentum
            delta = mb - running_mean[j]
            if np.isfinite(delta):
                mu = running_mean[j] + g * delta
            else:  # opposite signs near the top of the range
                mu = momentum * running_mean[j] + g * mb
            var = running_var[j] + g * (vb - running_var[j])
        if momentum < 0.0 or na <= 0.0:
            units = min(max(n, 1.0), _MAX_UNIT_COUNT)
            if not np.isfinite(var * units):
                var = np.inf
        if not np.isfinite(mu):
            var = np.inf
        new_mean[j] = mu
        new_var[j] = var
        new_seen[j] = n
    return new_mean, new_var, new_seen


def _serial_twin(kernel, name):
    """The same kernel compiled without threads, for inputs too small to pay
    for waking them (``prange`` is ``range`` there).  A distinct name keeps
    the two apart in Numba's on-disk cache."""
    f = kernel.py_func
    g = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__)
    g.__qualname__ = name
    # The original's fast-math flags (``SUMS_JIT`` or ``_JIT``), so that the
    # twins give the same bits.
    return njit(**{**_JIT, "fastmath": kernel.targetoptions["fastmath"]})(g)


rows_moments_serial = _serial_twin(rows_moments, "rows_moments_serial")
rows_moments_masked_serial = _serial_twin(
    rows_moments_masked, "rows_moments_masked_serial"
)
segments_moments_serial = _serial_twin(segments_moments, "segments_moments_serial")
channels_moments_serial = _serial_twin(channels_moments, "channels_moments_serial")
segments_moments_masked_serial = _serial_twin(
    segments_moments_masked, "segments_moments_masked_serial"
)
rows_affine_serial = _serial_twin(rows_affine, "rows_affine_serial")
segments_affine_serial = _serial_twin(segments_affine, "segments_affine_serial")


# -- small batches: one compiled call per estimator call ----------------------
# A streaming loop calls partial_fit / partial_fit_transform / transform on
# batches of a few hundred rows, where each kernel dispatch and each Python
# step costs as much as the arithmetic.  These compose the kernels above (no
# second implementation of any formula) into a single dispatch for the rows
# layout with one task and the serial kernels, the configuration that
# skbn._moments chooses for such inputs, so the results are bit-identical to
# the general path.


@njit(**_IEEE)
def population_var(m2, count):
    """``m2 / count``, 0 where the count is 0: the biased variance of
    moments of any shape (``Moments.var`` and the small-batch kernels).
    Exact IEEE division, no fastmath."""
    flat_m2 = m2.ravel()
    flat_n = count.ravel()
    out = np.empty(flat_m2.size)
    for j in range(flat_m2.size):
        out[j] = flat_m2[j] / flat_n[j] if flat_n[j] > 0.0 else 0.0
    return out.reshape(m2.shape)


@njit(**_JIT)
def small_train(
    x, block, running_mean, running_var, seen, momentum, params, out, normalize
):
    """Batch moments, the running-statistics update and, with ``normalize``,
    ``x`` normalized into ``out``.

    ``normalize`` is 0 (no output), 1 (by the batch's own statistics: the
    training mode) or 2 (by the updated running statistics: ``fit_transform``).
    ``params`` is ``(gamma, beta, eps, use_gamma, use_beta)``.  Returns
    ``ok, mean, var, seen``; ``ok`` is False when the batch holds a NaN or an
    infinity (the caller then takes the general path, which handles both) and
    nothing is to be used.
    """
    count, mean, m2 = rows_moments_serial(x, block, 1)
    if not all_finite(mean, m2):
        return False, running_mean, running_var, seen
    new_mean, new_var, new_seen = ema_update(
        running_mean, running_var, seen, count, mean, m2, momentum
    )
    if not all_finite(new_mean, new_var):
        # An overflowing update: the general path raises, changing nothing.
        return False, running_mean, running_var, seen
    if normalize:
        gamma, beta, eps, use_gamma, use_beta = params
        if normalize == 1:
            shift, var = mean, population_var(m2, count)
        else:
            shift, var = new_mean, new_var
        scale, offset = coefficients(var, gamma, beta, eps, use_gamma, use_beta)
        rows_affine_serial(x, shift, scale, offset, out, block)
    return True, new_mean, new_var, new_seen


@njit(**_JIT)
def small_apply(x, block, mean, var, params, out):
    """Inference-mode normalize of ``x`` into ``out``; returns the
    non-finite flag of :func:`rows_affine`."""
    gamma, beta, eps, use_gamma, use_beta = params
    scale, offset = coefficients(var, gamma, beta, eps, use_gamma, use_beta)
    return rows_affine_serial(x, mean, scale, offset, out, block)
