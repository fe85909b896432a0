"""Checks of the per-feature vectors: a parameter broadcast to one value per
feature (``gamma``, ``beta``), and the fitted vectors (``running_mean_``,
``running_var_``, ...) that a training loop may assign, checked before any
kernel reads them so that no kernel reads out of bounds.
"""

import math
from numbers import Integral, Real

import numpy as np

from ._kernels.checks import first_invalid


def feature_vector(
    value, n_features, name, *, expected="a float or one float per feature"
):
    """Broadcast a scalar or per-feature parameter to a float64 vector.

    Parameters
    ----------
    value : float or array-like
    n_features : int
    name : str
        Parameter name for the error message.
    expected : str
        What ``value`` may be, for the error message.

    Returns
    -------
    ndarray of shape (n_features,)
    """
    if type(value) in (float, int) and math.isfinite(value):
        return np.full(n_features, float(value))  # the common case, fast
    arr = _float_array(value, name, expected)
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


def _float_array(value, name, expected):
    """``value`` as a float64 array, or a ``TypeError`` naming ``name``.

    Refuses what NumPy would parse or coerce silently (strings, ``None``
    inside a list, objects, complex numbers, datetimes), and what it cannot
    convert (a tensor on a GPU, one that requires grad).
    """
    what = f"{type(value).__name__} {value!r}"
    if len(what) > 80:
        what = what[:77] + "..."
    try:
        arr = np.asarray(value)
    except Exception as exc:  # a tensor that refuses __array__, ...
        raise TypeError(
            f"{name} must be {expected}; got {what}, which NumPy cannot read "
            f"({type(exc).__name__}: {exc})."
        ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be {expected}; got {what} (dtype {arr.dtype}).")
    return arr.astype(np.float64)


# The vectors of a fitted BatchNormalizer that its kernels read, in the order
# of skbn._kernels.checks.first_invalid.  The first four are public and a
# training loop may assign or update them; _seen is saved in state files.
FITTED_VECTORS = ("running_mean_", "running_var_", "gamma_", "beta_", "_seen")
_F64 = np.dtype(np.float64)


def _fitted_vector(attrs, owner, name, n):
    """The fitted vector ``attrs[name]`` converted to float64 ``(n,)``."""
    if name not in attrs:
        raise ValueError(
            f"{owner} has no {name}: its fitted state is incomplete; fit it "
            "again (or load a complete state)."
        )
    arr = _float_array(attrs[name], name, f"a float or an array of {n} floats")
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},), one value per feature "
            f"(n_features_in_={n}); got shape {arr.shape}."
        )
    return np.ascontiguousarray(arr)


def check_fitted_vectors(est):
    """Check the fitted vectors of ``est`` before a kernel reads them.

    The kernels index ``running_mean_``, ``running_var_``, ``gamma_``,
    ``beta_`` (and the private per-feature counts ``_seen``) by feature
    without bounds checks, so every call that reaches a kernel passes here
    first.  Each vector must be a float64 array of shape
    ``(n_features_in_,)``: a scalar is broadcast; a list, another float dtype
    or a CPU tensor is converted (the converted array replaces the
    attribute); anything else raises.  Every value must be finite, and
    ``running_var_`` and the counts non-negative.

    Nothing is assigned unless every vector passes.

    Parameters
    ----------
    est : BatchNormalizer
        A fitted estimator.

    Raises
    ------
    ValueError
        A vector of the wrong shape, a missing vector, a non-finite value, a
        negative variance or count, or a bad ``n_features_in_``.
    TypeError
        A vector that is not made of real numbers.
    """
    check_vector_state(est.__dict__, type(est).__name__)


def check_vector_state(attrs, owner):
    """:func:`check_fitted_vectors` on a mapping of fitted attributes.

    For state that is not yet an estimator's (a file being loaded); converted
    vectors replace their entries in ``attrs``.

    Parameters
    ----------
    attrs : dict
        Holds ``n_features_in_`` and the vectors of :data:`FITTED_VECTORS`.
    owner : str
        The estimator's class name, for the messages.
    """
    n = attrs.get("n_features_in_")
    if type(n) is not int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"n_features_in_ must be a positive int; got {n!r}.")
        n = int(n)
    if n < 1:
        raise ValueError(f"n_features_in_ must be a positive int; got {n!r}.")
    vectors = [attrs.get(name) for name in FITTED_VECTORS]
    fast = all(
        type(v) is np.ndarray
        and v.dtype == _F64
        and v.shape == (n,)
        and v.flags.c_contiguous
        for v in vectors
    )
    if not fast:
        vectors = [_fitted_vector(attrs, owner, name, n) for name in FITTED_VECTORS]
    which, j = first_invalid(*vectors)
    if which >= 0:
        name = FITTED_VECTORS[which]
        must = "finite and non-negative" if which in (1, 4) else "finite"
        raise ValueError(
            f"{name} must be {must}; got {name}[{j}] = {float(vectors[which][j])!r}."
        )
    if not fast:
        attrs.update(zip(FITTED_VECTORS, vectors, strict=True))


def check_samples_seen(seen, n):
    """Refuse an ``n_samples_seen_`` that no fit leaves (a training loop or a
    state file may set it): it must be a non-negative count, or an array of
    ``n`` of them (see :func:`skbn._core.moments.samples_seen`; a sum of
    sample weights need not be whole).

    Parameters
    ----------
    seen : object
    n : int
        The number of features.
    """
    if type(seen) is int and seen >= 0:
        return  # the common case, first: a streaming loop checks it often
    if isinstance(seen, np.ndarray):
        ok = (
            seen.shape == (n,)
            and seen.dtype.kind in "iuf"
            and bool(np.all(np.isfinite(seen) & (seen >= 0)))
        )
        what = f"an array of {n} non-negative counts"
    else:
        ok = (
            isinstance(seen, Real)
            and not isinstance(seen, bool)
            and (isinstance(seen, Integral) or math.isfinite(seen))
            and seen >= 0
        )
        what = "a non-negative count"
    if not ok:
        raise ValueError(f"n_samples_seen_ must be {what}; got {seen!r}.")
