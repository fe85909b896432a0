"""The normalize step and the pieces of batch norm's training mode.

``affine`` is the one scale-and-shift pass of every path (transform,
training mode, Batch Renormalization, ghost batches); ``coefficients`` turns
statistics into its per-feature scale and offset.  The training pieces work
on *spans* of the kernel view's outer axis: one span for a whole batch, one
per ghost batch with ``virtual_batch_size``.  The backward pass is the closed
form, one reduction (:func:`grad_sums`) and one fused pass (:func:`grad_dx`)
per span.
"""

import math
from typing import NamedTuple

import numpy as np

from .. import _config
from .._kernels import cpu
from . import plan
from .moments import (
    Moments,
    inf_features,
    merge_spans,
    moments,
    raise_inf,
    reject_missing,
)
from .views import Layout


def inv_std(var, eps):
    """``1 / sqrt(var + eps)``, what the training mode keeps for the backward
    pass.

    Parameters
    ----------
    var : ndarray
    eps : float

    Returns
    -------
    ndarray
    """
    return 1.0 / np.sqrt(var + eps)


def coefficients(var, gamma, beta, eps, use_gamma=True, use_beta=True):
    """Per-feature ``scale = gamma / sqrt(var + eps)`` and ``offset = beta``.

    Parameters
    ----------
    var, gamma, beta : ndarray of shape (n_features,), float64
    eps : float
    use_gamma, use_beta : bool
        False leaves ``gamma`` (``beta``) out: the estimators' ``scale`` and
        ``center``.

    Returns
    -------
    scale, offset : ndarray of shape (n_features,)
    """
    return cpu.coefficients(var, gamma, beta, float(eps), use_gamma, use_beta)


def normalize_coefficients(
    mean, var, gamma, beta, eps, *, with_mean=True, with_std=True
):
    """``shift``, ``scale`` and ``offset`` of the normalize step
    ``y = (x - shift) * scale + offset``: the one place where
    ``with_mean`` and ``with_std`` enter, for every backend.

    ``with_mean=False`` makes the shift 0 (the mean is not subtracted);
    ``with_std=False`` makes the scale ``gamma`` (no division by
    ``sqrt(var + eps)``), as ``StandardScaler``'s parameters of these names.

    Parameters
    ----------
    mean, var : ndarray of shape (n_features,), float64
        The statistics that normalize (a batch's or the running ones).
    gamma, beta : ndarray of shape (n_features,), float64
        The scale and shift as applied (see :func:`coefficients`).
    eps : float
    with_mean, with_std : bool, default=True

    Returns
    -------
    shift, scale, offset : ndarray of shape (n_features,)
    """
    if not with_std:
        # gamma / sqrt(0 + 1) is gamma exactly: the same formula, without
        # the division by the standard deviation.
        var, eps = np.zeros_like(var), 1.0
    scale, offset = coefficients(var, gamma, beta, eps)
    shift = mean if with_mean else np.zeros_like(mean)
    return shift, scale, offset


def inverse_coefficients(mean, var, gamma, beta, eps, *, with_mean=True, with_std=True):
    """The ``shift``, ``scale`` and ``offset`` that undo
    :func:`normalize_coefficients`' step.

    ``(y - offset) / scale + shift`` is the normalize step with shift
    ``offset``, scale ``1 / scale`` and offset ``shift``.

    Returns
    -------
    shift, scale, offset : ndarray of shape (n_features,)

    Raises
    ------
    ValueError
        Where the scale is 0 (``gamma`` is 0): the step cannot be undone.
    """
    shift, scale, offset = normalize_coefficients(
        mean, var, gamma, beta, eps, with_mean=with_mean, with_std=with_std
    )
    if not np.all(scale != 0):
        zero = np.flatnonzero(scale == 0)
        raise ValueError(
            f"inverse_transform is undefined where gamma_ is 0 (feature "
            f"{', '.join(map(str, zero[:5]))})."
        )
    return offset, 1.0 / scale, shift


def affine(layout, shift, scale, offset, out=None, feature_names=None):
    """``(x - shift) * scale + offset`` per feature, in one pass.

    The subtraction comes first so that a constant feature maps to exactly
    ``offset`` (no rounding residue of ``x * scale``).  NaN stays NaN;
    an infinite input raises ``ValueError`` naming its feature.

    Parameters
    ----------
    layout : skbn._core.views.Layout
    shift, scale, offset : ndarray of shape (n_features,), float64
    out : ndarray, optional
        Where to write: the view of
        :meth:`~skbn._core.views.Layout.elementwise`, or an array of
        ``layout.x3``'s shape and dtype (``layout.x3`` itself, say); either
        may be the input's memory.
    feature_names : sequence of str, optional

    Returns
    -------
    ndarray
        The result in the input's shape, memory order and dtype.
    """
    x3, back = layout.elementwise()
    if out is not None and out is not x3:
        if out.shape != layout.x3.shape or not out.flags.c_contiguous:
            # The kernels index out by the input's shape, unchecked.
            raise ValueError(
                "out must be layout.elementwise()[0] or a C-contiguous array "
                f"of layout.x3's shape {layout.x3.shape}; got shape {out.shape}."
            )
        x3, back = layout.x3, layout.restore
    y3 = np.empty_like(x3) if out is None else out
    outer, d, inner = x3.shape
    if inner > 1:
        kernel = plan.pick(cpu.segments_affine, x3.size)
        finite = math.isfinite(kernel(x3, shift, scale, offset, y3))
    else:
        kernel = plan.pick(cpu.rows_affine, x3.size)

        def run(x2, y2, shift, scale, offset):
            block = plan.block_rows(x2.shape[1], x2.itemsize)
            return kernel(x2, shift, scale, offset, y2, block)

        flags = plan.over_rows(
            run,
            [x3.reshape(outer, d), y3.reshape(outer, d)],
            [shift, scale, offset],
            plan.fold(outer, d),
        )
        finite = all(math.isfinite(f) for f in flags if f is not None)
    # A flag is set by NaN (allowed) or infinity (rejected): tell them apart.
    if not finite and inf_features(x3).size:
        raise_inf(x3, feature_names)
    return back(y3)


# -- training mode: ghost batches and Batch Renormalization --


def spans(n_outer, n_samples, virtual_batch_size):
    """Ranges of the kernel view's outer axis that hold each (ghost) batch.

    Axis 0 of the input is the slowest part of ``outer`` (the layout is never
    the transposed one here), so ``virtual_batch_size`` samples are one
    contiguous slice of it.

    Parameters
    ----------
    n_outer, n_samples : int
    virtual_batch_size : int or None

    Returns
    -------
    list of (int, int)
    """
    if virtual_batch_size is None:
        return [(0, n_outer)]
    step = virtual_batch_size * (n_outer // n_samples)
    return [(o, o + step) for o in range(0, n_outer, step)]


def span_moments(x3, spans, sample_weight=None, feature_names=None):
    """Moments of each span of ``x3``, stacked into ``(n_spans, d)`` arrays.

    Parameters
    ----------
    x3 : ndarray of shape (outer, d, inner), C-contiguous
    spans : list of (int, int)
    sample_weight : ndarray of shape (n_samples,), optional
    feature_names : sequence of str, optional

    Returns
    -------
    Moments
    """
    parts = []
    rest = x3.shape[0] // (len(sample_weight) if sample_weight is not None else 1)
    for o0, o1 in spans:
        w = None
        if sample_weight is not None:
            w = np.repeat(sample_weight[o0 // rest : o1 // rest], rest)
        parts.append(moments(Layout(x3[o0:o1], (1,)), w, feature_names))
    return Moments(*(np.stack(a) for a in zip(*parts, strict=True)))


def renorm_factors(mean, var, running_mean, running_var, eps, renorm):
    """Batch Renormalization's ``r`` and ``d`` (Ioffe 2017, Algorithm 1).

    ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and
    ``d = clip((mu_B - mu) / sigma, -d_max, d_max)`` with the running
    statistics *before* this batch's update; both are constants for the
    backward pass (``stop_gradient`` in the paper).

    Returns
    -------
    r, d : ndarray
    """
    r_max, d_max = renorm
    sigma = np.sqrt(running_var + eps)
    r = np.clip(np.sqrt(var + eps) / sigma, 1.0 / r_max, r_max)
    d = np.clip((mean - running_mean) / sigma, -d_max, d_max)
    return r, d


def normalize_spans(x3, spans, mean, inv_std, gamma, beta, r=None, d=None):
    """``gamma * ((x - mean) * inv_std * r + d) + beta`` per span, in one pass.

    Renormalized or not, it is one scale-and-shift per feature, so every span
    goes through :func:`affine`.

    Returns
    -------
    ndarray of ``x3``'s shape
    """
    y3 = np.empty_like(x3)
    n_feat = x3.shape[1]
    g = np.ones(n_feat) if gamma is None else gamma
    b = np.zeros(n_feat) if beta is None else beta
    for k, (o0, o1) in enumerate(spans):
        scale = inv_std[k] * g if r is None else inv_std[k] * r[k] * g
        offset = b if d is None else g * d[k] + b
        affine(Layout(x3[o0:o1], (1,)), mean[k], scale, offset, out=y3[o0:o1])
    return y3


class SpanStats(NamedTuple):
    """The statistics a forward pass normalized each span by (what the
    backward pass needs).

    Attributes
    ----------
    spans : list of (int, int)
    mean, inv_std : ndarray of shape (n_spans, d)
    r, d : ndarray of shape (n_spans, d) or None
        Batch Renormalization's factors.
    """

    spans: list
    mean: np.ndarray
    inv_std: np.ndarray
    r: np.ndarray | None = None
    d: np.ndarray | None = None

    @classmethod
    def of_moments(cls, spans, moments, eps, running=None, renorm=None):
        """Training mode: each span by its own moments (``(n_spans, d)``),
        renormalized when ``renorm`` is given and ``running`` holds the
        statistics before the batch."""
        var = moments.var
        r = d = None
        if renorm is not None and running is not None:
            r, d = renorm_factors(moments.mean, var, *running, eps, renorm)
        return cls(spans, moments.mean, inv_std(var, eps), r, d)

    @classmethod
    def of_running(cls, n_outer, running_mean, running_var, eps):
        """One span normalized by running statistics (inference mode)."""
        return cls([(0, n_outer)], running_mean[None], inv_std(running_var[None], eps))


def forward(layout, gamma, beta, eps, running, renorm, vbs, training):
    """Batch norm forward of one validated batch (the functional API's).

    Parameters
    ----------
    layout : Layout
    gamma, beta : ndarray of shape (n_features,) or None
    eps : float
    running : tuple of ndarray or None
        The running statistics before the batch; inference mode normalizes
        by them, Batch Renormalization compares with them.
    renorm : tuple of float or None
    vbs : int or None
        ``virtual_batch_size``, validated.
    training : bool

    Returns
    -------
    y : ndarray in the input's shape
    stats : SpanStats
        What each span was normalized by, for the backward pass.
    batch : Moments or None
        The whole batch's moments in training mode (NaN refused).
    """
    x3 = layout.x3
    if training:
        cut = spans(x3.shape[0], layout.shape[0], vbs)
        mom = span_moments(x3, cut)
        reject_missing(mom.count, (cut[0][1] - cut[0][0]) * x3.shape[2])
        stats = SpanStats.of_moments(cut, mom, eps, running, renorm)
        batch = merge_spans(mom)
    else:
        stats = SpanStats.of_running(x3.shape[0], *running, eps)
        batch = None
    y3 = normalize_spans(
        x3, stats.spans, stats.mean, stats.inv_std, gamma, beta, stats.r, stats.d
    )
    return layout.restore(y3), stats, batch


def train_normalize(
    layout,
    sample_weight,
    gamma,
    beta,
    eps,
    running,
    renorm,
    virtual_batch_size,
    feature_names=None,
):
    """Training step of one validated batch with ``renorm`` or
    ``virtual_batch_size``: its moments, and the batch normalized by them.

    The moments of each (ghost) batch are taken once; the batch is normalized
    by them (renormalized when ``renorm`` is given and ``running`` holds the
    statistics before the batch), and they are merged, in order, into the
    moments of the whole batch for the caller's running statistics.

    Parameters
    ----------
    layout : skbn._core.views.Layout
    sample_weight : ndarray of shape (n_samples,) or None
        Already validated.
    gamma, beta : ndarray of shape (n_features,)
    eps : float
    running : tuple of (running_mean, running_var) or None
    renorm : tuple of float or None
    virtual_batch_size : int or None
        Already validated against the batch.
    feature_names : sequence of str, optional

    Returns
    -------
    batch : Moments
        The moments of the whole batch.
    y : ndarray
        The normalized batch, in the input's shape.
    """
    n = layout.shape[0]
    # Ghost batches must be slices of the outer axis: use C order.
    layout = layout.c_order()
    x3 = layout.x3
    if sample_weight is not None:
        sample_weight = np.broadcast_to(
            np.asarray(sample_weight, dtype=np.float64), (n,)
        )
    cut = spans(x3.shape[0], n, virtual_batch_size)
    mom = span_moments(x3, cut, sample_weight, feature_names)
    stats = SpanStats.of_moments(cut, mom, eps, running, renorm)
    y3 = normalize_spans(
        x3, cut, stats.mean, stats.inv_std, gamma, beta, stats.r, stats.d
    )
    return merge_spans(mom), layout.restore(y3)


# -- the backward pass --


def grad_sums(x3, dy3, mean):
    """Per-feature ``sum(dy)`` and ``sum(dy * (x - mean))`` (float64).

    Parameters
    ----------
    x3, dy3 : ndarray of shape (outer, d, inner), C-contiguous
    mean : ndarray of shape (d,)

    Returns
    -------
    s, q : ndarray of shape (d,)
    """
    outer, d, inner = x3.shape
    size = x3.size
    if inner > 1:
        seg = _config.SEGMENT_LEN
        units = outer * d * ((inner + seg - 1) // seg)
        kernel = plan.pick(cpu.segments_grad_sums, size)
        return kernel(x3, dy3, mean, seg, plan.n_tasks(size, units))
    kernel = plan.pick(cpu.rows_grad_sums, size)

    def run(x2, g2, m):
        block = plan.block_rows(x2.shape[1], x2.itemsize)
        n_blocks = (x2.shape[0] + block - 1) // block
        return kernel(x2, g2, m, block, plan.n_tasks(x2.size, n_blocks))

    k = plan.fold(outer, d)
    wide, rest = plan.over_rows(
        run, [x3.reshape(outer, d), dy3.reshape(outer, d)], [mean], k
    )
    if wide is None:
        return rest
    # Few features: the k partial sums of each feature are added in order.
    s, q = (cpu.sum_tasks(a.reshape(k, d)) for a in wide)
    if rest is not None:
        s, q = s + rest[0], q + rest[1]
    return s, q


def grad_dx(x3, dy3, mean, a, b, c, out3):
    """``dx = a * dy - b * (x - mean) - c`` per feature, into ``out3``.

    Parameters
    ----------
    x3, dy3, out3 : ndarray of shape (outer, d, inner), C-contiguous
    mean, a, b, c : ndarray of shape (d,)
    """
    outer, d, inner = x3.shape
    if inner > 1:
        kernel = plan.pick(cpu.segments_grad_dx, x3.size)
        kernel(x3, dy3, mean, a, b, c, out3)
        return
    kernel = plan.pick(cpu.rows_grad_dx, x3.size)

    def run(x2, g2, o2, mean, a, b, c):
        kernel(x2, g2, mean, a, b, c, o2, plan.block_rows(x2.shape[1], x2.itemsize))

    plan.over_rows(
        run,
        [arr.reshape(outer, d) for arr in (x3, dy3, out3)],
        [mean, a, b, c],
        plan.fold(outer, d),
    )


def backward(x3, dy3, stats, gamma, training):
    """Batch norm's backward pass over the spans of one forward call.

    With ``xhat = (x - mean) * inv_std`` and ``N`` values per feature and
    span, training mode gives ``dx = gamma * inv_std * r / N * (N * dy -
    sum(dy) - xhat * sum(dy * xhat))``; inference mode ``dx = gamma *
    inv_std * dy``.

    Parameters
    ----------
    x3, dy3 : ndarray of shape (outer, d, inner), C-contiguous
    stats : SpanStats
        What the forward pass normalized with.
    gamma : ndarray of shape (d,)
    training : bool

    Returns
    -------
    dx3 : ndarray of ``x3``'s shape and dtype
    dgamma, dbeta : ndarray of shape (d,), float64
    """
    dx3 = np.empty_like(x3)
    n_feat, inner = x3.shape[1], x3.shape[2]
    dgamma = np.zeros(n_feat)
    dbeta = np.zeros(n_feat)
    for k, (o0, o1) in enumerate(stats.spans):
        xs, gs = x3[o0:o1], dy3[o0:o1]
        mean, inv = stats.mean[k], stats.inv_std[k]
        s, q = grad_sums(xs, gs, mean)
        r = 1.0 if stats.r is None else stats.r[k]
        a = gamma * inv * r
        if training:
            n = (o1 - o0) * inner
            b = a * (inv * inv) * q / n
            c = a * s / n
        else:
            b = c = np.zeros(n_feat)
        grad_dx(xs, gs, mean, a, b, c, dx3[o0:o1])
        dbeta += s
        dgamma += r * inv * q
        if stats.d is not None:
            dgamma += stats.d[k] * s
    return dx3, dgamma, dbeta
