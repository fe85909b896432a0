"""Forward and backward passes of the normalizations, for training loops.

NumPy in and out, float32 or float64 (integer input is cast to float64), any
number of dimensions.  Each ``*_forward`` returns the output and a ``cache``
that the matching ``*_backward`` turns, with the gradient of the loss with
respect to the output, into the gradients with respect to the input, ``gamma``
and ``beta``::

    y, cache = batch_norm_forward(x, gamma, beta, axis=-1)
    dx, dgamma, dbeta = batch_norm_backward(dy, cache)

The statistics come from :func:`skbn._moments.moments`, the routine that
:class:`~skbn.BatchNormalizer` uses too: mergeable moments accumulated in
float64, bit-identical for any thread count.  The backward pass is the closed
form (see :mod:`skbn._kernels.backward`): one reduction and one fused pass
over ``x`` and ``dy``, in float64 whatever the dtype.

The cache holds a reference to ``x`` (not a copy, as PyTorch's autograd
does): do not modify ``x`` in place between the forward and the backward
call.

=================== ============================ ==============================
function pair       statistics per               ``gamma`` / ``beta`` per
=================== ============================ ==============================
``batch_norm_*``    feature (index along axis)   feature
``layer_norm_*``    sample (over ``axis``)       element of the ``axis`` dims
``group_norm_*``    sample and group of channels channel
``instance_norm_*`` sample and channel           channel
=================== ============================ ==============================

Examples
--------
>>> import numpy as np
>>> from skbn.functional import batch_norm_forward, batch_norm_backward
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(3.0, 2.0, size=(128, 4))
>>> gamma, beta = np.ones(4), np.zeros(4)
>>> y, cache = batch_norm_forward(x, gamma, beta)
>>> np.allclose(y.mean(axis=0), 0), np.allclose(y.std(axis=0), 1, atol=1e-5)
(True, True)
>>> dx, dgamma, dbeta = batch_norm_backward(np.ones_like(y), cache)
>>> np.allclose(dx, 0), dbeta
(True, array([128., 128., 128., 128.]))
"""

import math
from numbers import Integral, Real
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import _config, _moments
from ._kernels import cpu
from ._layout import Layout, normalize_axis
from ._moments import Moments
from ._validation import check_numeric, feature_vector

__all__ = [
    "batch_norm_forward",
    "batch_norm_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "group_norm_forward",
    "group_norm_backward",
    "instance_norm_forward",
    "instance_norm_backward",
]


# -- validation --


def _as_float_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32/float64 ndarray, at least 2-D, not empty."""
    check_numeric(x, name)  # the estimators' rule: no strings, dates, durations
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize in (4, 8):
        if not arr.dtype.isnative:  # Numba kernels read native byte order only
            arr = arr.astype(arr.dtype.newbyteorder("="))
    elif kind in "biuf":
        arr = arr.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must hold real numbers (float32 or float64); got dtype "
            f"{arr.dtype}."
        )
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions (samples, features); got "
            f"shape {arr.shape}."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    return np.ascontiguousarray(arr)


def _as_grad(dy: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``dy`` as a C-contiguous array of the forward input's shape and dtype."""
    arr = np.asarray(dy)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"dy must hold real numbers; got dtype {arr.dtype}.")
    if arr.shape != shape:
        raise ValueError(
            f"dy has shape {arr.shape}, but the forward input had shape {shape}."
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_eps(eps: Any) -> Any:
    if isinstance(eps, bool) or not isinstance(eps, Real):
        raise TypeError(f"eps must be a float > 0; got {eps!r}.")
    if not (math.isfinite(eps) and eps > 0):  # type: ignore[operator, unused-ignore]
        raise ValueError(f"eps must be a finite float > 0; got {eps!r}.")
    return float(eps)


def _check_momentum(momentum: Any) -> Any:
    if isinstance(momentum, bool) or not isinstance(momentum, Real):
        raise TypeError(f"momentum must be a float in [0, 1]; got {momentum!r}.")
    if not 0.0 <= momentum <= 1.0:  # type: ignore[operator, unused-ignore]
        raise ValueError(f"momentum must be in [0, 1]; got {momentum!r}.")
    return float(momentum)


def _check_renorm(renorm: Any) -> Any:
    """Validate ``renorm=(r_max, d_max)``; return it as floats, or None.

    Parameters
    ----------
    renorm : tuple of (float, float) or None

    Returns
    -------
    tuple of float or None
    """
    if renorm is None:
        return None
    if not isinstance(renorm, (tuple, list)) or len(renorm) != 2:
        raise TypeError(
            f"renorm must be None or a pair (r_max, d_max); got {renorm!r}."
        )
    r_max, d_max = renorm
    for name, v in (("r_max", r_max), ("d_max", d_max)):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
            raise TypeError(f"renorm {name} must be a finite float; got {v!r}.")
    if r_max < 1 or d_max < 0:
        raise ValueError(
            f"renorm=(r_max, d_max) needs r_max >= 1 and d_max >= 0; got {renorm!r}."
        )
    return float(r_max), float(d_max)


def _check_virtual_batch_size(vbs: Any, n_samples: Any, axes: Any) -> Any:
    """Validate ``virtual_batch_size`` for a batch of ``n_samples`` samples
    along axis 0 with feature axes ``axes``; return it as an int, or None."""
    if vbs is None:
        return None
    if isinstance(vbs, bool) or not isinstance(vbs, Integral):
        raise TypeError(f"virtual_batch_size must be None or an int; got {vbs!r}.")
    if 0 in axes:
        raise ValueError(
            "virtual_batch_size splits the samples along axis 0, but axis 0 is a "
            f"feature axis here (feature axes {tuple(axes)}); drop "
            "virtual_batch_size or choose another axis."
        )
    if vbs < 1 or n_samples % vbs:
        raise ValueError(
            f"virtual_batch_size={vbs} must be a positive divisor of the number "
            f"of samples ({n_samples})."
        )
    return int(vbs)


def _param(value: Any, n: Any, name: Any) -> Any:
    """A ``gamma``/``beta`` argument as a float64 vector of ``n`` values (or None)."""
    if value is None:
        return None
    return feature_vector(
        value, n, name, expected="None, a float or one float per feature"
    )


def _running(
    running_mean: Any, running_var: Any, d: Any, x: Any = None, write: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate running statistics that are updated in place; float64 copies.

    With ``write`` (training mode updates them) both buffers are checked to
    be writable, apart from each other and from the input ``x`` before
    either is written, so a call that raises writes neither.
    """
    given = (running_mean is not None, running_var is not None)
    if given == (False, False):
        return None
    if given != (True, True):
        raise ValueError(
            "running_mean and running_var are given together or not at all."
        )
    out = []
    for name, arr in (("running_mean", running_mean), ("running_var", running_var)):
        if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
            raise TypeError(
                f"{name} must be a float ndarray (it is updated in place); got "
                f"{type(arr).__name__}."
            )
        if arr.size != d:
            raise ValueError(
                f"{name} has {arr.size} values; expected one per feature ({d})."
            )
        if write and not arr.flags.writeable:
            raise ValueError(
                f"{name} must be a writable array (it is updated in place in "
                "training mode); got a read-only one."
            )
        if write and x is not None and np.may_share_memory(arr, x):
            raise ValueError(f"{name} must not share memory with x.")
        vec = arr.astype(np.float64).reshape(-1)
        if not np.isfinite(vec).all():
            raise ValueError(f"{name} must be finite.")
        if name == "running_var" and not (vec >= 0).all():
            raise ValueError(
                f"running_var must be non-negative; got {float(vec.min())!r}."
            )
        out.append(vec)
    if write and np.may_share_memory(running_mean, running_var):
        raise ValueError(
            "running_mean and running_var must be separate arrays; they share "
            "memory, so updating one would overwrite the other."
        )
    if (out[1] < 0).any():
        raise ValueError("running_var must be non-negative.")
    return out[0], out[1]


def _reject_missing(count: Any, expected: Any, name: Any = "x") -> Any:
    """The training path needs every value: a NaN would break the backward pass."""
    bad = np.flatnonzero(count != expected)
    if bad.size:
        raise ValueError(
            f"{name} contains NaN (in statistic {', '.join(map(str, bad[:5]))}); "
            "the training functions need finite input."
        )


def _shaped(grad: Any, shape: Any, dtype: Any) -> Any:
    """A per-feature gradient in the shape of its parameter (a scalar sums)."""
    if shape is None:
        return None
    if shape == ():
        return np.asarray(grad.sum(), dtype=dtype)
    return grad.astype(dtype).reshape(shape)


def _check_cache(cache: Any, cls: Any, caller: Any, kinds: Any = None) -> Any:
    if not isinstance(cache, cls) or (kinds is not None and cache.kind not in kinds):
        made_by = kinds[0] if kinds else "batch_norm"
        raise TypeError(
            f"{caller} needs the cache returned by {made_by}_forward; got "
            f"{type(cache).__name__}"
            + (f" from {cache.kind}_forward." if hasattr(cache, "kind") else ".")
        )


# -- batch norm: the pieces that BatchNormalizer shares --


def _spans(n_outer: Any, n_samples: Any, virtual_batch_size: Any) -> Any:
    """Ranges of the kernel view's outer axis that hold each (ghost) batch.

    Axis 0 of the input is the slowest part of ``outer`` (the layout is never
    the transposed one here), so ``virtual_batch_size`` samples are one
    contiguous slice of it.
    """
    if virtual_batch_size is None:
        return [(0, n_outer)]
    step = virtual_batch_size * (n_outer // n_samples)
    return [(o, o + step) for o in range(0, n_outer, step)]


def _span_moments(
    x3: Any, spans: Any, sample_weight: Any = None, feature_names: Any = None
) -> Any:
    """Moments of each span of ``x3``, stacked into ``(n_spans, d)`` arrays."""
    parts = []
    rest = x3.shape[0] // (len(sample_weight) if sample_weight is not None else 1)
    for o0, o1 in spans:
        w = None
        if sample_weight is not None:
            w = np.repeat(sample_weight[o0 // rest : o1 // rest], rest)
        parts.append(_moments.moments(Layout(x3[o0:o1], (1,)), w, feature_names))
    return Moments(*(np.stack(a) for a in zip(*parts, strict=True)))


def _renorm_factors(
    mean: Any, var: Any, running_mean: Any, running_var: Any, eps: Any, renorm: Any
) -> Any:
    """Batch Renormalization's ``r`` and ``d`` (Ioffe 2017, Algorithm 1).

    ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and
    ``d = clip((mu_B - mu) / sigma, -d_max, d_max)`` with the running
    statistics *before* this batch's update; both are constants for the
    backward pass (``stop_gradient`` in the paper).
    """
    r_max, d_max = renorm
    sigma = np.sqrt(running_var + eps)
    r = np.clip(np.sqrt(var + eps) / sigma, 1.0 / r_max, r_max)
    d = np.clip((mean - running_mean) / sigma, -d_max, d_max)
    return r, d


def _normalize_spans(
    x3: Any,
    spans: Any,
    mean: Any,
    inv_std: Any,
    gamma: Any,
    beta: Any,
    r: Any = None,
    d: Any = None,
) -> Any:
    """``gamma * ((x - mean) * inv_std * r + d) + beta`` per span, in one pass.

    Renormalized or not, it is one scale-and-shift per feature, so every span
    goes through :func:`skbn._moments.affine`.
    """
    y3 = np.empty_like(x3)
    n_feat = x3.shape[1]
    g = np.ones(n_feat) if gamma is None else gamma
    b = np.zeros(n_feat) if beta is None else beta
    for k, (o0, o1) in enumerate(spans):
        scale = inv_std[k] * g if r is None else inv_std[k] * r[k] * g
        offset = b if d is None else g * d[k] + b
        _moments.affine(Layout(x3[o0:o1], (1,)), mean[k], scale, offset, out=y3[o0:o1])
    return y3


def _train_normalize(
    layout: Any,
    axes: Any,
    sample_weight: Any,
    gamma: Any,
    beta: Any,
    eps: Any,
    running: tuple[np.ndarray, np.ndarray] | None,
    renorm: Any,
    virtual_batch_size: Any,
    feature_names: Any = None,
) -> Any:
    """Training-mode normalize of one validated batch, for ``BatchNormalizer``.

    The estimator keeps its own running statistics (with its sample counts,
    NaN handling and ``momentum=None``); this routine only normalizes the
    batch by the statistics of each (ghost) batch, renormalized when
    ``renorm`` is given and ``running`` holds the statistics before the batch.

    Parameters
    ----------
    layout : skbn._layout.Layout
    axes : tuple of int
        Feature axes of the validated input.
    sample_weight : array-like or None
        Already validated by the estimator.
    gamma, beta : ndarray of shape (n_features,)
    eps : float
    running : tuple of (running_mean, running_var) or None
    renorm : tuple of float or None
    virtual_batch_size : int or None
    feature_names : sequence of str, optional

    Returns
    -------
    ndarray
        The normalized batch, in the input's shape.
    """
    n = layout.shape[0]
    vbs = _check_virtual_batch_size(virtual_batch_size, n, axes)
    if layout.transposed:
        # Ghost batches must be slices of the outer axis: use C order.
        layout = Layout(np.ascontiguousarray(layout.restore(layout.x3)), axes)
    x3 = layout.x3
    if sample_weight is not None:
        sample_weight = np.broadcast_to(
            np.asarray(sample_weight, dtype=np.float64), (n,)
        )
    spans = _spans(x3.shape[0], n, vbs)
    mom = _span_moments(x3, spans, sample_weight, feature_names)
    var = mom.var
    inv_std = 1.0 / np.sqrt(var + eps)
    r = d = None
    if renorm is not None and running is not None:
        r, d = _renorm_factors(mom.mean, var, *running, eps, renorm)
    y3 = _normalize_spans(x3, spans, mom.mean, inv_std, gamma, beta, r, d)
    return layout.restore(y3)


# -- batch norm: backward wrappers --


def _tile(k: Any, *vectors: Any) -> Any:
    return [np.tile(v, k) for v in vectors]


def _grad_sums(x3: Any, dy3: Any, mean: Any) -> Any:
    """Per-feature ``sum(dy)`` and ``sum(dy * (x - mean))`` (float64)."""
    outer, d, inner = x3.shape
    size = x3.size
    if inner > 1:
        seg = _config.SEGMENT_LEN
        units = outer * d * ((inner + seg - 1) // seg)
        kernel = _moments._pick(
            cpu.segments_grad_sums, cpu.segments_grad_sums_serial, size
        )
        return kernel(x3, dy3, mean, seg, _moments._n_tasks(size, units))
    kernel = _moments._pick(cpu.rows_grad_sums, cpu.rows_grad_sums_serial, size)

    def rows(x2: Any, g2: Any, m: Any) -> Any:
        block = _moments._block_rows(x2.shape[1], x2.itemsize)
        n_blocks = (x2.shape[0] + block - 1) // block
        return kernel(x2, g2, m, block, _moments._n_tasks(x2.size, n_blocks))

    x2 = x3.reshape(outer, d)
    g2 = dy3.reshape(outer, d)
    k = _moments._fold(outer, d)
    if k == 1:
        return rows(x2, g2, mean)
    # Few features: k rows side by side as one wide row (see _moments._fold),
    # then the k partial sums of each feature are added in order.
    n_main = outer - outer % k
    wide = rows(
        x2[:n_main].reshape(n_main // k, k * d),
        g2[:n_main].reshape(n_main // k, k * d),
        np.tile(mean, k),
    )
    s, q = (cpu.sum_tasks(a.reshape(k, d)) for a in wide)
    if n_main < outer:
        ts, tq = rows(x2[n_main:], g2[n_main:], mean)
        s, q = s + ts, q + tq
    return s, q


def _grad_dx(x3: Any, dy3: Any, mean: Any, a: Any, b: Any, c: Any, out3: Any) -> Any:
    """``dx = a * dy - b * (x - mean) - c`` per feature, into ``out3``."""
    outer, d, inner = x3.shape
    if inner > 1:
        kernel = _moments._pick(
            cpu.segments_grad_dx, cpu.segments_grad_dx_serial, x3.size
        )
        kernel(x3, dy3, mean, a, b, c, out3)
        return
    kernel = _moments._pick(cpu.rows_grad_dx, cpu.rows_grad_dx_serial, x3.size)
    x2, g2, o2 = (arr.reshape(outer, d) for arr in (x3, dy3, out3))
    k = _moments._fold(outer, d)
    n_main = outer - outer % k if k > 1 else 0
    if k > 1:
        w = k * d
        kernel(
            x2[:n_main].reshape(-1, w),
            g2[:n_main].reshape(-1, w),
            *_tile(k, mean, a, b, c),
            o2[:n_main].reshape(-1, w),
            _moments._block_rows(w, x3.itemsize),
        )
    if n_main < outer:
        kernel(
            x2[n_main:],
            g2[n_main:],
            mean,
            a,
            b,
            c,
            o2[n_main:],
            _moments._block_rows(d, x3.itemsize),
        )


# -- batch norm: public pair --


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs; opaque to users."""

    layout: Layout
    axes: tuple[int, ...]
    spans: list[tuple[int, int]]
    mean: np.ndarray  # (n_spans, d) float64
    inv_std: np.ndarray  # (n_spans, d) float64
    gamma: np.ndarray | None  # (d,) float64
    r: np.ndarray | None  # (n_spans, d), renorm only
    d: np.ndarray | None
    training: bool
    gamma_shape: tuple[int, ...] | None
    beta_shape: tuple[int, ...] | None


def batch_norm_forward(
    x: ArrayLike,
    gamma: float | ArrayLike | None,
    beta: float | ArrayLike | None,
    *,
    eps: float = 1e-5,
    axis: int | tuple[int, ...] = -1,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    momentum: float = 0.9,
    training: bool = True,
    renorm: tuple[float, float] | None = None,
    virtual_batch_size: int | None = None,
) -> tuple[np.ndarray, "BatchNormCache"]:
    """Batch normalization, forward: ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    In training mode ``mean`` and ``var`` are the statistics of this batch
    (biased variance, per feature, over every axis but ``axis``); in
    inference mode the running ones.

    Parameters
    ----------
    x : array-like of shape (n_samples, ...)
        Input, at least 2-D.  float32 stays float32; other real dtypes are
        cast to float64.  It must hold no NaN or infinity.
    gamma, beta : float, array-like of shape (n_features,) or None
        Scale and shift, a scalar or one value per feature (flat, or in the
        shape of the feature axes, e.g. ``(C,)`` for ``axis=1``).  ``None``
        leaves the term out, and its gradient is ``None``.
    eps : float > 0, default=1e-5
        Added to the variance before the square root.
    axis : int or tuple of int, default=-1
        Feature axis or axes, as in :class:`~skbn.BatchNormalizer`: ``-1`` for
        ``(n_samples, n_features)`` or channels-last data, ``1`` for
        ``(N, C, H, W)`` (PyTorch's ``BatchNorm2d``).
    running_mean, running_var : ndarray of shape (n_features,), optional
        Running statistics (float32 or float64).  Training mode updates them
        **in place**; inference mode (``training=False``) and Batch
        Renormalization need them.  ``running_var`` holds the *biased*
        variance (PyTorch stores the unbiased one).
    momentum : float in [0, 1], default=0.9
        Weight of the *old* running value:
        ``running = momentum * running + (1 - momentum) * batch`` (Keras'
        convention).  PyTorch's ``momentum`` weighs the
        new batch: PyTorch's 0.1 is skbn's 0.9.
    training : bool, default=True
        Normalize by the batch statistics (True) or by the running ones.
    renorm : (r_max, d_max) or None, default=None
        Batch Renormalization (Ioffe 2017): ``xhat = (x - mean_B) / sigma_B
        * r + d`` with ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and
        ``d = clip((mean_B - mean) / sigma, -d_max, d_max)`` from the running
        statistics before this batch.  ``r`` and ``d`` are constants in the
        backward pass.  ``(1, 0)`` is plain batch norm.  Training mode only.
    virtual_batch_size : int or None, default=None
        Ghost batch norm (Hoffer et al. 2017): consecutive groups of this
        many samples along axis 0 are normalized by their own statistics; it
        must divide the number of samples.  The running statistics are updated
        once, with the statistics of the whole batch (Keras instead averages
        the ghost batches' variances, which leaves out the spread of their
        means).  Training mode only.

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : BatchNormCache
        For :func:`batch_norm_backward`.  It refers to ``x``: do not modify
        ``x`` in place before the backward call.

    See Also
    --------
    batch_norm_backward : The matching backward pass.
    skbn.BatchNormalizer : The same normalization as a transformer.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import batch_norm_forward
    >>> x = np.arange(12.0).reshape(6, 2)
    >>> rm, rv = np.zeros(2), np.ones(2)
    >>> y, _ = batch_norm_forward(x, 1.0, 0.0, running_mean=rm, running_var=rv)
    >>> np.round(y[:, 0], 3)
    array([-1.464, -0.878, -0.293,  0.293,  0.878,  1.464])
    >>> rm  # 0.9 * 0 + 0.1 * batch mean, updated in place
    array([0.5, 0.6])
    >>> y_eval, _ = batch_norm_forward(x, 1.0, 0.0, running_mean=rm,
    ...                                running_var=rv, training=False)
    """
    x = _as_float_array(x, "x")
    eps = _check_eps(eps)
    momentum = _check_momentum(momentum)
    renorm = _check_renorm(renorm)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False; got {training!r}.")
    axes = normalize_axis(axis, x.ndim)
    layout = Layout(x, axes)
    x3 = layout.x3
    n_feat = x3.shape[1]
    g = _param(gamma, n_feat, "gamma")
    b = _param(beta, n_feat, "beta")
    running = _running(running_mean, running_var, n_feat, x, write=bool(training))
    r = d = None
    if not training:
        if running is None:
            raise ValueError(
                "training=False normalizes by running_mean and running_var; pass both."
            )
        spans = [(0, x3.shape[0])]
        mean = running[0][None]
        var = running[1][None]
    else:
        vbs = _check_virtual_batch_size(virtual_batch_size, x.shape[0], axes)
        if renorm is not None and running is None:
            raise ValueError(
                "renorm needs the running statistics: pass running_mean and "
                "running_var."
            )
        spans = _spans(x3.shape[0], x.shape[0], vbs)
        mom = _span_moments(x3, spans)
        _reject_missing(mom.count, (spans[0][1] - spans[0][0]) * x3.shape[2])
        mean, var = mom.mean, mom.var
        if renorm is not None and running is not None:
            r, d = _renorm_factors(mean, var, *running, eps, renorm)
        if running is not None:
            # _running checked that both are given.
            assert running_mean is not None and running_var is not None
            batch = Moments(*cpu.merge_task_moments(*mom))
            # seen = 1 everywhere: the arrays already hold statistics, so the
            # update is always the momentum one.
            new_mean, new_var, _ = _moments.ema_update(
                *running, np.ones(n_feat), batch, momentum
            )
    inv_std = 1.0 / np.sqrt(var + eps)
    y3 = _normalize_spans(x3, spans, mean, inv_std, g, b, r, d)
    if training and running is not None:
        # Written last, when nothing else can raise.
        assert running_mean is not None and running_var is not None
        running_mean[...] = new_mean.reshape(running_mean.shape)
        running_var[...] = new_var.reshape(running_var.shape)
    cache = BatchNormCache(
        layout,
        axes,
        spans,
        mean,
        inv_std,
        g,
        r,
        d,
        bool(training),
        None if gamma is None else np.shape(gamma),
        None if beta is None else np.shape(beta),
    )
    return layout.restore(y3), cache


def batch_norm_backward(
    dy: ArrayLike, cache: "BatchNormCache"
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Batch normalization, backward pass.

    With ``xhat = (x - mean) / sqrt(var + eps)`` and ``N`` values per
    feature, training mode gives::

        dbeta  = sum(dy)
        dgamma = sum(dy * xhat)
        dx     = gamma / sqrt(var + eps) / N * (N * dy - sum(dy) - xhat * dgamma)

    (with Batch Renormalization ``dx`` gains the factor ``r`` and
    ``dgamma = sum(dy * (r * xhat + d))``; per ghost batch with
    ``virtual_batch_size``).  In inference mode the statistics are constants
    and ``dx = gamma / sqrt(running_var + eps) * dy``.  One reduction pass and
    one fused pass over ``x`` and ``dy``, in float64.

    Parameters
    ----------
    dy : array-like of the shape of the forward output
        Gradient of the loss with respect to ``y``.
    cache : BatchNormCache
        The second output of :func:`batch_norm_forward`.

    Returns
    -------
    dx : ndarray of the shape and dtype of ``x``
    dgamma, dbeta : ndarray of the shape of ``gamma`` / ``beta``, or None
        In ``x``'s dtype; ``None`` where the forward call had ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import batch_norm_forward, batch_norm_backward
    >>> x = np.array([[1.0], [2.0], [4.0]])
    >>> y, cache = batch_norm_forward(x, 2.0, 0.5)
    >>> dx, dgamma, dbeta = batch_norm_backward(np.array([[1.0], [0], [0]]), cache)
    >>> float(dbeta), round(float(dgamma), 6)
    (1.0, -1.069042)
    """
    _check_cache(cache, BatchNormCache, "batch_norm_backward")
    layout = cache.layout
    x3 = layout.x3
    dy = _as_grad(dy, layout.shape, x3.dtype)
    dy3 = Layout(dy, cache.axes).x3
    dx3 = np.empty_like(x3)
    n_feat, inner = x3.shape[1], x3.shape[2]
    gamma = np.ones(n_feat) if cache.gamma is None else cache.gamma
    dgamma = np.zeros(n_feat)
    dbeta = np.zeros(n_feat)
    for k, (o0, o1) in enumerate(cache.spans):
        xs, gs = x3[o0:o1], dy3[o0:o1]
        mean, inv = cache.mean[k], cache.inv_std[k]
        s, q = _grad_sums(xs, gs, mean)
        r = 1.0 if cache.r is None else cache.r[k]
        a = gamma * inv * r
        if cache.training:
            n = (o1 - o0) * inner
            b = a * (inv * inv) * q / n
            c = a * s / n
        else:
            b = c = np.zeros(n_feat)
        _grad_dx(xs, gs, mean, a, b, c, dx3[o0:o1])
        dbeta += s
        dgamma += r * inv * q
        if cache.d is not None:
            dgamma += cache.d[k] * s
    dtype = x3.dtype
    return (
        layout.restore(dx3),
        _shaped(dgamma, cache.gamma_shape, dtype),
        _shaped(dbeta, cache.beta_shape, dtype),
    )


# -- per-sample norms --


# Groups of fewer values than this take their moments from the rows kernel
# on a transposed chunk, longer ones from the segments kernel (measured on
# 1M x 64 and 8M x 8 float32: 2x and 1.5x faster that way; from 256 values
# on the segments kernel is as fast or faster).
_TRANSPOSE_BELOW = 128


class _GroupNames:
    """Names of the (sample, group) statistics, for the infinity error."""

    def __init__(self, n_groups: Any, offset: Any = 0) -> None:
        self.n_groups = n_groups
        self.offset = offset

    def __getitem__(self, j: Any) -> Any:
        j += self.offset
        if self.n_groups == 1:
            return f"sample {j}"
        return f"sample {j // self.n_groups}, group {j % self.n_groups}"


def _groups_moments(x5: Any) -> Any:
    """Moments per (sample, group) of a ``(N, S1, G, Cg, S2)`` view, flat."""
    N, S1, G, Cg, S2 = x5.shape
    if S1 > 1:
        # Channels not first: bring each group's values together, once.
        x5 = np.ascontiguousarray(x5.transpose(0, 2, 3, 1, 4))
    x3 = x5.reshape(1, N * G, -1)
    # One feature per (sample, group): far too many for the per-task arrays
    # of _moments.moments, so its kernels run on chunks of about a segment's
    # worth of values (see cpu.chunked_moments).
    k = x3.shape[2]
    chunk = max(1, _config.SEGMENT_LEN // k)
    kernel = _moments._pick(cpu.chunked_moments, cpu.chunked_moments_serial, x3.size)
    res = kernel(x3, chunk, _config.SEGMENT_LEN, k < _TRANSPOSE_BELOW)
    if cpu.all_finite(res[1], res[2]):
        return Moments(*res)
    # NaN (skipped) or infinity (refused): the general routine, by slices.
    step = max(chunk, 4096)
    parts = [
        _moments.moments(Layout(x3[:, f0 : f0 + step], (1,)), None, _GroupNames(G, f0))
        for f0 in range(0, N * G, step)
    ]
    return Moments(*(np.concatenate(a) for a in zip(*parts, strict=True)))


def _groups_normalize(x5: Any, gamma: Any, beta: Any, eps: Any, training: Any) -> Any:
    """Normalize per (sample, group); elementwise ``gamma``/``beta`` per channel.

    Returns ``y5, mean, inv_std`` (the last two of shape ``(N, G)``).  With
    ``training`` a NaN raises (the backward pass needs every value); without,
    NaN is left out of the statistics and stays NaN, as in the transformers.
    """
    N, S1, G, Cg, S2 = x5.shape
    mom = _groups_moments(x5)
    if training:
        _reject_missing(mom.count, S1 * Cg * S2)
    mean = mom.mean.reshape(N, G)
    inv_std = (1.0 / np.sqrt(mom.var + eps)).reshape(N, G)
    g = np.ones((G, Cg)) if gamma is None else gamma.reshape(G, Cg)
    b = np.zeros((G, Cg)) if beta is None else beta.reshape(G, Cg)
    y5 = np.empty_like(x5)
    kernel = _moments._pick(cpu.groups_affine, cpu.groups_affine_serial, x5.size)
    kernel(x5, mean, inv_std, g, b, y5)
    return y5, mean, inv_std


class PerSampleCache(NamedTuple):
    """What the per-sample backward functions need; opaque to users."""

    kind: str
    x5: np.ndarray
    mean: np.ndarray  # (N, G) float64
    inv_std: np.ndarray  # (N, G) float64
    gamma: np.ndarray | None  # (G * Cg,) float64
    shape: tuple[int, ...]  # of the forward input
    perm: list[int] | None  # layer norm over non-trailing axes: the transpose used
    gamma_shape: tuple[int, ...] | None
    beta_shape: tuple[int, ...] | None


def _layer_view(x: Any, axis: Any) -> tuple[Any, Any]:
    """``x`` as ``(rows, 1, 1, K, 1)`` with the normalized axes last."""
    axes = normalize_axis(axis, x.ndim)
    if 0 in axes:
        raise ValueError(
            f"axis={axis!r} includes axis 0, the sample axis; layer norm "
            "normalizes within each sample."
        )
    keep = [a for a in range(x.ndim) if a not in axes]
    perm = None
    if axes != tuple(range(x.ndim - len(axes), x.ndim)):
        perm = keep + list(axes)
        x = np.ascontiguousarray(x.transpose(perm))
    k = math.prod(x.shape[len(keep) :])
    return x.reshape(-1, 1, 1, k, 1), perm


def _channel_view(x: Any, axis: Any, n_groups: Any) -> Any:
    """``x`` as ``(N, S1, G, C // G, S2)`` around the channel ``axis``.

    ``n_groups=None`` is one group per channel (instance norm).
    """
    if isinstance(axis, bool) or not isinstance(axis, Integral):
        raise TypeError(f"axis must be an int (the channel axis); got {axis!r}.")
    (c_axis,) = normalize_axis(int(axis), x.ndim)
    if c_axis == 0:
        raise ValueError("axis=0 is the sample axis; the channel axis must be another.")
    n_ch = x.shape[c_axis]
    if n_groups is None:
        n_groups = n_ch
    if isinstance(n_groups, bool) or not isinstance(n_groups, Integral):
        raise TypeError(f"n_groups must be a positive int; got {n_groups!r}.")
    if n_groups < 1 or n_ch % n_groups:
        raise ValueError(
            f"n_groups={n_groups} must be a positive divisor of the number of "
            f"channels ({n_ch} along axis {axis})."
        )
    s1 = math.prod(x.shape[1:c_axis])
    s2 = math.prod(x.shape[c_axis + 1 :])
    return x.reshape(x.shape[0], s1, int(n_groups), n_ch // int(n_groups), s2)


def _per_sample_forward(
    kind: Any, x5: Any, perm: Any, shape: Any, gamma: Any, beta: Any, eps: Any
) -> tuple[np.ndarray, "PerSampleCache"]:
    """Shared tail of the per-sample forward functions."""
    n_ch = x5.shape[2] * x5.shape[3]
    g = _param(gamma, n_ch, "gamma")
    b = _param(beta, n_ch, "beta")
    y5, mean, inv_std = _groups_normalize(x5, g, b, eps, training=True)
    cache = PerSampleCache(
        kind,
        x5,
        mean,
        inv_std,
        g,
        shape,
        perm,
        None if gamma is None else np.shape(gamma),
        None if beta is None else np.shape(beta),
    )
    return _restore(y5, shape, perm), cache


def _restore(a5: np.ndarray, shape: Any, perm: Any) -> Any:
    if perm is None:
        return a5.reshape(shape)
    moved = tuple(shape[p] for p in perm)
    return a5.reshape(moved).transpose(np.argsort(perm))


def _per_sample_backward(
    dy: Any, cache: Any
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    x5 = cache.x5
    N, S1, G, Cg, S2 = x5.shape
    dy = _as_grad(dy, cache.shape, x5.dtype)
    if cache.perm is not None:
        dy = np.ascontiguousarray(dy.transpose(cache.perm))
    dy5 = dy.reshape(x5.shape)
    gamma = np.ones((G, Cg)) if cache.gamma is None else cache.gamma.reshape(G, Cg)
    size = x5.size
    sums = _moments._pick(cpu.groups_grad_sums, cpu.groups_grad_sums_serial, size)
    # Each task keeps its own per-channel sums: at most 1/16 of its share of
    # the data, or they would cost more than the data when the channels are
    # many and the samples few (layer norm over whole images).
    n_tasks = max(1, min(_moments._n_tasks(size, N), N * S1 * S2 // 16))
    a, b, dgamma, dbeta = sums(x5, dy5, cache.mean, cache.inv_std, gamma, n_tasks)
    m = S1 * Cg * S2
    inv = cache.inv_std
    dx5 = np.empty_like(x5)
    kernel = _moments._pick(cpu.groups_grad_dx, cpu.groups_grad_dx_serial, size)
    kernel(x5, dy5, cache.mean, inv, gamma, inv * a / m, inv**3 * b / m, dx5)
    dtype = x5.dtype
    return (
        _restore(dx5, cache.shape, cache.perm),
        _shaped(dgamma.reshape(-1), cache.gamma_shape, dtype),
        _shaped(dbeta.reshape(-1), cache.beta_shape, dtype),
    )


def layer_norm_forward(
    x: ArrayLike,
    gamma: float | ArrayLike | None,
    beta: float | ArrayLike | None,
    *,
    eps: float = 1e-5,
    axis: int | tuple[int, ...] = -1,
) -> tuple[np.ndarray, "PerSampleCache"]:
    """Layer normalization, forward (Ba, Kiros and Hinton 2016).

    Each sample is normalized by the mean and (biased) variance of its values
    along ``axis``, then scaled and shifted elementwise::

        y = gamma * (x - mean) / sqrt(var + eps) + beta

    Independent of the batch: the same in training and inference, and the
    same for a batch of one.

    Parameters
    ----------
    x : array-like of shape (n_samples, ...)
        Input, at least 2-D, finite.
    gamma, beta : float, array-like or None
        Elementwise scale and shift over the normalized axes: a scalar, or
        an array of their shape (or flat with as many values), like
        PyTorch's ``LayerNorm(normalized_shape)``.  ``None`` leaves the term
        out.
    eps : float > 0, default=1e-5
    axis : int or tuple of int, default=-1
        The axes normalized over (Keras' convention; PyTorch's
        ``normalized_shape`` is the trailing ones).  Not axis 0.

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : PerSampleCache
        For :func:`layer_norm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import layer_norm_forward
    >>> x = np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]])
    >>> y, cache = layer_norm_forward(x, None, None)
    >>> np.round(y, 4)
    array([[-1.2247,  0.    ,  1.2247],
           [-0.7071, -0.7071,  1.4142]])
    """
    x = _as_float_array(x, "x")
    eps = _check_eps(eps)
    shape = x.shape
    x5, perm = _layer_view(x, axis)
    return _per_sample_forward("layer_norm", x5, perm, shape, gamma, beta, eps)


def layer_norm_backward(
    dy: ArrayLike, cache: "PerSampleCache"
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Layer normalization, backward pass.

    The closed form of :func:`batch_norm_backward`, per sample instead of per
    feature: ``dx = inv_std / M * (M * dxhat - sum(dxhat) - xhat *
    sum(dxhat * xhat))`` with ``dxhat = gamma * dy`` and the sums over the
    ``M`` values of each sample; ``dgamma = sum(dy * xhat)`` and
    ``dbeta = sum(dy)`` over the samples.

    Parameters
    ----------
    dy : array-like of the shape of the forward output
    cache : PerSampleCache
        From :func:`layer_norm_forward`.

    Returns
    -------
    dx : ndarray of the shape and dtype of ``x``
    dgamma, dbeta : ndarray of the shape of ``gamma`` / ``beta``, or None

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import layer_norm_forward, layer_norm_backward
    >>> x = np.array([[1.0, 2.0, 3.0]])
    >>> y, cache = layer_norm_forward(x, np.ones(3), np.zeros(3))
    >>> dx, dgamma, dbeta = layer_norm_backward(np.ones_like(y), cache)
    >>> np.allclose(dx, 0), dbeta
    (True, array([1., 1., 1.]))
    """
    _check_cache(cache, PerSampleCache, "layer_norm_backward", ("layer_norm",))
    return _per_sample_backward(dy, cache)


def group_norm_forward(
    x: ArrayLike,
    gamma: float | ArrayLike | None,
    beta: float | ArrayLike | None,
    *,
    n_groups: int,
    eps: float = 1e-5,
    axis: int = 1,
) -> tuple[np.ndarray, "PerSampleCache"]:
    """Group normalization, forward (Wu and He 2018).

    The channels along ``axis`` are split into ``n_groups`` consecutive
    groups; each sample's values in a group (all its positions) are
    normalized by their own mean and variance, then scaled and shifted per
    channel.  ``n_groups=1`` normalizes all of a sample's channels together,
    ``n_groups=C`` is instance norm.

    Parameters
    ----------
    x : array-like of shape (N, C, ...) or (N, ..., C)
        Input, at least 2-D, finite.
    gamma, beta : float, array-like of shape (C,) or None
        Per-channel scale and shift.
    n_groups : int
        Number of groups; it must divide the number of channels.
    eps : float > 0, default=1e-5
    axis : int, default=1
        The channel axis: ``1`` for ``(N, C, H, W)`` (PyTorch), ``-1`` for
        channels-last (Keras).

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : PerSampleCache
        For :func:`group_norm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import group_norm_forward
    >>> x = np.arange(16.0).reshape(1, 4, 2, 2)
    >>> y, _ = group_norm_forward(x, None, None, n_groups=2)
    >>> np.round(y[0, :, 0, 0], 4)  # first pixel of each channel
    array([-1.5275,  0.2182, -1.5275,  0.2182])
    """
    x = _as_float_array(x, "x")
    eps = _check_eps(eps)
    x5 = _channel_view(x, axis, n_groups)
    return _per_sample_forward("group_norm", x5, None, x.shape, gamma, beta, eps)


def group_norm_backward(
    dy: ArrayLike, cache: "PerSampleCache"
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Group normalization, backward pass.

    The closed form of :func:`layer_norm_backward`, per sample and group.

    Parameters
    ----------
    dy : array-like of the shape of the forward output
    cache : PerSampleCache
        From :func:`group_norm_forward`.

    Returns
    -------
    dx : ndarray of the shape and dtype of ``x``
    dgamma, dbeta : ndarray of the shape of ``gamma`` / ``beta``, or None

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import group_norm_forward, group_norm_backward
    >>> x = np.random.default_rng(0).normal(size=(2, 4, 3))
    >>> y, cache = group_norm_forward(x, np.ones(4), np.zeros(4), n_groups=2)
    >>> dx, dgamma, dbeta = group_norm_backward(np.ones_like(y), cache)
    >>> dx.shape, dbeta
    ((2, 4, 3), array([6., 6., 6., 6.]))
    """
    _check_cache(cache, PerSampleCache, "group_norm_backward", ("group_norm",))
    return _per_sample_backward(dy, cache)


def instance_norm_forward(
    x: ArrayLike,
    gamma: float | ArrayLike | None,
    beta: float | ArrayLike | None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> tuple[np.ndarray, "PerSampleCache"]:
    """Instance normalization, forward (Ulyanov, Vedaldi and Lempitsky 2016).

    Each channel of each sample is normalized over its positions (the axes
    other than 0 and ``axis``), then scaled and shifted per channel: group
    norm with one channel per group.  A sample with one position per channel
    normalizes every value to ``beta``.

    Parameters
    ----------
    x : array-like of shape (N, C, ...) or (N, ..., C)
        Input, at least 2-D, finite.
    gamma, beta : float, array-like of shape (C,) or None
        Per-channel scale and shift.
    eps : float > 0, default=1e-5
    axis : int, default=1
        The channel axis.

    Returns
    -------
    y : ndarray of the shape and dtype of ``x``
    cache : PerSampleCache
        For :func:`instance_norm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import instance_norm_forward
    >>> x = np.array([[[1.0, 3.0], [0.0, 10.0]]])  # (N=1, C=2, L=2)
    >>> y, _ = instance_norm_forward(x, None, None)
    >>> np.round(y, 4)
    array([[[-1.,  1.],
            [-1.,  1.]]])
    """
    x = _as_float_array(x, "x")
    eps = _check_eps(eps)
    x5 = _channel_view(x, axis, None)
    return _per_sample_forward("instance_norm", x5, None, x.shape, gamma, beta, eps)


def instance_norm_backward(
    dy: ArrayLike, cache: "PerSampleCache"
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Instance normalization, backward pass.

    Parameters
    ----------
    dy : array-like of the shape of the forward output
    cache : PerSampleCache
        From :func:`instance_norm_forward`.

    Returns
    -------
    dx : ndarray of the shape and dtype of ``x``
    dgamma, dbeta : ndarray of the shape of ``gamma`` / ``beta``, or None

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import instance_norm_forward, instance_norm_backward
    >>> x = np.random.default_rng(0).normal(size=(2, 3, 5))
    >>> y, cache = instance_norm_forward(x, np.ones(3), np.zeros(3))
    >>> dx, dgamma, dbeta = instance_norm_backward(np.ones_like(y), cache)
    >>> np.allclose(dx, 0), dbeta
    (True, array([10., 10., 10.]))
    """
    _check_cache(cache, PerSampleCache, "instance_norm_backward", ("instance_norm",))
    return _per_sample_backward(dy, cache)
