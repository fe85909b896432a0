"""Slow, obviously-correct references for skbn's statistics and normalize step.

Everything here is plain NumPy and Python loops in float64, written for
clarity rather than speed: per-feature loops, the textbook two-pass variance
with ``math.fsum`` (correctly rounded sums), and the formulas exactly as the
spec states them.  The tests check every kernel and wrapper against these.

Conventions shared with skbn:

* statistics are per feature, where the features are the indices along the
  feature axes, flattened in C order;
* the variance is the biased (population) one;
* NaN entries are skipped per feature; a feature with no value (or zero total
  weight) has count 0, mean 0 and M2 0;
* sample weights weigh entries along axis 0.
"""

import math

import numpy as np


def feature_axes(axis, ndim):
    """Return the feature axes as a sorted tuple of non-negative ints."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) % ndim for a in axes))


def n_features(shape, axis):
    """Number of features of data of ``shape`` with feature axes ``axis``."""
    return math.prod(shape[a] for a in feature_axes(axis, len(shape)))


def sample_weight_grid(sample_weight, shape):
    """Expand weights of entries along axis 0 to an array of ``shape``."""
    w = np.asarray(sample_weight, dtype=np.float64)
    w = w.reshape((shape[0],) + (1,) * (len(shape) - 1))
    return np.broadcast_to(w, shape)


def _columns(values, axes):
    """View ``values`` as ``(n_reduced, n_features)``: one column per feature."""
    other = [a for a in range(values.ndim) if a not in axes]
    moved = np.transpose(values, other + list(axes))
    n_feat = math.prod(values.shape[a] for a in axes)
    return moved.reshape(-1, n_feat)


def moments(X, axis=-1, weights=None):
    """Per-feature ``(count, mean, var, m2)``, NaN skipped, two passes.

    Parameters
    ----------
    X : array-like, at least 1 reduced dimension
    axis : int or tuple of int
        Feature axes.
    weights : array-like broadcastable to ``X.shape``, optional
        Weight of each entry (see :func:`sample_weight_grid`).

    Returns
    -------
    count, mean, var, m2 : ndarray of shape (n_features,), float64
    """
    X = np.asarray(X, dtype=np.float64)
    axes = feature_axes(axis, X.ndim)
    if weights is None:
        weights = np.ones(X.shape)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), X.shape)
    cols = _columns(X, axes)
    wcols = _columns(weights, axes)
    d = cols.shape[1]
    count = np.zeros(d)
    mean = np.zeros(d)
    m2 = np.zeros(d)
    for j in range(d):
        keep = ~np.isnan(cols[:, j])
        v = cols[keep, j]
        w = wcols[keep, j]
        total = math.fsum(w)
        if total == 0:
            continue
        mu = math.fsum(w * v) / total
        count[j] = total
        mean[j] = mu
        m2[j] = math.fsum(w * (v - mu) ** 2)
    var = np.where(count > 0, m2 / np.where(count > 0, count, 1.0), 0.0)
    return count, mean, var, m2


def merge(a, b):
    """Chan-Golub-LeVeque merge of two ``(count, mean, m2)`` sets, per feature."""
    n_a, mean_a, m2_a = (np.asarray(v, dtype=np.float64) for v in a)
    n_b, mean_b, m2_b = (np.asarray(v, dtype=np.float64) for v in b)
    d = n_a.shape[0]
    count = np.zeros(d)
    mean = np.zeros(d)
    m2 = np.zeros(d)
    for j in range(d):
        n = n_a[j] + n_b[j]
        if n == 0:
            continue
        delta = mean_b[j] - mean_a[j]
        count[j] = n
        mean[j] = mean_a[j] + delta * n_b[j] / n
        m2[j] = m2_a[j] + m2_b[j] + delta * delta * n_a[j] * n_b[j] / n
    return count, mean, m2


def ema_update(
    running_mean, running_var, seen, batch_count, batch_mean, batch_var, m, ema="batch"
):
    """One momentum update, per feature, with the spec's conventions.

    ``running = m * old + (1 - m) * batch``; a feature never seen takes the
    batch statistics as they are; a feature with no value in the batch keeps
    its running statistics.  ``ema="mixture"``: the variance of the mixture
    of the two distributions with weights ``m`` and ``1 - m``, computed as
    ``E[x**2] - E[x]**2`` of the mixture (not the code's merge formula).
    Returns new ``(mean, var, seen)``.
    """
    d = len(running_mean)
    mean = np.array(running_mean, dtype=np.float64)
    var = np.array(running_var, dtype=np.float64)
    new_seen = np.array(seen, dtype=np.float64)
    for j in range(d):
        if batch_count[j] == 0:
            continue
        if seen[j] == 0:
            mean[j] = batch_mean[j]
            var[j] = batch_var[j]
        elif ema == "mixture":
            mean[j] = m * running_mean[j] + (1 - m) * batch_mean[j]
            second = m * (running_var[j] + running_mean[j] ** 2) + (1 - m) * (
                batch_var[j] + batch_mean[j] ** 2
            )
            var[j] = second - mean[j] ** 2
        else:
            mean[j] = m * running_mean[j] + (1 - m) * batch_mean[j]
            var[j] = m * running_var[j] + (1 - m) * batch_var[j]
        new_seen[j] = seen[j] + batch_count[j]
    return mean, var, new_seen


def running_stats(batches, momentum, axis=-1, sample_weights=None, ema="batch"):
    """Running ``(mean, var)`` after a sequence of ``partial_fit`` batches.

    ``momentum=None`` is the exact statistics of all batches pooled; otherwise
    the momentum update of :func:`ema_update`, starting from PyTorch's initial
    values (mean 0, variance 1) that a feature keeps until it has a value.
    """
    if sample_weights is None:
        sample_weights = [None] * len(batches)
    grids = [
        None if w is None else sample_weight_grid(w, b.shape)
        for b, w in zip(batches, sample_weights, strict=True)
    ]
    if momentum is None:
        # Pool along the first reduced axis (axis 0 unless it is a feature axis).
        axes = feature_axes(axis, batches[0].ndim)
        pool = min(a for a in range(batches[0].ndim) if a not in axes)
        X = np.concatenate(
            [np.asarray(b, dtype=np.float64) for b in batches], axis=pool
        )
        W = np.concatenate(
            [
                np.ones(b.shape) if g is None else g
                for b, g in zip(batches, grids, strict=True)
            ],
            axis=pool,
        )
        count, mean, var, _ = moments(X, axis, W)
        return np.where(count > 0, mean, 0.0), np.where(count > 0, var, 1.0)
    d = n_features(batches[0].shape, axis)
    mean, var, seen = np.zeros(d), np.ones(d), np.zeros(d)
    for b, g in zip(batches, grids, strict=True):
        count, bmean, bvar, _ = moments(b, axis, g)
        mean, var, seen = ema_update(mean, var, seen, count, bmean, bvar, momentum, ema)
    return mean, var


def per_feature(vec, shape, axis):
    """Broadcast a per-feature vector to data of ``shape``."""
    axes = feature_axes(axis, len(shape))
    vec = np.asarray(vec, dtype=np.float64).reshape([shape[a] for a in axes])
    full = [shape[a] if a in axes else 1 for a in range(len(shape))]
    return vec.reshape(full)


def affine(X, shift, scale, offset, axis=-1):
    """``(x - shift) * scale + offset`` per feature, in float64."""
    X = np.asarray(X, dtype=np.float64)
    s, a, b = (per_feature(v, X.shape, axis) for v in (shift, scale, offset))
    return (X - s) * a + b


def normalize(X, mean, var, gamma=1.0, beta=0.0, eps=1e-5, axis=-1):
    """``gamma * (x - mean) / sqrt(var + eps) + beta``, in float64."""
    X = np.asarray(X, dtype=np.float64)
    d = n_features(X.shape, axis)
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (d,))
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (d,))
    m, v, g, b = (per_feature(p, X.shape, axis) for p in (mean, var, gamma, beta))
    return g * (X - m) / np.sqrt(v + eps) + b


def denormalize(Y, mean, var, gamma=1.0, beta=0.0, eps=1e-5, axis=-1):
    """Inverse of :func:`normalize`: ``(y - beta) * sqrt(var + eps) / gamma + mean``."""
    Y = np.asarray(Y, dtype=np.float64)
    d = n_features(Y.shape, axis)
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (d,))
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (d,))
    m, v, g, b = (per_feature(p, Y.shape, axis) for p in (mean, var, gamma, beta))
    return (Y - b) * np.sqrt(v + eps) / g + m


# -- training path: forward and backward of the four normalizations ------------------
#
# Every normalization is "statistics per group of entries, affine per parameter
# index": :func:`norm_index` gives, for each entry of ``x``, the id of the
# statistic it belongs to and the id of its gamma/beta.  The backward pass is
# the staged chain rule (through xhat, var and mean, as the computation graph
# of the forward pass reads), not skbn's closed form, so that the two are
# independent derivations.


def norm_index(shape, kind, axis=-1, n_groups=None, virtual_batch_size=None):
    """Statistic id and parameter id of every entry, arrays of ``shape``.

    ``kind`` is ``"batch"`` (``axis`` = feature axes), ``"layer"`` (``axis`` =
    normalized axes), ``"group"`` or ``"instance"`` (``axis`` = channel axis).
    """
    ndim = len(shape)
    idx = np.indices(shape)

    def flat(axes):
        if not axes:
            return np.zeros(shape, dtype=np.int64)
        return np.ravel_multi_index([idx[a] for a in axes], [shape[a] for a in axes])

    if kind == "batch":
        axes = feature_axes(axis, ndim)
        param = flat(axes)
        stat = param.copy()
        if virtual_batch_size is not None:
            stat = (idx[0] // virtual_batch_size) * (param.max() + 1) + param
        return stat, param
    if kind == "layer":
        axes = feature_axes(axis, ndim)
        keep = tuple(a for a in range(ndim) if a not in axes)
        return flat(keep), flat(axes)
    c = int(axis) % ndim
    n_ch = shape[c]
    groups = n_ch if kind == "instance" else n_groups
    return idx[0] * groups + idx[c] // (n_ch // groups), idx[c]


def _group_stats(x, stat):
    """Mean and biased variance per statistic id (two passes, fsum)."""
    n_stat = int(stat.max()) + 1
    mean = np.zeros(n_stat)
    var = np.zeros(n_stat)
    for s in range(n_stat):
        v = x[stat == s]
        mean[s] = math.fsum(v) / v.size
        var[s] = math.fsum((v - mean[s]) ** 2) / v.size
    return mean, var


def norm_forward(x, stat, param, gamma, beta, eps, stats=None, r=None, d=None):
    """``gamma * ((x - mean) / sqrt(var + eps) * r + d) + beta`` in float64.

    ``stats=(mean, var)`` per statistic id replaces the batch statistics
    (inference mode); ``r``, ``d`` per statistic id are Batch
    Renormalization's factors.  Returns ``y, mean, var``.
    """
    x = np.asarray(x, dtype=np.float64)
    mean, var = _group_stats(x, stat) if stats is None else stats
    xhat = (x - mean[stat]) / np.sqrt(var[stat] + eps)
    if r is not None:
        xhat = xhat * r[stat] + d[stat]
    g = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (int(param.max()) + 1,))
    b = np.broadcast_to(np.asarray(beta, dtype=np.float64), (int(param.max()) + 1,))
    return g[param] * xhat + b[param], mean, var


def norm_backward(
    x, dy, stat, param, gamma, eps, training=True, stats=None, r=None, d=None
):
    """Staged chain rule of :func:`norm_forward`; returns ``dx, dgamma, dbeta``.

    ``r`` and ``d`` are constants (Ioffe 2017); in inference mode
    (``training=False``) so are the statistics.
    """
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    n_param = int(param.max()) + 1
    g = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (n_param,))
    mean, var = _group_stats(x, stat) if stats is None else stats
    std = np.sqrt(var + eps)
    xhat = (x - mean[stat]) / std[stat]
    r_e = np.ones(x.shape) if r is None else r[stat]
    d_e = np.zeros(x.shape) if d is None else d[stat]
    dgamma = np.zeros(n_param)
    dbeta = np.zeros(n_param)
    for p in range(n_param):
        sel = param == p
        dgamma[p] = math.fsum((dy * (xhat * r_e + d_e))[sel])
        dbeta[p] = math.fsum(dy[sel])
    dxhat = dy * g[param] * r_e
    if not training:
        return dxhat / std[stat], dgamma, dbeta
    dx = np.zeros(x.shape)
    for s in range(int(stat.max()) + 1):
        sel = stat == s
        m = sel.sum()
        xc = x[sel] - mean[s]
        dxh = dxhat[sel]
        dvar = math.fsum(dxh * xc) * -0.5 * (var[s] + eps) ** -1.5
        dmean = math.fsum(-dxh / std[s]) + dvar * math.fsum(-2.0 * xc) / m
        dx[sel] = dxh / std[s] + dvar * 2.0 * xc / m + dmean / m
    return dx, dgamma, dbeta


def renorm_factors(batch_mean, batch_var, running_mean, running_var, eps, r_max, d_max):
    """Batch Renormalization's ``r`` and ``d`` (Ioffe 2017, Algorithm 1)."""
    sigma = np.sqrt(np.asarray(running_var, dtype=np.float64) + eps)
    r = np.clip(np.sqrt(batch_var + eps) / sigma, 1.0 / r_max, r_max)
    d = np.clip((batch_mean - running_mean) / sigma, -d_max, d_max)
    return r, d


def finite_difference(f, x, h=1e-6):
    """Central differences of the scalar ``f`` at every entry of ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def exact_moments(X, axis=-1, weights=None):
    """Per-feature ``(mean, var)`` in exact rational arithmetic, then rounded.

    The ground truth that :func:`moments` (two-pass, float64) approximates:
    every value, weight and operation is a :class:`fractions.Fraction`, and
    only the results are rounded to float64.  NaN entries are skipped; a
    feature without weight gets mean 0 and variance 0.  Slow: for tests on a
    few thousand values.
    """
    from fractions import Fraction

    X = np.asarray(X, dtype=np.float64)
    axes = feature_axes(axis, X.ndim)
    if weights is None:
        weights = np.ones(X.shape)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), X.shape)
    cols = _columns(X, axes)
    wcols = _columns(weights, axes)
    d = cols.shape[1]
    mean = np.zeros(d)
    var = np.zeros(d)
    for j in range(d):
        keep = ~np.isnan(cols[:, j])
        v = [Fraction(float(a)) for a in cols[keep, j]]
        w = [Fraction(float(a)) for a in wcols[keep, j]]
        total = sum(w)
        if total == 0:
            continue
        mu = sum(wi * vi for wi, vi in zip(w, v, strict=True)) / total
        mean[j] = float(mu)
        var[j] = float(
            sum(wi * (vi - mu) ** 2 for wi, vi in zip(w, v, strict=True)) / total
        )
    return mean, var


def sparse_to_dense(data, indices, indptr, shape, by_rows=True):
    """The dense matrix that CSR (``by_rows``) or CSC arrays mean: every
    position not stored is 0, duplicate entries add up (a stored NaN makes
    its position NaN), as scipy defines them.  Plain loops, float64."""
    dense = np.zeros(shape)
    for major in range(len(indptr) - 1):
        for p in range(indptr[major], indptr[major + 1]):
            i, j = (major, indices[p]) if by_rows else (indices[p], major)
            dense[i, j] += float(data[p])
    return dense


def sparse_moments(X, weights=None):
    """Per-column ``(count, mean, var, m2)`` of a scipy CSR/CSC matrix:
    implicit zeros are values of 0, stored NaN are missing; ``weights`` is
    one per row (see :func:`moments`)."""
    by_rows = X.format == "csr"
    dense = sparse_to_dense(X.data, X.indices, X.indptr, X.shape, by_rows)
    grid = None if weights is None else sample_weight_grid(weights, dense.shape)
    return moments(dense, axis=-1, weights=grid)
