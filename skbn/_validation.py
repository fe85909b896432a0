"""Input checks shared by every skbn estimator and path.

The general path is scikit-learn's own (``check_array``, feature-name checks,
``check_sample_weight``), so messages and semantics match what sklearn users
know.  A fast path skips it for the input a streaming loop sends thousands of
times: a float16/float32/float64 ``ndarray`` of the fitted shape, from an
estimator fitted without feature names.  Both paths accept and reject the same
inputs.
"""

import datetime
from collections.abc import Callable
from math import prod
from typing import Any, NamedTuple

import numpy as np
from sklearn.utils.validation import check_array

from ._core.views import normalize_axis
from ._sklearn_compat import check_feature_names, check_sample_weight

# The dtypes the kernels compile for.
FLOAT_TYPES = (np.float32, np.float64)
# The dtypes kept from input to output: float16 is read as float64 (exactly)
# and results are rounded back once (skbn._core.views.Layout).
KEPT_TYPES = (np.float16, np.float32, np.float64)


class Spec(NamedTuple):
    """What the input checks need to know of an estimator, and nothing more.

    Made by the estimator for each call, so that the checks (and the
    backends that run them) never read the estimator itself.

    Attributes
    ----------
    owner : str
        The estimator's class name, for messages.
    axis : int or tuple of int
        The ``axis`` parameter now.
    fitted : tuple or None
        ``(axis, axes, ndim, n_features)`` of the fit; None before it.
    check_names : callable
        ``check_names(X, reset)``: scikit-learn's feature-name check
        (records ``feature_names_in_`` on reset, warns on a mismatch).
    with_mean : bool
        Whether the normalize step subtracts a mean, which input that must
        keep its zeros (scipy.sparse) refuses.
    """

    owner: str
    axis: Any
    fitted: tuple | None
    check_names: Callable[[Any, bool], None]
    with_mean: bool = True


class SpecMixin:
    """``_spec``: an estimator's :class:`Spec`, from the fitted attributes
    ``_fit_axis``, ``_axes``, ``_ndim`` and ``n_features_in_``."""

    def _spec(self, reset: bool) -> Spec:
        fitted = None
        if not reset:
            fitted = (self._fit_axis, self._axes, self._ndim, self.n_features_in_)
        # The per-sample normalizers always subtract their mean.
        with_mean = bool(getattr(self, "with_mean", True))
        return Spec(
            type(self).__name__, self.axis, fitted, self._check_names, with_mean
        )

    def _check_names(self, X: Any, reset: bool) -> None:
        if type(X) is np.ndarray and (
            reset or "feature_names_in_" not in self.__dict__
        ):
            # No column names to record or compare: what scikit-learn's check
            # does here, without its cost (~100 µs, a small batch's work).
            self.__dict__.pop("feature_names_in_", None)
            return
        check_feature_names(self, X, reset=reset)


def _feature_count_error(spec, n_features):
    return ValueError(
        f"X has {n_features} features, but {spec.owner} is expecting "
        f"{spec.fitted[3]} features as input."
    )


def validate_X(X, spec, *, reset):
    """Check ``X`` and return it as an ndarray with its feature axes.

    Parameters
    ----------
    X : array-like
        Input data, at least 2-D.
    spec : Spec
        The estimator's ``axis`` and, unless ``reset``, its fitted layout.
    reset : bool
        True in the first fit: feature names are (re)recorded.

    Returns
    -------
    X : ndarray of float16, float32 or float64
        Of ``X``'s memory layout (not copied to C order).
    axes : tuple of int
    n_features : int
    """
    _check_axis_unchanged(spec, reset)
    if isinstance(X, np.ndarray) and not X.dtype.isnative and X.dtype.kind in "biufc":
        # Big-endian data (from a file, say): the kernels read native byte
        # order only.  Same precision, so float32 stays float32.
        X = X.astype(X.dtype.newbyteorder("="))
    if type(X) is np.ndarray and X.dtype.type in KEPT_TYPES and X.size:
        # What check_array would do to a plain float ndarray, without its
        # cost (~150 µs, more than the work on a small batch): nothing to
        # convert.
        if reset and X.ndim >= 2:
            spec.check_names(X, reset)
            axes = normalize_axis(spec.axis, X.ndim)
            return X, axes, prod([X.shape[a] for a in axes])
        if not reset and X.ndim == spec.fitted[2]:
            spec.check_names(X, reset)
            axes = spec.fitted[1]
            n_features = prod([X.shape[a] for a in axes])
            if n_features != spec.fitted[3]:
                raise _feature_count_error(spec, n_features)
            return X, axes, n_features

    check_numeric(X)
    spec.check_names(X, reset)
    X = check_array(
        X,
        # float32 in any container stays float32, as for a NumPy array;
        # float16 stays float16; anything else becomes float64.
        dtype=np.float32 if _is_float32(X) else [np.float64, np.float32, np.float16],
        ensure_all_finite=False,
        allow_nd=True,
        estimator=spec.owner,
        input_name="X",
    )
    if X.size == 0:
        raise ValueError(
            f"Found array with 0 elements (shape={X.shape}) while "
            f"{spec.owner} needs at least one value per feature."
        )
    axes, n_features = _feature_axes(spec, X.shape, reset)
    return X, axes, n_features


# Python values that check_array would convert silently (float("1.5")) or
# that are no numbers (dates): refused inside object arrays and columns.
_NOT_NUMBERS = (str, bytes, datetime.date, datetime.time, datetime.timedelta)


def _refuse(dtype, what=""):
    raise TypeError(
        f"X must hold real numbers; got {what}dtype {dtype}; strings, dates "
        "and durations are refused on every path, even when they look "
        "numeric; convert X to a numeric dtype first."
    )


def check_dtype_kind(dtype):
    """Refuse a NumPy ``dtype`` of strings, datetimes or durations.

    Parameters
    ----------
    dtype : numpy.dtype
    """
    if np.dtype(dtype).kind in "USMmV":
        _refuse(dtype)


def check_numeric(X, name="X"):
    """One rule for every container: refuse strings, datetimes, timedeltas.

    NumPy arrays of those dtypes, object arrays or lists holding a string or
    a date, and DataFrame columns (pandas, polars) of string, object-with-
    strings, date or duration type all raise ``TypeError`` naming the dtype.
    Numbers of any real dtype, and object arrays of numbers, pass.  Only
    object data is scanned value by value, and it is converted value by
    value anyway.

    Parameters
    ----------
    X : array-like
    name : str, default="X"
        The argument's name, for the message.
    """
    if name == "X":
        _check_numeric(X)
        return
    try:
        _check_numeric(X)
    except TypeError as exc:
        # The same message, naming the caller's argument (functional's x).
        raise TypeError(f"{name}{str(exc)[1:]}") from None


def _check_numeric(X):
    columns = getattr(X, "dtypes", None)
    if columns is not None and not isinstance(columns, np.dtype):
        # A DataFrame: pandas (a Series of dtypes) or polars (a list).
        values = columns.values if hasattr(columns, "values") else columns
        for i, col_dtype in enumerate(values):
            _check_column(X, i, col_dtype)
        return
    dtype = getattr(X, "dtype", None)
    if dtype is None or isinstance(X, (list, tuple)):
        dtype = np.asarray(X).dtype if isinstance(X, (list, tuple)) else dtype
        if dtype is None:
            return
        if dtype.kind == "O":
            _scan_objects(np.asarray(X, dtype=object), dtype)
    if not isinstance(dtype, np.dtype):
        # A pandas Series or a polars Series: its column rule.
        _check_column(None, None, dtype, X)
        return
    check_dtype_kind(dtype)
    if dtype.kind == "O" and isinstance(X, np.ndarray):
        _scan_objects(X, dtype)


def _is_float32(X):
    """Whether ``X`` is float32 data in a container that check_array would
    otherwise cast to float64: a pandas or polars frame whose columns are
    all float32 (``Float32`` extension dtype included), a CPU torch tensor."""
    columns = getattr(X, "dtypes", None)
    if columns is not None and not isinstance(columns, np.dtype):
        values = list(columns.values if hasattr(columns, "values") else columns)
        return bool(values) and all(str(d) in ("float32", "Float32") for d in values)
    dtype = getattr(X, "dtype", None)
    if str(dtype) in ("Float32", "torch.float32"):
        device = getattr(X, "device", None)
        return device is None or getattr(device, "type", "cpu") == "cpu"
    return False


def _scan_objects(arr, dtype):
    for v in arr.reshape(-1):
        if isinstance(v, _NOT_NUMBERS) or isinstance(
            v, (np.datetime64, np.timedelta64)
        ):
            _refuse(dtype, f"{type(v).__name__} values in an array of ")


def _check_column(frame, i, col_dtype, series=None):
    name = str(col_dtype)
    kind = getattr(col_dtype, "kind", None)
    if isinstance(kind, str) and len(kind) == 1 and kind in "USMmV":
        _refuse(col_dtype, "a column of ")
    lowered = name.lower()
    if any(
        t in lowered
        for t in ("str", "utf8", "date", "time", "duration", "categorical", "enum")
    ):
        _refuse(col_dtype, "a column of ")
    if kind == "O" or lowered == "object":
        col = series if series is not None else frame.iloc[:, i]
        _scan_objects(np.asarray(col, dtype=object), col_dtype)


def _check_axis_unchanged(spec, reset):
    if not reset and spec.axis != spec.fitted[0]:
        raise ValueError(
            f"axis was changed from {spec.fitted[0]!r} to {spec.axis!r} after "
            f"fitting; call fit to use the new axis."
        )


def _feature_axes(spec, shape, reset):
    """Feature axes and count of data of ``shape``, checked against the fit."""
    if reset:
        axes = normalize_axis(spec.axis, len(shape))
    else:
        _, axes, ndim, _ = spec.fitted
        if len(shape) != ndim:
            raise ValueError(
                f"X has {len(shape)} dimensions, but {spec.owner} was "
                f"fitted on {ndim}-dimensional data."
            )
    n_features = prod([shape[a] for a in axes])
    if not reset and n_features != spec.fitted[3]:
        raise _feature_count_error(spec, n_features)
    return axes, n_features


def validate_metadata(X, shape, dtype, spec, *, reset, kind):
    """:func:`validate_X` for data that must not be read: dask, CUDA arrays.

    The same rules and messages, checked on the shape and dtype alone.

    Parameters
    ----------
    X : object
        The array, for its (absent) column names.
    shape : tuple of int
    dtype : numpy.dtype
    spec : Spec
    reset : bool
    kind : str
        What ``X`` is, for the messages, e.g. ``"dask array"``.

    Returns
    -------
    axes : tuple of int
    n_features : int
    """
    _check_axis_unchanged(spec, reset)
    check_dtype_kind(dtype)
    if dtype.kind == "O":
        # Object data cannot be scanned for strings without reading it; the
        # rule for lazy and device data is to refuse it.
        _refuse(dtype, f"a {kind} of ")
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
            f"{spec.owner} needs at least one value per feature."
        )
    # Such arrays have no column names: this drops names on reset and warns
    # when the estimator was fitted on a DataFrame, as for an ndarray.
    spec.check_names(X, reset)
    return _feature_axes(spec, shape, reset)


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
    w = check_sample_weight(
        sample_weight,
        X,
        dtype=np.float64,
        ensure_non_negative=True,
        allow_all_zero_weights=True,
    )
    # sklearn checks an array of weights for NaN and inf, but broadcasts a
    # scalar unchecked: a NaN would surface later as an error about X.
    if not np.isfinite(w).all():
        raise ValueError(
            f"sample_weight must be finite; got {sample_weight!r}"
            if np.ndim(sample_weight) == 0
            else "sample_weight must be finite; got an array with NaN or infinity."
        )
    check_weight_total(w.sum())
    return w


def check_weight_total(total):
    """Refuse a batch whose weights are all zero, on every path.

    A batch of zero weight carries no statistics; it would still count as a
    batch seen.  The dask path calls this with the weight sum it computes
    together with the moments.

    Parameters
    ----------
    total : float
        The sum of the (already checked non-negative) weights.
    """
    if not total > 0:
        raise ValueError(
            "sample_weight must contain at least one non-zero weight; got "
            "weights that are all zero."
        )


def as_float_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a float16/float32/float64 ndarray, at least 2-D, not empty
    (the functional API's input rule), in its own memory layout.

    Parameters
    ----------
    x : array-like
    name : str
        The argument's name, for messages.

    Returns
    -------
    ndarray
    """
    check_numeric(x, name)  # the estimators' rule: no strings, dates, durations
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize in (2, 4, 8):
        if not arr.dtype.isnative:  # Numba kernels read native byte order only
            arr = arr.astype(arr.dtype.newbyteorder("="))
    elif kind in "biuf":
        arr = arr.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must hold real numbers (float16, float32 or float64); got dtype "
            f"{arr.dtype}."
        )
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions (samples, features); got "
            f"shape {arr.shape}."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    return arr


def as_grad(dy: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``dy`` as an array of the forward input's shape and dtype (in its own
    memory layout).

    Parameters
    ----------
    dy : array-like
    shape : tuple of int
    dtype : numpy.dtype

    Returns
    -------
    ndarray
    """
    arr = np.asarray(dy)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"dy must hold real numbers; got dtype {arr.dtype}.")
    if arr.shape != shape:
        raise ValueError(
            f"dy has shape {arr.shape}, but the forward input had shape {shape}."
        )
    return arr.astype(dtype, copy=False)
