"""The NumPy backend: in-memory arrays on the CPU.

The general path validates ``X``, lays it out as the kernels' 3-D view
(:class:`skbn._core.views.Layout`) and runs the routines of
:mod:`skbn._core`.  A streaming loop calls ``partial_fit``,
``partial_fit_transform`` and ``transform`` thousands of times on batches of
a few hundred rows, where the general path's Python steps cost several times
the arithmetic; for the most common such input (:func:`small_input`) one
compiled call does the whole step (:func:`small_train`, :func:`small_apply`),
with the same kernels and therefore the same bits.
"""

import math

import numpy as np

from .. import _config
from .._core import moments as core_moments
from .._core import norm, plan
from .._core.views import Layout, kernel_dtype
from .._kernels import cpu
from .._validation import FLOAT_TYPES, validate_sample_weight, validate_X

NAME = "numpy"
# What a training step writes (see skbn._kernels.cpu.small_train).
WRITE_NOTHING = cpu.WRITE_NOTHING
WRITE_BY_BATCH = cpu.WRITE_BY_BATCH
WRITE_BY_RUNNING = cpu.WRITE_BY_RUNNING

# Inputs below this many elements may take the small-batch path; larger ones
# are bound by memory, not by overhead.
SMALL_ELEMENTS = 1 << 17
# Numba types every argument, also an unused output: a writable array of the
# input's dtype.
_NO_OUT = {t: np.empty((0, 0), t) for t in FLOAT_TYPES}


def validate(X, spec, *, reset):
    """Check ``X`` and lay it out for the kernels.

    Parameters
    ----------
    X : array-like
    spec : skbn._validation.Spec
    reset : bool
        True in the first fit.

    Returns
    -------
    layout : Layout
    n_features : int
    """
    X, axes, n_features = validate_X(X, spec, reset=reset)
    return Layout(X, axes), n_features


def moments(layout, sample_weight, feature_names=None):
    """Moments of a validated batch (weights checked here).

    Returns
    -------
    skbn._core.moments.Moments
    """
    w = _weights(sample_weight, layout)
    return core_moments.moments(layout, w, feature_names)


def _weights(sample_weight, layout):
    if sample_weight is None:
        return None
    # validate_sample_weight reads only the sample count of X.
    return validate_sample_weight(
        sample_weight, np.empty((layout.shape[0], 0)), layout.axes
    )


def train_forward(layout, sample_weight, gamma, beta, eps, feature_names=None):
    """The batch's moments, and the batch normalized by them.

    Returns
    -------
    batch : Moments
    y : ndarray in the input's shape
    """
    batch = moments(layout, sample_weight, feature_names)
    scale, offset = norm.coefficients(batch.var, gamma, beta, eps)
    return batch, norm.affine(layout, batch.mean, scale, offset, None, feature_names)


def train_normalize(
    layout, sample_weight, gamma, beta, eps, running, renorm, vbs, feature_names=None
):
    """Training mode with Batch Renormalization or ghost batches.

    See :func:`skbn._core.norm.train_normalize`.
    """
    w = _weights(sample_weight, layout)
    return norm.train_normalize(
        layout, w, gamma, beta, eps, running, renorm, vbs, feature_names
    )


def output_buffer(layout, copy, feature_names=None):
    """Where :func:`normalize` may write for ``copy=False``: the view of
    ``layout.elementwise``.

    Writing there is writing into ``X`` when it is a view of it (any
    permutation of a contiguous array whose feature axes sit side by side in
    memory), or into a private converted copy otherwise; either honours
    ``copy=False``.  float16 input gets a new array.
    An infinite input must raise before anything is overwritten (the kernel
    finds it only while writing), so it is looked for first.

    Returns
    -------
    ndarray or None
    """
    if copy or layout.dtype != kernel_dtype(layout.dtype):
        return None  # float16 is computed in a float64 copy
    v3 = layout.elementwise()[0]
    if not v3.flags.writeable:
        return None
    core_moments.check_no_inf(v3, feature_names)
    return v3


def normalize(layout, shift, scale, offset, out=None, feature_names=None):
    """``(x - shift) * scale + offset`` per feature (see
    :func:`skbn._core.norm.affine`)."""
    return norm.affine(layout, shift, scale, offset, out, feature_names)


# -- small batches: one compiled call --


def small_input(X):
    """Whether ``X`` is input the one-call path takes: a C-contiguous 2-D
    float ndarray in native byte order, small, whose rows are wide enough
    not to be folded (the configuration the general path runs with the
    serial rows kernels and one task)."""
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype.type in FLOAT_TYPES
        and X.dtype.isnative
        and X.flags.c_contiguous
        and 0 < X.size < SMALL_ELEMENTS
        and X.size < _config.MIN_PARALLEL_ELEMENTS
        and plan.fold(X.shape[0], X.shape[1]) == 1
    )


def small_train(X, running, momentum, ema, gamma, beta, eps, output):
    """Fold the batch ``X`` into running statistics in one compiled call and,
    with ``output``, normalize it.

    Parameters
    ----------
    X : ndarray
        Passed :func:`small_input`.
    running : tuple of ndarray
        ``(mean, var, seen)`` before the batch, float64 ``(n_features,)``.
    momentum : float or None
    ema : {"batch", "mixture"}
        The running-statistics update (see
        :func:`skbn._core.moments.ema_update`).
    gamma, beta : ndarray of shape (n_features,)
        The scale and shift as applied.
    eps : float
    output : int
        :data:`WRITE_NOTHING`, :data:`WRITE_BY_BATCH` (the
        training mode) or :data:`WRITE_BY_RUNNING` (``fit_transform``).

    Returns
    -------
    tuple or None
        ``(mean, var, seen, y)`` (``y`` None without output); None when the
        batch holds NaN or infinity or the update overflows (nothing
        changed: the general path handles it).
    """
    out = None if output == WRITE_NOTHING else np.empty_like(X)
    ok, mean, var, seen = cpu.small_train(
        X,
        plan.block_rows(X.shape[1], X.itemsize),
        *running,
        core_moments.momentum_code(momentum),
        ema == core_moments.EMA_MIXTURE,
        (gamma, beta, float(eps), True, True),
        _NO_OUT[X.dtype.type] if out is None else out,
        output,
    )
    return (mean, var, seen, out) if ok else None


def small_apply(X, mean, var, gamma, beta, eps):
    """Inference-mode normalize of a :func:`small_input` batch in one
    compiled call; None when it holds NaN or infinity (the general path
    keeps NaN and raises for infinity)."""
    out = np.empty_like(X)
    flag = cpu.small_apply(
        X,
        plan.block_rows(X.shape[1], X.itemsize),
        mean,
        var,
        (gamma, beta, float(eps), True, True),
        out,
    )
    return out if math.isfinite(flag) else None
