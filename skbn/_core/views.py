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
back Fortran-ordered).  Anything else is copied once into C order for the
statistics.  Every result comes back in ``X``'s memory order and dtype
(:meth:`Layout.restore`); an element-wise pass (the normalize step) runs on
``X``'s own memory when ``X`` is a permutation of a contiguous array whose
feature axes lie side by side in it (:meth:`Layout.elementwise`), so that
channels-last data is neither copied nor re-laid.
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

    The statistics are computed on :attr:`x3`; a result of its shape comes
    back through :meth:`restore` in ``X``'s shape, memory order (the order of
    ``np.empty_like(X)``) and dtype.  float16 data is read as float64 (exact:
    the kernels compile for float32 and float64 only) and results are rounded
    to float16 once, from float64, as ``astype`` rounds.

    Attributes
    ----------
    rows : bool
        True when ``inner == 1``: the kernels then use the per-row layout.
    shape : tuple of int
        The shape of ``X``.
    axes : tuple of int
        The feature axes of ``X``.
    dtype : numpy.dtype
        ``X``'s dtype, that of every result.
    """

    __slots__ = (
        "_x3",
        "rows",
        "shape",
        "axes",
        "transposed",
        "perm",
        "dtype",
        "_X",
        "_direct",
        "_span",
    )

    def __init__(self, X, axes):
        self.shape = X.shape
        self.axes = axes
        self.dtype = X.dtype
        if X.dtype.type is np.float16:
            # Exact, and in X's memory order (no float16 kernels).
            X = X.astype(kernel_dtype(X.dtype), order="K")
        self._direct = None
        lo, hi = axes[0], axes[-1]
        contiguous_block = hi - lo + 1 == len(axes)
        self.transposed = False
        self.perm = None
        src = None
        src_shape = X.shape
        if contiguous_block and X.flags.c_contiguous:
            src = X
        elif len(axes) == 1 and X.flags.f_contiguous:
            # The transpose of an F-ordered array is C-ordered; the feature
            # axis keeps one axis, now counted from the other end.
            src = X.T
            src_shape = src.shape
            lo = hi = X.ndim - 1 - axes[0]
            self.transposed = True
        elif not contiguous_block:
            # Move the feature axes to the end (keeping their order), once.
            self.perm = [a for a in range(X.ndim) if a not in axes] + list(axes)
            src_shape = tuple(X.shape[a] for a in self.perm)
            lo, hi = X.ndim - len(axes), X.ndim - 1
        # X is kept when a result must be laid out again (see restore) and
        # for the C-ordered copy, made when x3 is first read: an element-wise
        # pass over X's own memory (transform) never needs it.
        self._X = X if src is None or self.dtype != X.dtype else None
        self._span = (lo, hi)
        self._x3 = None if src is None else self._view3(src)
        self.rows = prod(src_shape[hi + 1 :]) == 1

    def _view3(self, src):
        lo, hi = self._span
        shape = src.shape
        outer, inner = prod(shape[:lo]), prod(shape[hi + 1 :])
        return src.reshape(outer, prod(shape[lo : hi + 1]), inner)

    @property
    def x3(self):
        """ndarray of shape (outer, n_features, inner): C-contiguous view (or
        copy) of ``X``."""
        if self._x3 is None:
            X = self._X if self.perm is None else self._X.transpose(self.perm)
            self._x3 = self._view3(np.ascontiguousarray(X))
        return self._x3

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

    def unordered(self, y3):
        """A result of the view's shape in ``X``'s shape, as the view lays it
        out (C order, or ``X``'s order where the view is ``X``'s memory), in
        the view's dtype."""
        if self.transposed:
            return y3.reshape(self.shape[::-1]).T
        if self.perm is not None:
            moved = tuple(self.shape[a] for a in self.perm)
            return y3.reshape(moved).transpose(np.argsort(self.perm))
        return y3.reshape(self.shape)

    def restore(self, y3):
        """A result of the view's shape in ``X``'s shape, memory order and
        dtype."""
        y = self.unordered(y3)
        if self._X is None:
            return y  # already X's memory and dtype: the view was X
        return follow(y, memory_order(self._X), self.dtype)

    def arrange(self, a):
        """``a``, of ``X``'s shape, as :attr:`x3` lays ``X`` out: a
        C-contiguous array of ``x3``'s shape and dtype (a gradient beside its
        input, say).

        Parameters
        ----------
        a : ndarray

        Returns
        -------
        ndarray
        """
        if self.transposed:
            a = a.T
        elif self.perm is not None:
            a = a.transpose(self.perm)
        return np.ascontiguousarray(a, dtype=self.x3.dtype).reshape(self.x3.shape)

    def c_order(self):
        """The same data as a layout of C order (axis 0 slowest in ``outer``),
        whose results still come back in ``X``'s order and dtype."""
        if not self.transposed:
            return self
        return Layout.c_ordered(self.unordered(self.x3), self.axes, self.dtype)

    @classmethod
    def c_ordered(cls, X, axes, dtype=None):
        """A layout of ``X`` copied to C order where it is not (what ghost
        batches and the GPU's per-sample weights need), whose results still
        come back in ``X``'s memory order.

        Parameters
        ----------
        X : ndarray of float32 or float64
        axes : tuple of int
        dtype : numpy.dtype, optional
            The results' dtype; ``X``'s by default.

        Returns
        -------
        Layout
        """
        out = cls(np.ascontiguousarray(X), axes)
        if not X.flags.c_contiguous or dtype not in (None, X.dtype):
            out._X = X
            out._direct = ()  # element-wise passes read the statistics' copy
        if dtype is not None:
            out.dtype = np.dtype(dtype)
        return out

    def elementwise(self):
        """A view for an element-wise pass that writes straight into ``X``'s
        memory order, and the way back from it.

        :attr:`x3` itself where it is ``X``'s memory (or a copy of input that
        has no order to follow).  For an ``X`` that is a permutation of a
        contiguous array (channels-last data seen as ``(N, C, H, W)``, say)
        whose feature axes keep their order and sit side by side in memory,
        it is ``X`` itself seen in its memory order, so that the result needs
        no copy to follow ``X``; the copy :attr:`x3` read is then not needed.

        Returns
        -------
        v3 : ndarray of shape (outer, n_features, inner), C-contiguous
            The same object on every call (an output buffer is recognized
            by identity).
        restore : callable
            ``restore(y3)`` for a result of ``v3``'s shape.
        """
        if self._direct is None:
            self._direct = self._find_direct()
        if not self._direct:
            return self.x3, self.restore
        # Nothing that refers to self is stored: a cycle would keep X (a
        # memory-mapped window, say) alive until the garbage collector runs.
        v3, order, dtype = self._direct
        back = np.argsort(order)
        moved = tuple(self.shape[a] for a in order)

        def restore(y3):
            return follow(y3.reshape(moved).transpose(back), order, dtype)

        return v3, restore

    def _find_direct(self):
        """``(v3, order, dtype)`` of the direct view, or ``()`` for none."""
        X = self._X
        if X is None or X.ndim < 2:
            return ()
        order = memory_order(X)
        moved = X.transpose(order)
        place = [order.index(a) for a in self.axes]
        lo, hi = place[0], place[-1]
        if not moved.flags.c_contiguous or place != list(range(lo, hi + 1)):
            return ()
        shape = moved.shape
        v3 = moved.reshape(prod(shape[:lo]), prod(shape[lo : hi + 1]), -1)
        return v3, order, self.dtype


def kernel_dtype(dtype):
    """The dtype the kernels read data of ``dtype`` as: float16 as float64
    (exact; the kernels compile for float32 and float64), others as is.

    Parameters
    ----------
    dtype : numpy.dtype

    Returns
    -------
    numpy.dtype
    """
    return np.dtype(np.float64) if dtype == np.float16 else np.dtype(dtype)


def memory_order(X):
    """``X``'s axes from the slowest to the fastest in memory (ties, such as
    axes of length 1, in axis order): the order ``np.empty_like(X)`` keeps.

    Parameters
    ----------
    X : ndarray

    Returns
    -------
    list of int
    """
    return sorted(range(X.ndim), key=lambda a: -abs(X.strides[a]))


def laid_out(y, order, dtype):
    """``y`` copied into a new array whose axes lie in memory in ``order``
    (slowest first), of ``dtype``.

    A value beyond ``dtype``'s range becomes infinite, as NumPy's cast (and
    the kernels' float32 output) makes it; no warning.

    Parameters
    ----------
    y : ndarray
    order : list of int
        As :func:`memory_order` gives.
    dtype : numpy.dtype

    Returns
    -------
    ndarray
    """
    out = np.empty([y.shape[a] for a in order], dtype).transpose(np.argsort(order))
    with np.errstate(over="ignore"):
        np.copyto(out, y, casting="unsafe")
    return out


def follow(y, order, dtype):
    """``y`` itself when it already lies in ``order`` and is of ``dtype``,
    else :func:`laid_out` (axes of length 1 lie anywhere).

    Parameters
    ----------
    y : ndarray
    order : list of int
    dtype : numpy.dtype

    Returns
    -------
    ndarray
    """
    if y.dtype == dtype:
        long = [a for a in order if y.shape[a] > 1]
        if long == [a for a in memory_order(y) if y.shape[a] > 1]:
            return y
    return laid_out(y, order, dtype)


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


def restore_view(a5, shape, perm, order, dtype):
    """A result of a per-sample view in the input's ``shape`` (undoing
    ``perm``), memory ``order`` and ``dtype`` (see :func:`follow`).

    Parameters
    ----------
    a5 : ndarray
    shape : tuple of int
    perm : list of int or None
    order : list of int
        The input's :func:`memory_order`.
    dtype : numpy.dtype
        The input's dtype.

    Returns
    -------
    ndarray
    """
    if perm is None:
        a = a5.reshape(shape)
    else:
        moved = tuple(shape[p] for p in perm)
        a = a5.reshape(moved).transpose(np.argsort(perm))
    return follow(a, order, dtype)
