"""Input checks shared by every skbn estimator and path.

The general path is scikit-learn's own (``check_array``, feature-name checks,
``_check_sample_weight``), so messages and semantics match what sklearn users
know.  A fast path skips it for the input a streaming loop sends thousands of
times: a C-contiguous float32/float64 ``ndarray`` of the fitted shape, from an
estimator fitted without feature names.  Both paths accept and reject the same
inputs.
"""

import functools
import math
import threading
import weakref
from collections.abc import Callable
from math import prod
from typing import Any, TypeVar

import numpy as np
from sklearn.utils.validation import (
    _check_feature_names,
    _check_sample_weight,
    check_array,
)

from ._layout import normalize_axis

FLOAT_TYPES = (np.float32, np.float64)


def _feature_count_error(est, n_features):
    return ValueError(
        f"X has {n_features} features, but {type(est).__name__} is expecting "
        f"{est.n_features_in_} features as input."
    )


def validate_X(est, X, *, reset):
    """Check ``X`` for ``est`` and return it as an ndarray with its feature axes.

    Parameters
    ----------
    est : estimator
        Reads ``axis``; when ``reset`` is False also the fitted
        ``n_features_in_``, ``_axes`` and ``_ndim``.
    X : array-like
        Input data, at least 2-D.
    reset : bool
        True in the first fit: feature names are (re)recorded.

    Returns
    -------
    X : ndarray of float32 or float64
    axes : tuple of int
    n_features : int
    """
    _check_axis_unchanged(est, reset)
    if isinstance(X, np.ndarray) and not X.dtype.isnative and X.dtype.kind in "biufc":
        # Big-endian data (from a file, say): the kernels read native byte
        # order only.  Same precision, so float32 stays float32.
        X = X.astype(X.dtype.newbyteorder("="))
    if type(X) is np.ndarray and X.dtype.type in FLOAT_TYPES and X.size:
        # What check_array and the feature-name check would do to a plain
        # float ndarray, without their cost (~150 µs, more than the work on
        # a small batch): nothing to convert, no names to record.
        if reset and X.ndim >= 2:
            est.__dict__.pop("feature_names_in_", None)
            axes = normalize_axis(est.axis, X.ndim)
            return X, axes, prod([X.shape[a] for a in axes])
        if not reset and X.ndim == est._ndim and not hasattr(est, "feature_names_in_"):
            axes = est._axes
            n_features = prod([X.shape[a] for a in axes])
            if n_features != est.n_features_in_:
                raise _feature_count_error(est, n_features)
            return X, axes, n_features

    dtype = getattr(X, "dtype", None)
    if dtype is None and isinstance(X, (list, tuple)):
        dtype = np.asarray(X).dtype
    if dtype is not None and getattr(dtype, "kind", None) in ("U", "S"):
        # check_array would parse numeric strings silently.
        raise ValueError(
            f"X must hold numbers; got an array of strings (dtype {dtype}). "
            "Convert it to a numeric dtype first."
        )
    _check_feature_names(est, X, reset=reset)
    X = check_array(
        X,
        dtype=[np.float64, np.float32],
        ensure_all_finite=False,
        allow_nd=True,
        estimator=est,
        input_name="X",
    )
    if X.size == 0:
        raise ValueError(
            f"Found array with 0 elements (shape={X.shape}) while "
            f"{type(est).__name__} needs at least one value per feature."
        )
    axes, n_features = _feature_axes(est, X.shape, reset)
    return X, axes, n_features


def _check_axis_unchanged(est, reset):
    if not reset and est.axis != est._fit_axis:
        raise ValueError(
            f"axis was changed from {est._fit_axis!r} to {est.axis!r} after "
            f"fitting; call fit to use the new axis."
        )


def _feature_axes(est, shape, reset):
    """Feature axes and count of data of ``shape``, checked against the fit."""
    if reset:
        axes = normalize_axis(est.axis, len(shape))
    else:
        if len(shape) != est._ndim:
            raise ValueError(
                f"X has {len(shape)} dimensions, but {type(est).__name__} was "
                f"fitted on {est._ndim}-dimensional data."
            )
        axes = est._axes
    n_features = prod([shape[a] for a in axes])
    if not reset and n_features != est.n_features_in_:
        raise _feature_count_error(est, n_features)
    return axes, n_features


def validate_metadata(est, X, shape, dtype, *, reset, kind):
    """:func:`validate_X` for data that must not be read: dask, CUDA arrays.

    The same rules and messages, checked on the shape and dtype alone.

    Parameters
    ----------
    est : estimator
    X : object
        The array, for its (absent) column names.
    shape : tuple of int
    dtype : numpy.dtype
    reset : bool
    kind : str
        What ``X`` is, for the messages, e.g. ``"dask array"``.

    Returns
    -------
    axes : tuple of int
    n_features : int
    """
    _check_axis_unchanged(est, reset)
    if dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers; got a {kind} of dtype {dtype}.")
    if len(shape) < 2:
        raise ValueError(
            f"Expected a 2-D or N-D {kind}, got {len(shape)}-D with shape "
            f"{shape}; reshape it, e.g. X.reshape(-1, 1) for one feature."
        )
    if prod(shape) == 0:
        raise ValueError(
            f"Found array with 0 elements (shape={shape}) while "
            f"{type(est).__name__} needs at least one value per feature."
        )
    # Such arrays have no column names: this drops names on reset and warns
    # when the estimator was fitted on a DataFrame, as for an ndarray.
    _check_feature_names(est, X, reset=reset)
    return _feature_axes(est, shape, reset)


def validate_sample_weight(sample_weight, X, axes):
    """Return non-negative float64 weights of shape ``(n_samples,)``, or None.

    Parameters
    ----------
    sample_weight : array-like or None
    X : ndarray
    axes : tuple of int
        Feature axes; axis 0 must not be one of them.

    Returns
    -------
    ndarray or None
    """
    if sample_weight is None:
        return None
    if 0 in axes:
        raise ValueError(
            "sample_weight weighs samples along axis 0, but axis 0 is a feature "
            f"axis here (axis={axes}); drop sample_weight or choose another axis."
        )
    w = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    )
    # sklearn checks an array of weights for NaN and inf, but broadcasts a
    # scalar unchecked: a NaN would surface later as an error about X.
    if not np.isfinite(w).all():
        raise ValueError(
            "sample_weight must be finite; got "
            f"{sample_weight!r}" if np.ndim(sample_weight) == 0 else
            "sample_weight must be finite; got an array with NaN or infinity."
        )
    return w


def feature_vector(value, n_features, name):
    """Broadcast a scalar or per-feature parameter to a float64 vector.

    Parameters
    ----------
    value : float or array-like
    n_features : int
    name : str
        Parameter name for the error message.

    Returns
    -------
    ndarray of shape (n_features,)
    """
    if type(value) in (float, int) and math.isfinite(value):
        return np.full(n_features, float(value))  # the common case, fast
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_features, float(arr))
    else:
        arr = arr.reshape(-1)
        if arr.shape[0] != n_features:
            raise ValueError(
                f"{name} must be a scalar or have one value per feature "
                f"({n_features}); got {arr.shape[0]} values."
            )
        arr = arr.copy()
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got {value!r}.")
    return arr


# One reentrant lock per estimator, kept outside the estimator: it is no
# attribute, so it is invisible to get_params, clone, pickle and deepcopy, and
# a copy or an unpickled estimator gets a lock of its own.
_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_of(est):
    lock = _LOCKS.get(est)
    if lock is None:
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(est, threading.RLock())
    return lock


_Method = TypeVar("_Method", bound=Callable[..., Any])


def atomic(method: _Method) -> _Method:
    """Run ``method`` so that an exception leaves the estimator as it was.

    Every attribute is restored, including any that the method created or
    replaced before it raised.  skbn never modifies a fitted array in place,
    so a shallow copy of ``__dict__`` is a complete snapshot.

    Each call is also atomic with respect to other threads: it holds the
    estimator's own reentrant lock, so concurrent ``partial_fit`` calls on one
    estimator are applied one after the other (none is lost; their order is
    the order in which they acquire the lock), and ``transform`` never reads
    statistics that a concurrent fit has half-updated.  Calls on different
    estimators run in parallel.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _lock_of(self):
            saved = self.__dict__.copy()
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(saved)
                raise

    return wrapper
