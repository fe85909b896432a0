"""Statistics and the normalize step of scipy.sparse CSR and CSC data.

The counterpart of :func:`skbn._core.moments.moments` and
:func:`skbn._core.norm.affine` for a :class:`Compressed` matrix: the kernels
of :mod:`skbn._kernels.cpu.sparse` behind the same planning (tasks that are
a function of the shape only, parallel or serial twin) and the same
finishing (weights in units of a power of two, the errors for an infinity
and an overflow), so the result is a :class:`~skbn._core.moments.Moments`
that the running-statistics update folds in like any other.
"""

from typing import NamedTuple

import numpy as np

from .. import _config
from .._kernels import cpu
from . import plan
from .moments import (
    in_units,
    raise_inf_features,
    raise_overflow,
    unit_weights,
)

_NO_WEIGHTS = np.empty(0)
# Bytes of the CSR kernel's per-task tables per feature and task.
_TABLE_BYTES_PER_FEATURE = 7 * 8


class Compressed(NamedTuple):
    """The arrays of a CSR (``by_rows``) or CSC matrix of ``shape``.

    ``data`` and ``indices`` hold exactly the ``indptr[-1]`` stored entries
    and :func:`check_structure` has accepted them.
    """

    by_rows: bool
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple


def check_structure(by_rows, data, indices, indptr, shape):
    """Check the arrays of a CSR or CSC matrix; return them trimmed.

    Parameters
    ----------
    by_rows : bool
        CSR (True) or CSC.
    data, indices, indptr : ndarray
    shape : tuple of int

    Returns
    -------
    Compressed
        ``data`` and ``indices`` cut to the stored entries.

    Raises
    ------
    ValueError
        When the arrays do not describe a matrix of ``shape`` (an index out
        of range, ``indptr`` of the wrong length, decreasing or beyond the
        stored entries); no kernel reads out of bounds.
    """
    what = "CSR" if by_rows else "CSC"
    n_major, n_minor = shape if by_rows else shape[::-1]
    major = "rows" if by_rows else "columns"
    if indptr.ndim != 1 or indptr.size != n_major + 1:
        raise ValueError(
            f"X is a malformed {what} matrix: indptr has shape {indptr.shape}; "
            f"expected ({n_major + 1},), one more than its {n_major} {major}."
        )
    if data.ndim != 1 or indices.ndim != 1:
        raise ValueError(
            f"X is a malformed {what} matrix: data and indices must be 1-D; got "
            f"shapes {data.shape} and {indices.shape}."
        )
    nnz = int(indptr[-1])
    if int(indptr[0]) != 0 or not 0 <= nnz <= min(data.size, indices.size):
        raise ValueError(
            f"X is a malformed {what} matrix: indptr must start at 0 and end at "
            f"the number of stored values (at most {min(data.size, indices.size)}"
            f"); got {int(indptr[0])} and {nnz}."
        )
    indices = indices[:nnz]
    kernel = plan.pick(cpu.check_structure, nnz)
    code = kernel(indptr, indices, n_minor, plan.n_tasks(nnz + n_major, n_major))
    if code == cpu.BAD_INDPTR:
        raise ValueError(f"X is a malformed {what} matrix: indptr must not decrease.")
    if code == cpu.BAD_INDEX:
        raise ValueError(
            f"X is a malformed {what} matrix: an index in indices is outside "
            f"[0, {n_minor})."
        )
    return Compressed(by_rows, data[:nnz], indices, indptr, tuple(shape))


def is_canonical(c):
    """Whether the indices of each slice of ``c`` are sorted and unique (a
    pass that only the statistics need: duplicates must be summed first).

    Parameters
    ----------
    c : Compressed

    Returns
    -------
    bool
    """
    n_major = c.indptr.size - 1
    size = c.data.size + n_major
    kernel = plan.pick(cpu.is_canonical, size)
    return bool(kernel(c.indptr, c.indices, plan.n_tasks(size, n_major)))


def inf_features(c):
    """Sorted indices of the features of ``c`` that store an infinity."""
    pos = np.flatnonzero(np.isinf(c.data))
    if c.by_rows:
        features = c.indices[pos]
    else:
        # The last column whose slice starts at or before each position.
        features = np.searchsorted(c.indptr, pos, side="right") - 1
    return np.unique(features)


def check_no_inf(c, feature_names=None):
    """Raise the error for an infinite value if ``c`` stores one (before
    its values are overwritten in place)."""
    if plan.pick(cpu.count_inf, c.data.size)(c.data):
        raise_inf_features(inf_features(c), feature_names)


def _csr_tasks(c):
    """Tasks of the CSR moments kernel: by size and rows as for dense data,
    as many as the tables' memory allows; 0 when too wide for two."""
    n, d = c.shape
    wanted = plan.n_tasks(c.data.size + n, n)
    fit = _config.SPARSE_TABLE_BYTES // (_TABLE_BYTES_PER_FEATURE * max(d, 1))
    if wanted > 1 and fit < 2:
        return 0
    return max(1, min(wanted, fit))


def _as_csc(c):
    """``c`` (CSR) as a :class:`Compressed` CSC matrix."""
    import scipy.sparse as sp

    m = sp.csr_array((c.data, c.indices, c.indptr), shape=c.shape).tocsc()
    return Compressed(False, m.data, m.indices, m.indptr, c.shape)


def moments(c, sample_weight=None, feature_names=None):
    """Moments of each column of ``c``: implicit zeros count as values of 0,
    stored NaN are ignored, a stored infinity is rejected.

    Parameters
    ----------
    c : Compressed
        Accepted by :func:`check_structure`, without duplicate entries.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative float64 weights, one per row; the implicit zeros of a
        row carry its weight.
    feature_names : sequence of str, optional
        For the message about an infinite value.

    Returns
    -------
    Moments
        Per column, the weighted count of its rows (stored NaN left out),
        the mean and M2 with the implicit zeros counted.

    Raises
    ------
    ValueError
        For an infinite value (naming its features) or statistics that
        overflow float64, with the messages of the dense path.
    """
    n, d = c.shape
    if sample_weight is None:
        w, unit, weighted = _NO_WEIGHTS, 1.0, False
    else:
        w, unit = unit_weights(sample_weight)
        weighted = True
    n_tasks = _csr_tasks(c) if c.by_rows else 0
    if c.by_rows and n_tasks == 0:
        c = _as_csc(c)
    size = c.data.size + n
    if c.by_rows:
        arrays = (c.data, c.indices, c.indptr)
        kernel = plan.pick(cpu.csr_sums, size)
        count, zeros, shift = cpu.sum_tables(*kernel(*arrays, d, w, weighted, n_tasks))
        kernel = plan.pick(cpu.csr_deviations, size)
        q, e = kernel(*arrays, w, weighted, n_tasks, shift)
        res = (count, *cpu.finish_tables(shift, count, zeros, q, e))
    else:
        total = float(np.sum(w)) if weighted else float(n)
        kernel = plan.pick(cpu.csc_moments, size)
        res = kernel(c.data, c.indices, c.indptr, n, w, weighted, total)
    if cpu.all_finite(res[1], res[2]):
        return in_units(res, unit, sample_weight)
    bad = inf_features(c)
    if bad.size:
        raise_inf_features(bad, feature_names)
    raise_overflow(res[1], res[2])


def scale_values(c, scale, out, feature_names=None):
    """``out = data * scale[feature]``: the normalize step of sparse data,
    ``(x - shift) * scale + offset`` with shift and offset 0, which maps
    zeros to zeros.  NaN stays NaN.

    Parameters
    ----------
    c : Compressed
    scale : ndarray of shape (n_features,), float64
    out : ndarray
        Of ``c.data``'s size and dtype; may be ``c.data``.
    feature_names : sequence of str, optional

    Raises
    ------
    ValueError
        When ``c`` stores an infinity (``out`` may be partly written).
    """
    nnz = c.data.size
    if c.by_rows:
        kernel = plan.pick(cpu.scale_by_index, nnz)
        bad = kernel(c.data, c.indices, scale, out, plan.n_tasks(nnz, nnz))
    else:
        kernel = plan.pick(cpu.scale_by_slice, nnz)
        bad = kernel(c.data, c.indptr, scale, out)
    if bad:
        raise_inf_features(inf_features(c), feature_names)
