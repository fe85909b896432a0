"""Each parameter's rule, once: the estimators' ``_parameter_constraints``
and the functional API's argument checks are made from the same objects.

The estimators validate through scikit-learn's ``_validate_params`` (its
messages: "The 'eps' parameter of BatchNormalizer must be ..."); the
functions of :mod:`skbn.functional` call :func:`check` on the same
constraint, with a message that names the argument as a function's
argument ("eps must be a finite float > 0").
"""

import math
from numbers import Integral, Real

import numpy as np

from ._core.moments import EMA_MODES
from ._fitted import feature_vector
from ._sklearn_compat import Interval, StrOptions

EPS = Interval(Real, 0, math.inf, closed="neither")
MOMENTUM = Interval(Real, 0, 1, closed="both")
POSITIVE_INT = Interval(Integral, 1, None, closed="left")
EMA = StrOptions(set(EMA_MODES))

#: ``BatchNormalizer``'s constraints.
BATCH_NORM = {
    "momentum": [MOMENTUM, None],
    "ema": [EMA],
    "eps": [EPS],
    "axis": [Integral, tuple],
    "with_mean": ["boolean"],
    "with_std": ["boolean"],
    "center": ["boolean"],
    "scale": ["boolean"],
    "gamma": [Real, "array-like"],
    "beta": [Real, "array-like"],
    "copy": ["boolean"],
    "device": [StrOptions({"auto", "cpu", "cuda"})],
    "track_batch_stats": ["boolean"],
    "max_batch_stats": [POSITIVE_INT],
    "renorm": [tuple, None],
    "virtual_batch_size": [POSITIVE_INT, None],
}

#: The per-sample normalizers' constraints (``LayerNormalizer`` also takes a
#: tuple ``axis``, ``GroupNormalizer`` an ``n_groups``).
PER_SAMPLE = {
    "eps": [EPS],
    "axis": [Integral],
    "gamma": [Real, "array-like", None],
    "beta": [Real, "array-like", None],
}
LAYER_AXIS = [Integral, tuple]
N_GROUPS = [POSITIVE_INT]


def check(name, value, constraint, expected, invalid):
    """A real-number argument of a function, checked by an estimator's rule.

    Parameters
    ----------
    name : str
        The argument's name.
    value : object
    constraint : Interval
        One of this module's constraints.
    expected : str
        What ``value`` must be, for the ``TypeError`` of a non-number.
    invalid : str
        What ``value`` must be, for the ``ValueError`` of a number outside
        the constraint.

    Returns
    -------
    float
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}; got {value!r}.")
    if not constraint.is_satisfied_by(value):
        raise ValueError(f"{name} must be {invalid}; got {value!r}.")
    return float(value)


def check_eps(eps):
    """``eps`` of a function: a finite float > 0 (the rule of :data:`EPS`)."""
    return check("eps", eps, EPS, "a float > 0", "a finite float > 0")


def check_momentum(momentum):
    """``momentum`` of a function: a float in [0, 1] (:data:`MOMENTUM`)."""
    return check("momentum", momentum, MOMENTUM, "a float in [0, 1]", "in [0, 1]")


def check_ema(ema):
    """``ema`` of a function: one of :data:`skbn._core.moments.EMA_MODES`."""
    if not isinstance(ema, str):
        raise TypeError(f"ema must be 'batch' or 'mixture'; got {ema!r}.")
    if not EMA.is_satisfied_by(ema):
        raise ValueError(f"ema must be 'batch' or 'mixture'; got {ema!r}.")
    return ema


def check_training(training):
    """``training`` of a function: True or False."""
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False; got {training!r}.")
    return bool(training)


def check_renorm(renorm):
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


def check_virtual_batch_size(vbs, n_samples, axes):
    """Validate ``virtual_batch_size`` for a batch of ``n_samples`` samples
    along axis 0 with feature axes ``axes``; return it as an int, or None.

    Parameters
    ----------
    vbs : int or None
    n_samples : int
    axes : tuple of int

    Returns
    -------
    int or None
    """
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


def affine_vector(value, n, name):
    """A ``gamma``/``beta`` argument as a float64 vector of ``n`` values (or
    None for None).

    Parameters
    ----------
    value : None, float or array-like
    n : int
    name : str

    Returns
    -------
    ndarray of shape (n,) or None
    """
    if value is None:
        return None
    return feature_vector(
        value, n, name, expected="None, a float or one float per feature"
    )


def running_buffers(running_mean, running_var, d, x=None, write=False):
    """Validate running statistics that are updated in place; float64 copies.

    With ``write`` (training mode updates them) both buffers are checked to
    be writable, apart from each other and from the input ``x`` before
    either is written, so a call that raises writes neither.

    Parameters
    ----------
    running_mean, running_var : ndarray or None
        Both or neither.
    d : int
        Number of features.
    x : ndarray, optional
        The input, which they must not overlap.
    write : bool

    Returns
    -------
    tuple of ndarray or None
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
    return out[0], out[1]
