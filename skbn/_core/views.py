"""How an N-D array and its axes map onto the kernels' views.

Batch norm's statistics are per feature and reduced over every other axis;
the per-sample norms (layer, group, instance) reduce within each sample.

* :class:`Layout`: the batch-norm view ``(outer, features, inner)``.
* :func:`layer_view` and :func:`channel_view`: the per-sample view
  ``(N, S1, G, Cg, S2)``, statistics per sample and group ``G``.

The kernels see a C-contiguous 3-D view ``(outer, features, inner)``: the
statistics are per ``features`` index and reduced over ``outer`` and
``inner``.  For C-contiguous input with a contiguous block of feature axes the
view is a reshape (no copy); for Fortran-ordered input with a single feature
axis it is a reshape of the transpose (no copy either, and the output comes
back Fortran-ordered).  Anything else is copied once into C order.
"""

from math import prod
from numbers import Integral

import numpy as np


def check_axis(axis):
    """Check that ``axis`` is an int or a non-empty tuple (or list) of ints.

    Parameters
    ----------
    axis : object

    Returns
    -------
    tuple of int
        The axes as given (negative values not resolved).
    """
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return (axis,)
    if not isinstance(axis, (tuple, list)) or not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis
    ):
        raise TypeError(f"axis must be an int or a tuple of ints; got {axis!r}.")
    if len(axis) == 0:
        raise ValueError("axis must name at least one feature axis; got axis=().")
    return tuple(axis)


def normalize_axis(axis, ndim):
    """Return the feature axes as a sorted tuple of non-negative ints.

    Parameters
    ----------
    axis : int or tuple of int
        Feature axis or axes, negative values counting from the end.
    ndim : int
        Number of dimensions of the data.

    Returns
    -------
    tuple of int
    """
    if type(axis) is int and -ndim <= axis < ndim and ndim > 1:
        return (axis % ndim,)  # the common case, fast
    axes = check_axis(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"axis={axis!r} is out of bounds for X with {ndim} dimensions."
            )
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis={axis!r} names the same dimension twice.")
    if len(out) == ndim:
        raise ValueError(
            f"axis={axis!r} leaves no dimension to reduce over in X with {ndim} "
            "dimensions."
        )
    return tuple(sorted(out))


class Layout:
    """A 3-D kernel view of ``X`` and the way back to ``X``'s shape.

    Attributes
    ----------
    x3 : ndarray of shape (outer, n_features, inner)
        C-contiguous view (or copy) of ``X``.
    rows : bool
        True when ``inner == 1``: the kernels then use the per-row layout.
    shape : tuple of int
        The shape of ``X``.
    axes : tuple of int
        The feature axes of ``X``.
    """

    __slots__ = ("x3", "rows", "shape", "axes", "transposed", "perm")

    def __init__(self, X, axes):
        self.shape = X.shape
        self.axes = axes
        lo, hi = axes[0], axes[-1]
        contiguous_block = hi - lo + 1 == len(axes)
        self.transposed = False
        self.perm = None
        if contiguous_block and X.flags.c_contiguous:
            src = X
        elif len(axes) == 1 and X.flags.f_contiguous:
            # The transpose of an F-ordered array is C-ordered; the feature
            # axis keeps one axis, now counted from the other end.
            src = X.T
            lo = hi = X.ndim - 1 - axes[0]
            self.transposed = True
        elif contiguous_block:
            src = np.ascontiguousarray(X)
        else:
            # Move the feature axes to the end (keeping their order), once.
            perm = [a for a in range(X.ndim) if a not in axes] + list(axes)
            src = np.ascontiguousarray(X.transpose(perm))
            lo, hi = X.ndim - len(axes), X.ndim - 1
            self.perm = perm
        shape = src.shape
        outer, inner = prod(shape[:lo]), prod(shape[hi + 1 :])
        self.x3 = src.reshape(outer, prod(shape[lo : hi + 1]), inner)
        self.rows = self.x3.shape[2] == 1

    def weights(self, sample_weight):
        """Expand per-sample weights to the ``(outer, inner)`` reduced grid."""
        outer, _, inner = self.x3.shape
        n = self.shape[0]
        if self.transposed:
            # Sample axis 0 of X is the fastest part of ``inner``: tile.
            w = np.tile(sample_weight, inner // n)
            return np.broadcast_to(w[None, :], (outer, inner))
        # Otherwise it is the slowest part of ``outer``: repeat.
        w = np.repeat(sample_weight, outer // n)
        return np.broadcast_to(w[:, None], (outer, inner))

    def restore(self, y3):
        """Give a result of the view's shape ``X``'s shape (and order)."""
        if self.transposed:
            return y3.reshape(self.shape[::-1]).T
        if self.perm is not None:
            moved = tuple(self.shape[a] for a in self.perm)
            return y3.reshape(moved).transpose(np.argsort(self.perm))
        return y3.reshape(self.shape)


def layer_view(x, axis):
    """``x`` as ``(rows, 1, 1, K, 1)`` with the normalized axes last.

    Parameters
    ----------
    x : ndarray
        C-contiguous.
    axis : int or tuple of int
        The axes layer norm normalizes over (not axis 0).

    Returns
    -------
    x5 : ndarray
    perm : list of int or None
        The transpose that moved the axes last (None when they were).
    """
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
    k = prod(x.shape[len(keep) :])
    return x.reshape(-1, 1, 1, k, 1), perm


def channel_view(x, axis, n_groups):
    """``x`` as ``(N, S1, G, C // G, S2)`` around the channel ``axis``.

    Parameters
    ----------
    x : ndarray
        C-contiguous.
    axis : int
        The channel axis (not axis 0).
    n_groups : int or None
        Groups of channels; None is one group per channel (instance norm).

    Returns
    -------
    ndarray
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
    s1 = prod(x.shape[1:c_axis])
    s2 = prod(x.shape[c_axis + 1 :])
    return x.reshape(x.shape[0], s1, int(n_groups), n_ch // int(n_groups), s2)


def restore_view(a5, shape, perm):
    """A result of a per-sample view in the input's ``shape`` (undoing ``perm``).

    Parameters
    ----------
    a5 : ndarray
    shape : tuple of int
    perm : list of int or None

    Returns
    -------
    ndarray
    """
    if perm is None:
        return a5.reshape(shape)
    moved = tuple(shape[p] for p in perm)
    return a5.reshape(moved).transpose(np.argsort(perm))
