"""Forward and backward passes of the normalizations, for training loops.

NumPy in and out, float16, float32 or float64 (integer input is cast to
float64), any number of dimensions.  Outputs and gradients keep ``x``'s dtype
and memory order (as ``np.empty_like(x)``: a Fortran-ordered or channels-last
``x`` gives such ``y`` and ``dx``); ``dy`` may be in any layout and is cast to
``x``'s dtype.  float16 is computed in float64 and rounded once to float16
(``astype``); a value beyond float16's (float32's) range becomes ``inf``,
without a warning.  GPU arrays: float32 and float64 (float16 raises
``TypeError``).  Each ``*_forward`` returns the output and a ``cache``
that the matching ``*_backward`` turns, with the gradient of the loss with
respect to the output, into the gradients with respect to the input, ``gamma``
and ``beta``::

    y, cache = batch_norm_forward(x, gamma, beta, axis=-1)
    dx, dgamma, dbeta = batch_norm_backward(dy, cache)

The statistics come from :func:`skbn._core.moments.moments`, the routine that
:class:`~skbn.BatchNormalizer` uses too: mergeable moments accumulated in
float64, bit-identical for any thread count.  The backward pass is the closed
form (see :mod:`skbn._kernels.cpu.backward`): one reduction and one fused pass
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

from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._backends import cuda
from ._core import norm
from ._core.caches import BatchNormCache, PerSampleCache, check_cache, shaped_grad
from ._core.groups import groups_backward, groups_normalize
from ._core.moments import ema_update
from ._core.views import (
    Layout,
    channel_view,
    kernel_dtype,
    layer_view,
    memory_order,
    normalize_axis,
    restore_view,
)
from ._docstrings import shared_docs
from ._params import (
    affine_vector,
    check_ema,
    check_eps,
    check_momentum,
    check_renorm,
    check_training,
    check_virtual_batch_size,
    running_buffers,
)
from ._validation import as_float_array, as_grad

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


# -- batch norm: public pair --


@shared_docs
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
    ema: str = "batch",
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
        Input, at least 2-D.  float16 and float32 stay so; other real dtypes
        are cast to float64.  It must hold no NaN or infinity.
    gamma, beta : float, array-like of shape (n_features,) or None
        Scale and shift, a scalar or one value per feature (flat, or in the
        shape of the feature axes, e.g. ``(C,)`` for ``axis=1``).  ``None``
        leaves the term out, and its gradient is ``None``.
    {{eps}}
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
    ema : {"batch", "mixture"}, default="batch"
        The running-statistics update, as in :class:`~skbn.BatchNormalizer`:
        ``"mixture"`` also adds ``momentum * (1 - momentum) * (mean_b -
        mean)**2`` to the running variance (right for small batches).
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
    y : ndarray of the shape, dtype and memory order of ``x``
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
    eps = check_eps(eps)
    momentum = check_momentum(momentum)
    ema = check_ema(ema)
    renorm = check_renorm(renorm)
    training = check_training(training)
    if cuda.is_cuda(x):
        layout = cuda.layout_of(x, axis)
    else:
        x = as_float_array(x, "x")
        layout = Layout(x, normalize_axis(axis, x.ndim))
    x3, axes = layout.x3, layout.axes
    n_feat = x3.shape[1]
    g = affine_vector(gamma, n_feat, "gamma")
    b = affine_vector(beta, n_feat, "beta")
    running = running_buffers(running_mean, running_var, n_feat, x, write=training)
    if not training and running is None:
        raise ValueError(
            "training=False normalizes by running_mean and running_var; pass both."
        )
    if training and renorm is not None and running is None:
        raise ValueError(
            "renorm needs the running statistics: pass running_mean and running_var."
        )
    n = layout.shape[0]
    vbs = check_virtual_batch_size(virtual_batch_size, n, axes) if training else None
    if vbs is not None and isinstance(layout, Layout):
        # Ghost batches are slices of the outer axis: C order.
        layout = layout.c_order()
    # One routine per place the data lives, same statistics and formulas.
    if isinstance(layout, Layout):
        y, stats, batch = norm.forward(
            layout, g, b, eps, running, renorm, vbs, training
        )
    else:
        y, stats, batch = cuda.forward(
            layout, g, b, eps, running, renorm, vbs, training
        )
    if batch is not None and running is not None:
        # seen = 1 everywhere: the arrays already hold statistics, so the
        # update is always the momentum one.
        old_mean, old_var = running
        new_mean, new_var, _ = ema_update(
            old_mean, old_var, np.ones(n_feat), batch, momentum, ema
        )
        # Written last, when nothing else can raise.
        assert running_mean is not None and running_var is not None
        running_mean[...] = new_mean.reshape(running_mean.shape)
        running_var[...] = new_var.reshape(running_var.shape)
    cache = BatchNormCache(
        layout,
        axes,
        stats.spans,
        stats.mean,
        stats.inv_std,
        g,
        stats.r,
        stats.d,
        training,
        None if gamma is None else np.shape(gamma),
        None if beta is None else np.shape(beta),
    )
    return y, cache


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
    dx : ndarray of the shape, dtype and memory order of ``x``
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
    check_cache(cache, BatchNormCache, "batch_norm_backward")
    layout = cache.layout
    x3 = layout.x3
    n_feat = x3.shape[1]
    gamma = np.ones(n_feat) if cache.gamma is None else cache.gamma
    if isinstance(layout, Layout):
        dy3 = layout.arrange(as_grad(dy, layout.shape, layout.dtype))
        stats = norm.SpanStats(cache.spans, cache.mean, cache.inv_std, cache.r, cache.d)
        dx3, dgamma, dbeta = norm.backward(x3, dy3, stats, gamma, cache.training)
        dx = layout.restore(dx3)
    else:
        dx, dgamma, dbeta = cuda.backward(
            layout, dy, cache.mean[0], cache.inv_std[0], gamma, cache.training
        )
    dtype = layout.dtype if isinstance(layout, Layout) else x3.dtype
    return (
        dx,
        shaped_grad(dgamma, cache.gamma_shape, dtype),
        shaped_grad(dbeta, cache.beta_shape, dtype),
    )


# -- per-sample norms --


def _per_sample_forward(
    kind: str, x: Any, view: Any, gamma: Any, beta: Any, eps: Any
) -> tuple[np.ndarray, "PerSampleCache"]:
    """The per-sample forward functions: ``view(x)`` is ``(x5, perm)``."""
    x = as_float_array(x, "x")
    eps = check_eps(eps)
    shape, dtype, order = x.shape, x.dtype, memory_order(x)
    x5, perm = view(np.ascontiguousarray(x, dtype=kernel_dtype(dtype)))
    n_ch = x5.shape[2] * x5.shape[3]
    g = affine_vector(gamma, n_ch, "gamma")
    b = affine_vector(beta, n_ch, "beta")
    y5, mean, inv_std = groups_normalize(x5, g, b, eps, training=True)
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
        order,
        dtype,
    )
    return restore_view(y5, shape, perm, order, dtype), cache


def _channels(x: np.ndarray, axis: Any, n_groups: Any) -> tuple[Any, None]:
    return channel_view(x, axis, n_groups), None


def _per_sample_backward(
    dy: Any, cache: Any
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    x5 = cache.x5
    dy = as_grad(dy, cache.shape, cache.dtype)
    if cache.perm is not None:
        dy = dy.transpose(cache.perm)
    dy5 = np.ascontiguousarray(dy, dtype=x5.dtype).reshape(x5.shape)
    dx5, dgamma, dbeta = groups_backward(
        x5, dy5, cache.mean, cache.inv_std, cache.gamma
    )
    dtype = cache.dtype
    return (
        restore_view(dx5, cache.shape, cache.perm, cache.order, dtype),
        shaped_grad(dgamma, cache.gamma_shape, dtype),
        shaped_grad(dbeta, cache.beta_shape, dtype),
    )


@shared_docs(backward="layer_norm_backward")
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
    {{eps}}
    axis : int or tuple of int, default=-1
        The axes normalized over (Keras' convention; PyTorch's
        ``normalized_shape`` is the trailing ones).  Not axis 0.

    {{per_sample_returns}}

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
    view = partial(layer_view, axis=axis)
    return _per_sample_forward("layer_norm", x, view, gamma, beta, eps)


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
    dx : ndarray of the shape, dtype and memory order of ``x``
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
    check_cache(cache, PerSampleCache, "layer_norm_backward", ("layer_norm",))
    return _per_sample_backward(dy, cache)


@shared_docs(backward="group_norm_backward")
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
    {{per_sample_x}}
    n_groups : int
        Number of groups; it must divide the number of channels.
    {{eps}}
    axis : int, default=1
        The channel axis: ``1`` for ``(N, C, H, W)`` (PyTorch), ``-1`` for
        channels-last (Keras).

    {{per_sample_returns}}

    Examples
    --------
    >>> import numpy as np
    >>> from skbn.functional import group_norm_forward
    >>> x = np.arange(16.0).reshape(1, 4, 2, 2)
    >>> y, _ = group_norm_forward(x, None, None, n_groups=2)
    >>> np.round(y[0, :, 0, 0], 4)  # first pixel of each channel
    array([-1.5275,  0.2182, -1.5275,  0.2182])
    """
    view = partial(_channels, axis=axis, n_groups=n_groups)
    return _per_sample_forward("group_norm", x, view, gamma, beta, eps)


def group_norm_backward(
    dy: ArrayLike, cache: "PerSampleCache"
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Group normalization, backward pass.

    :func:`layer_norm_backward`'s closed form, per sample and group: refer
    to it for the formula, the arguments and the result.  ``cache`` is the
    second output of :func:`group_norm_forward`.

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
    check_cache(cache, PerSampleCache, "group_norm_backward", ("group_norm",))
    return _per_sample_backward(dy, cache)


@shared_docs(backward="instance_norm_backward")
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
    {{per_sample_x}}
    {{eps}}
    axis : int, default=1
        The channel axis.

    {{per_sample_returns}}

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
    view = partial(_channels, axis=axis, n_groups=None)
    return _per_sample_forward("instance_norm", x, view, gamma, beta, eps)


def instance_norm_backward(
    dy: ArrayLike, cache: "PerSampleCache"
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Instance normalization, backward pass: :func:`group_norm_backward` with
    one channel per group, for the cache of :func:`instance_norm_forward`.

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
    check_cache(cache, PerSampleCache, "instance_norm_backward", ("instance_norm",))
    return _per_sample_backward(dy, cache)
