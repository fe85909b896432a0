"""Mergeable moments ``(count, mean, M2)`` and the normalize step.

These are the routines that every path of skbn shares: the estimators, the
functional API and the dask reduction all compute statistics with
:func:`moments`, combine them with :func:`merge`, fold them into running
statistics with :func:`ema_update` (and apply them with
:func:`skbn._core.norm.affine`).

``merge`` is the update of Chan, Golub and LeVeque (1979), the same one that
``sklearn.utils.extmath._incremental_mean_and_var`` documents; the formula
lives once, in :func:`skbn._kernels.cpu.chan_merge`.
"""

import math
from typing import NamedTuple

import numpy as np

from .. import _config
from .._kernels import cpu
from . import plan

# The two running-statistics updates (``ema`` of the estimator and of
# skbn.functional.batch_norm_forward): batch norm's, which averages the
# batch statistics, and the mixture of the running and batch distributions.
EMA_BATCH = "batch"
EMA_MIXTURE = "mixture"
EMA_MODES = (EMA_BATCH, EMA_MIXTURE)


class Moments(NamedTuple):
    """Per-feature moments, all float64 arrays of shape ``(n_features,)``.

    ``count`` is the sum of the weights of the non-missing values (the number
    of values when unweighted), ``mean`` their mean, ``m2`` the sum of their
    weighted squared deviations from ``mean``.  An empty feature has count 0,
    mean 0 and m2 0, which merges as a no-op.
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @property
    def var(self):
        """Biased (population) variance; 0 where the count is 0."""
        return cpu.population_var(self.m2, self.count)


def _rows_moments(x2, *ref):
    n, d = x2.shape
    block = plan.block_rows(d, x2.itemsize)
    n_tasks = plan.n_tasks(x2.size, (n + block - 1) // block)
    kernel = plan.pick(cpu.rows_moments, x2.size)
    return kernel(x2, block, n_tasks, *ref)


def _dense_moments(x3):
    """Moments without weights; a NaN anywhere makes its feature NaN."""
    outer, d, inner = x3.shape
    if inner > 1:
        seg = _config.SEGMENT_LEN
        if outer == 1 and d >= _config.MIN_CHANNELS_PER_ROW:
            # One channel per thread: no (tasks x channels) table, which for
            # per-sample statistics (a channel per sample) would be huge.
            kernel = plan.pick(cpu.channels_moments, x3.size)
            return kernel(x3.reshape(d, inner), seg)
        units = outer * d * ((inner + seg - 1) // seg)
        kernel = plan.pick(cpu.segments_moments, x3.size)
        return kernel(x3, seg, plan.n_tasks(x3.size, units))
    x2 = x3.reshape(outer, d)
    k = plan.fold(outer, d)
    if k == 1:
        return _rows_moments(x2)
    # Few, long columns: view k consecutive rows as one wide row, take the
    # moments of each of the k*d wide columns, then merge the k columns that
    # hold the same feature, in order.  The tail rows merge last.  All of it
    # with means relative to one reference per feature (see
    # cpu.shift_reference), made absolute once at the end.
    ref = cpu.shift_reference(x3)
    wide, rest = plan.over_rows(_rows_moments, [x2], [ref], k)
    folded = cpu.merge_task_moments(*(a.reshape(k, d) for a in wide))
    if rest is not None:
        folded = cpu.merge_moments(*folded, *rest)
    count, mean, m2 = folded
    return count, cpu.absolute_means(count, mean, ref), m2


def _masked_moments(x3, w2):
    """Weighted moments that skip NaN; ``w2`` has shape ``(outer, inner)``."""
    outer, d, inner = x3.shape
    if inner > 1:
        seg = _config.SEGMENT_LEN
        units = outer * d * ((inner + seg - 1) // seg)
        kernel = plan.pick(cpu.segments_moments_masked, x3.size)
        return kernel(x3, w2, seg, plan.n_tasks(x3.size, units))
    x2 = x3.reshape(outer, d)
    block = plan.block_rows(d, x2.itemsize)
    n_tasks = plan.n_tasks(x2.size, (outer + block - 1) // block)
    kernel = plan.pick(cpu.rows_moments_masked, x2.size)
    return kernel(x2, w2, block, n_tasks)


def inf_features(x3):
    """Indices of the features of ``x3`` that hold an infinite value."""
    return np.flatnonzero(np.isinf(x3).any(axis=(0, 2)))


def check_no_inf(x3, feature_names=None):
    """Raise the error of :func:`affine` if ``x3`` holds an infinity.

    For an in-place :func:`affine`, which would find it only after writing.
    Two reductions that skip NaN (``fmax``/``fmin``), without a temporary
    array of the input's size.

    Parameters
    ----------
    x3 : ndarray
    feature_names : sequence of str, optional
    """
    if (
        np.fmax.reduce(x3, axis=None) == np.inf
        or np.fmin.reduce(x3, axis=None) == -np.inf
    ):
        raise_inf(x3, feature_names)


def raise_inf(x3, feature_names=None):
    """Raise the ``ValueError`` for an infinite value in ``x3``, naming its
    features (by ``feature_names`` when given).

    Parameters
    ----------
    x3 : ndarray of shape (outer, n_features, inner)
    feature_names : sequence of str, optional
    """
    # After an in-place transform the infinite inputs may already be
    # overwritten; the message then names no feature.
    raise_inf_features(inf_features(x3), feature_names)


def raise_inf_features(bad, feature_names=None):
    """Raise the ``ValueError`` for infinite values in the features ``bad``
    (the one message of every path, dense or sparse).

    Parameters
    ----------
    bad : ndarray of int
        Indices of the features that hold an infinity, sorted.
    feature_names : sequence of str, optional
    """
    if bad.size == 0:
        raise ValueError("Input X contains infinity.")
    shown = [
        f"{j} ({feature_names[j]!r})" if feature_names is not None else str(j)
        for j in bad[:5]
    ]
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise ValueError(
        f"Input X contains infinity in feature {', '.join(shown)}{more}. "
        "Replace infinite values (for example with np.nan, which is ignored "
        "when fitting) before calling skbn."
    )


def moments(layout, sample_weight=None, feature_names=None):
    """Moments of each feature of ``layout.x3``, NaN ignored, inf rejected.

    Parameters
    ----------
    layout : skbn._layout.Layout
        The data, already validated.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative float64 weights, one per sample (axis 0 of ``X``).
    feature_names : sequence of str, optional
        Used in the error message when a feature holds an infinite value.

    Returns
    -------
    Moments
    """
    x3 = layout.x3
    if sample_weight is None:
        # The fast path does not test for NaN: a NaN turns its feature's sum
        # NaN, and only then the masked kernel runs.
        res = _dense_moments(x3)
        if cpu.all_finite(res[1], res[2]):
            return Moments(*res)
        w2 = np.broadcast_to(np.ones(1), (x3.shape[0], x3.shape[2]))
        unit = 1.0
    else:
        scaled, unit = unit_weights(sample_weight)
        w2 = layout.weights(scaled)
    res = _masked_moments(x3, w2)
    if cpu.all_finite(res[1], res[2]):
        return in_units(res, unit, sample_weight)
    if inf_features(x3).size:
        raise_inf(x3, feature_names)
    raise_overflow(res[1], res[2])


def in_units(res, unit, sample_weight):
    """:class:`Moments` of a kernel's finite ``(count, mean, m2)`` counted
    in units of ``unit`` (see :func:`unit_weights`).

    Parameters
    ----------
    res : tuple of ndarray
        The kernel's count, mean and M2, all finite.
    unit : float
        What :func:`unit_weights` returned.
    sample_weight : ndarray or None
        The weights before scaling, for the message.

    Returns
    -------
    Moments
        Counts and M2 multiplied by ``unit``; the means as they came.

    Raises
    ------
    ValueError
        When the count or M2 in real units overflows float64.
    """
    if unit == 1.0:
        return Moments(*res)
    with np.errstate(over="ignore"):  # tested just below
        count, mean, m2 = res[0] * unit, res[1], res[2] * unit
    if cpu.all_finite(count, m2):
        return Moments(count, mean, m2)
    raise ValueError(
        "sample_weight is too large: the weighted sum of squared deviations "
        f"of feature {_first_bad(count, m2)} overflows float64 (largest "
        f"weight {np.max(sample_weight):.3g}); rescale sample_weight."
    )


def reject_missing(count, expected, name="x"):
    """Refuse NaN where every value is needed (the training functions: a NaN
    would break the backward pass).

    Parameters
    ----------
    count : ndarray
        Per-statistic counts from :func:`moments`.
    expected : int
        The count of a statistic without missing values.
    name : str
        The argument's name, for the message.
    """
    bad = np.flatnonzero(count != expected)
    if bad.size:
        raise ValueError(
            f"{name} contains NaN (in statistic {', '.join(map(str, bad[:5]))}); "
            "the training functions need finite input."
        )


def _first_bad(a, b):
    bad = np.flatnonzero(~(np.isfinite(a) & np.isfinite(b)))
    return ", ".join(map(str, bad[:5]))


def raise_overflow(mean, var):
    """Raise the error of moments whose variance (or sum of squares)
    overflows, naming the first such features.

    Parameters
    ----------
    mean, var : ndarray of shape (n_features,)
    """
    raise ValueError(
        f"The variance of feature {_first_bad(mean, var)} overflows "
        "float64; rescale X (its values are too large to square)."
    )


def unit_weights(sample_weight):
    """Weights divided by the power of two at or below the largest, and it.

    The kernels then see a largest weight in ``[1, 2)`` whatever the scale,
    so that multiplying every weight by a power of two changes no statistic
    and any other common factor changes them only by rounding (tiny or
    subnormal weights lose bits in ``w * (x - shift)``; huge ones overflow
    ``w * (x - shift)**2``).  A power of two makes the division exact, and
    unit weights are left as they are.  The kernels' counts and sums of
    squares are then in units of the returned power of two.

    Parameters
    ----------
    sample_weight : ndarray of shape (n_samples,)
        Non-negative, finite weights.

    Returns
    -------
    scaled : ndarray
        ``sample_weight / unit`` (``sample_weight`` itself when ``unit == 1``).
    unit : float
        A power of two; 1.0 when all weights are 0.
    """
    top = float(np.max(sample_weight)) if sample_weight.size else 0.0
    if not top > 0.0 or not math.isfinite(top):
        return sample_weight, 1.0
    unit = math.ldexp(1.0, math.frexp(top)[1] - 1)
    if unit == 1.0:
        return sample_weight, 1.0
    return sample_weight / unit, unit


def merge(a, b):
    """Merge two :class:`Moments` (Chan, Golub and LeVeque).

    Parameters
    ----------
    a, b : Moments
        Old and new moments of the same features.

    Returns
    -------
    Moments
        The moments of the union of both samples.
    """
    return Moments(*cpu.merge_moments(*a, *b))


def merge_spans(stacked):
    """Merge moments stacked as ``(n_parts, d)`` arrays, in order, into the
    moments of the whole (for example the ghost batches of one batch).

    Parameters
    ----------
    stacked : Moments

    Returns
    -------
    Moments
    """
    return Moments(*cpu.merge_task_moments(*stacked))


def ema_update(running_mean, running_var, seen, batch, momentum, ema=EMA_BATCH):
    """Fold a batch into running statistics with momentum (per feature).

    ``running = momentum * running + (1 - momentum) * batch``, the convention
    of Keras and of the textbook NumPy class (``momentum`` weighs the *old*
    value).  With ``ema="mixture"`` the statistics are those of the mixture
    of the running distribution (weight ``momentum``) and the batch (weight
    ``1 - momentum``), a merge of moments with fixed weights::

        mean = momentum * mean + (1 - momentum) * mean_b
        var  = momentum * var + (1 - momentum) * var_b
               + momentum * (1 - momentum) * (mean_b - mean)**2

    A feature that had no values yet takes the batch statistics as they are
    (no zero-initialization bias); a feature with no values in the batch
    keeps its running statistics.  ``momentum=None`` pools all samples
    exactly, which is a merge of moments (``ema`` then changes nothing).

    Parameters
    ----------
    running_mean, running_var : ndarray of shape (n_features,)
        Running statistics before the batch.
    seen : ndarray of shape (n_features,)
        Total weight seen so far per feature.
    batch : Moments
        Moments of the batch.
    momentum : float in [0, 1] or None
    ema : {"batch", "mixture"}, default="batch"
        :data:`EMA_BATCH` (batch norm's update) or :data:`EMA_MIXTURE`.

    Returns
    -------
    mean, var, seen : ndarray
        New arrays; the inputs are not modified.

    Raises
    ------
    ValueError
        When the updated statistics overflow float64 (see
        :func:`skbn._kernels.cpu.ema_update`), as :func:`moments` does.
    """
    mean, var, new_seen = cpu.ema_update(
        running_mean,
        running_var,
        seen,
        *batch,
        momentum_code(momentum),
        ema == EMA_MIXTURE,
    )
    if not cpu.all_finite(mean, var):
        # The same error as the moments of one fit on the pooled data; the
        # inputs were not modified, so the caller's state is unchanged.
        raise_overflow(mean, var)
    return mean, var, new_seen


def samples_seen(seen, count, per_sample):
    """``n_samples_seen_`` after a batch, as scikit-learn counts it.

    Each feature adds the sum of the weights of its non-missing values (their
    number without weights), divided by the values of the feature that one
    sample holds (1 for 2-D data; ``H * W`` for the channels of ``(N, C, H,
    W)`` images).  As in :class:`~sklearn.preprocessing.StandardScaler`, the
    result is one number when every feature has the same, otherwise an array
    per feature; a whole number is an ``int`` (``int64`` array), a sum of
    weights that is not whole a ``float`` (``float64`` array).

    Parameters
    ----------
    seen : int, float or ndarray of shape (n_features,)
        ``n_samples_seen_`` before the batch.
    count : ndarray of shape (n_features,)
        The batch's :attr:`Moments.count`.
    per_sample : int
        Values of one feature in one sample.

    Returns
    -------
    int, float or ndarray
    """
    total = np.asarray(seen, dtype=np.float64) + count / per_sample
    whole = bool(np.all(total == np.floor(total)))
    if np.all(total == total[0]):
        return int(total[0]) if whole else float(total[0])
    return total.astype(np.int64) if whole else total


def momentum_code(momentum):
    """``momentum`` as the kernels take it: a float, or
    :data:`skbn._kernels.cpu.MOMENTUM_POOLED` for ``None`` (pooled
    statistics, see :func:`skbn._kernels.cpu.ema_update`)."""
    return cpu.MOMENTUM_POOLED if momentum is None else float(momentum)
