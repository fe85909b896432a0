"""The per-block and per-feature formulas, each written once.

The Chan-Golub-LeVeque merge of moments and its task-order merges, a block's
M2 from its sums, the exact subtraction of a shift, the normalize
coefficients, the running-statistics update and the population variance.
They run in IEEE arithmetic (``IEEE``, see :mod:`.common`), as separate
compiled functions, so that the copy a caller links in computes the same
operations whether the caller was compiled or loaded from Numba's cache.
"""

import math

import numpy as np
from numba import njit

from .common import IEEE, JIT

# The ``momentum`` that :func:`ema_update` and :func:`~.small.small_train`
# take for pooled (exact cumulative) statistics, ``momentum=None`` of the
# estimators; a real momentum is in ``[0, 1]``.
MOMENTUM_POOLED = -1.0


@njit(**IEEE)
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


@njit(**IEEE)
def merge_task_moments(cnt, mean, m2):
    """Merge rows of ``(tasks, features)`` moments in task order.

    Serial: at most ``MAX_TASKS`` rows, cheaper than waking the threads.
    """
    n_tasks, d = mean.shape
    out_n = np.zeros(d)
    out_mean = np.zeros(d)
    out_m2 = np.zeros(d)
    for j in range(d):
        na, ma, qa = 0.0, 0.0, 0.0  # empty moments: the first merge copies
        for t in range(n_tasks):
            na, ma, qa = chan_merge(na, ma, qa, cnt[t, j], mean[t, j], m2[t, j])
        out_n[j] = na
        out_mean[j] = ma
        out_m2[j] = qa
    return out_n, out_mean, out_m2


@njit(**IEEE)
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


@njit(**IEEE)
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


@njit(**IEEE)
def shifted_m2(s, q, n):
    """``(s / n, q - s**2 / n, redo)`` of a block's shifted sums.

    ``s = sum(x - k)`` and ``q = sum((x - k)**2)`` over ``n`` values; ``redo``
    says that the shift ``k`` is too far from the mean for ``q - s**2 / n``
    to keep its accuracy (more than half of ``q`` cancels), so the block is
    read again around its mean.
    """
    c = s * s / n
    return s / n, q - c, c > 0.5 * q


@njit(**IEEE)
def ratio(a, b):
    """``a / b``, or 0 where ``b`` is not positive (an empty weighted block)."""
    return a / b if b > 0.0 else 0.0


@njit(**IEEE)
def exact_sub(a, b):
    """``a - b`` in IEEE arithmetic.

    A kernel's shift is ``K + m`` (``m`` its running mean relative to ``K``)
    and its relative value must be the rounded shift minus ``K``, not ``m``:
    fastmath's reassoc would fold ``(K + m) - K`` into ``m``.  Compiled
    apart, without fastmath, so that the subtraction is kept.
    """
    return a - b


@njit(**IEEE)
def exact_sub_into(a, b, out):
    """``out[:] = a - b`` in IEEE arithmetic, as :func:`exact_sub`.

    One call per block for a whole row of features: a call per feature cost
    the wide rows kernels a tenth of their time.
    """
    for j in range(out.shape[0]):
        out[j] = a[j] - b[j]


@njit(**JIT)
def absolute_means(count, mean, ref):
    """``mean + ref`` in place where ``count > 0`` (an empty feature keeps
    mean 0, so that it merges as a no-op); returns ``mean``."""
    for j in range(mean.shape[0]):
        if count[j] > 0.0:
            mean[j] = ref[j] + mean[j]
    return mean


@njit(**JIT)
def all_finite(a, b):
    """True when every entry of ``a`` and ``b`` is finite."""
    for i in range(a.shape[0]):
        if not (np.isfinite(a[i]) and np.isfinite(b[i])):
            return False
    return True


@njit(**IEEE)
def feature_scale(var, eps, gamma):
    """The normalize step's scale of one feature, ``gamma / sqrt(var + eps)``,
    rounded as ``1 / sqrt(var + eps) * gamma``: the one formula, compiled for
    the CPU here and for the GPU from the same source
    (:mod:`skbn._kernels.cuda.device`)."""
    return 1.0 / math.sqrt(var + eps) * gamma


@njit(**IEEE)
def coefficients(var, gamma, beta, eps, use_gamma, use_beta):
    """Per-feature ``scale = gamma / sqrt(var + eps)`` and ``offset = beta``."""
    d = var.shape[0]
    scale = np.empty(d)
    offset = np.zeros(d)
    for j in range(d):
        # Times 1.0 is exact: without gamma the scale is 1 / sqrt(var + eps).
        scale[j] = feature_scale(var[j], eps, gamma[j] if use_gamma else 1.0)
        if use_beta:
            offset[j] = beta[j]
    return scale, offset


# Counts beyond 2**53 are sums of weights, not numbers of values: the overflow
# test of a pooled update counts at most this many unit-weight values.
_MAX_UNIT_COUNT = 2.0**53


@njit(**IEEE)
def ema_update(
    running_mean, running_var, seen, count, mean, m2, momentum, mixture=False
):
    """Fold batch moments into running statistics, per feature (new arrays).

    ``momentum == MOMENTUM_POOLED`` means pooled (exact cumulative)
    statistics: a merge of
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

    With ``mixture`` (and a momentum) the running statistics are those of
    the mixture of the running distribution, weight ``f_a = momentum``, and
    the batch, weight ``f_b = 1 - momentum``: the pooled merge above with
    fixed fractions, so the variance also counts how far the mean moved.

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
        elif momentum == MOMENTUM_POOLED or mixture:
            if mixture and momentum != MOMENTUM_POOLED:
                fa = momentum
                fb = 1.0 - momentum
            else:
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
        if momentum == MOMENTUM_POOLED or na <= 0.0:
            units = min(max(n, 1.0), _MAX_UNIT_COUNT)
            if not np.isfinite(var * units):
                var = np.inf
        if not np.isfinite(mu):
            var = np.inf
        new_mean[j] = mu
        new_var[j] = var
        new_seen[j] = n
    return new_mean, new_var, new_seen


@njit(**IEEE)
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
