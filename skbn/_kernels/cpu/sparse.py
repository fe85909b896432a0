"""Kernels for scipy.sparse CSR and CSC data: ``data``, ``indices`` and
``indptr`` as plain arrays (int32 or int64 indices).

Every value of the matrix counts, the implicit zeros too; a stored NaN is a
missing value of its feature.  The moments are those of the dense kernels,
``(count, mean, M2)`` in float64 with the corrected two-pass algorithm:

* CSC: one column per iteration of a parallel loop, two passes over its
  stored values; the implicit zeros enter the sums as one term each (their
  weight times ``0 - shift``), so no zero is read.
* CSR: the same two passes over the whole matrix, each cut into tasks of
  consecutive rows (a function of the shape only) that fill per-task
  tables, added in task order between and after the passes: the bits do
  not depend on the thread count.

Both are the corrected two-pass algorithm around a shift that is the
first pass's mean of the whole column, so a mean or M2 keeps its accuracy
at any offset (no merge of partial means, whose rounding at the offset's
ulp would be a first-order error of M2, see
:func:`~.moments.shift_reference`).

The zeros of a column weigh ``total - stored``, the weight of all rows
minus that of the rows that store a value; a column that stores a value in
every row has no zeros, exactly.  ``check_structure`` must have passed
before any of them runs: they trust ``indptr`` and ``indices``.
"""

import numpy as np
from numba import njit, prange

from .common import IEEE, JIT, parallel_kernel
from .formulas import corrected_m2, ratio
from .tasks import task_range, task_tables

#: :func:`check_structure`'s answers.
VALID = 0
BAD_INDPTR = 1  # indptr decreases, or does not run from 0 to nnz
BAD_INDEX = 2  # an index outside [0, n_minor)


@parallel_kernel(JIT)
def check_structure(indptr, indices, n_minor, n_tasks):
    """Whether ``indptr`` and ``indices`` describe a matrix with ``n_minor``
    minor entries per major slice: :data:`VALID`, :data:`BAD_INDPTR` or
    :data:`BAD_INDEX`.

    ``indices`` holds the ``indptr[-1]`` stored entries.  Flat loops
    without early exits, which vectorize: ``indptr`` must not decrease
    from 0 to ``indices.size``; every index must be in ``[0, n_minor)``.
    """
    n_major = indptr.size - 1
    nnz = indices.size
    bad_ptr = np.zeros(n_tasks, np.int64)
    bad_index = np.zeros(n_tasks, np.int64)
    for t in prange(n_tasks):
        m0, m1 = task_range(t, n_tasks, n_major)
        k = 0
        for m in range(_at(m0), _at(m1)):
            k += indptr[m + 1] < indptr[m]
        bad_ptr[t] = k
        p0, p1 = task_range(t, n_tasks, nnz)
        k = 0
        for p in range(_at(p0), _at(p1)):
            k += (indices[p] < 0) | (indices[p] >= n_minor)
        bad_index[t] = k
    # Not decreasing from 0 to nnz: every slice lies within [0, nnz].
    if bad_ptr.sum() or indptr[0] != 0 or indptr[n_major] != nnz:
        return BAD_INDPTR
    if bad_index.sum():
        return BAD_INDEX
    return VALID


@parallel_kernel(JIT)
def is_canonical(indptr, indices, n_tasks):
    """Whether the indices of each slice are sorted and unique, for arrays
    that :func:`check_structure` accepted.

    They are when every place where an index does not grow is the start of
    a slice: two counts, compared (flat loops, which vectorize).
    """
    n_major = indptr.size - 1
    nnz = indices.size
    if nnz == 0:
        return True
    descents = np.zeros(n_tasks, np.int64)
    starts = np.zeros(n_tasks, np.int64)
    for t in prange(n_tasks):
        p0, p1 = task_range(t, n_tasks, nnz)
        down = 0
        for p in range(_at(max(p0, 1)), _at(p1)):
            down += indices[p] <= indices[p - 1]
        descents[t] = down
        m0, m1 = task_range(t, n_tasks, n_major)
        down = 0
        for m in range(_at(m0), _at(m1)):
            p = indptr[m]
            # Counted where a slice that is not empty starts after the
            # first entry; branch-free (the reads are clamped in range),
            # since empty slices make the branch unpredictable.
            start = (p > 0) & (p < indptr[m + 1])
            down += start & (
                indices[_at(min(p, nnz - 1))] <= indices[_at(max(p - 1, 0))]
            )
        starts[t] = down
    return descents.sum() == starts.sum()


@njit(inline="always", **JIT)
def _at(index):
    """A non-negative index, position or row number (an index that
    :func:`check_structure` found in range, a position in ``[0, nnz]``) as
    an unsigned integer: Numba then indexes without the test for a negative
    index (which Python counts from the end), which took half of the
    kernels' time.  Loops run over unsigned ranges for the same reason."""
    return np.uint64(index)


@njit(inline="always", **IEEE)
def _finish_count(total, stored, missing, n_stored, n_rows):
    """``(count, zero weight)`` of a feature: all weight but that of its
    NaN, and the weight of its implicit zeros (0 when every row stores a
    value, whatever the rounding of ``total - stored``)."""
    zeros = 0.0 if n_stored >= n_rows else max(total - stored, 0.0)
    return total - missing, zeros


@njit(inline="always", **IEEE)
def _from_deviations(shift, count, zeros, q, e):
    """``(mean, M2)`` of a feature from its second pass around ``shift``:
    ``q`` and ``e``, the weighted sums of ``(x - shift)**2`` and
    ``x - shift`` over the stored values, to which the zeros add one term
    each.  The corrected two-pass algorithm (Chan, Golub and LeVeque):
    ``e`` removes the rounding of ``shift`` from M2 and from the mean."""
    q = q + zeros * (shift * shift)
    e = e - zeros * shift
    return shift + ratio(e, count), corrected_m2(q, e, count)


@parallel_kernel(IEEE)
def csc_moments(data, indices, indptr, n_rows, w, weighted, total):
    """Moments of each column of a CSC matrix, two passes per column.

    ``w`` holds the row weights when ``weighted`` (an empty array
    otherwise), ``total`` their sum (``n_rows`` unweighted).  Returns the
    ``(count, mean, M2)`` arrays; a stored infinity makes its column's mean
    or M2 non-finite (the caller tells it from an overflow).
    """
    d = indptr.size - 1
    count = np.zeros(d)
    mean = np.zeros(d)
    m2 = np.zeros(d)
    for j in prange(d):
        p0 = indptr[j]
        p1 = indptr[j + 1]
        stored = 0.0
        missing = 0.0
        s = 0.0
        for p in range(_at(p0), _at(p1)):
            wi = w[_at(indices[p])] if weighted else 1.0
            v = np.float64(data[p])
            stored += wi
            if v != v:
                missing += wi
            else:
                s += wi * v
        c, zeros = _finish_count(total, stored, missing, p1 - p0, n_rows)
        shift = ratio(s, c)
        q = 0.0
        e = 0.0
        for p in range(_at(p0), _at(p1)):
            v = np.float64(data[p])
            if v == v:
                wi = w[_at(indices[p])] if weighted else 1.0
                dv = v - shift
                e += wi * dv
                q += wi * (dv * dv)
        count[j] = c
        mean[j], m2[j] = _from_deviations(shift, c, zeros, q, e)
    return count, mean, m2


# The loops over a task's entries are compiled functions of their own, so
# that the parallel kernels and their serial twins run the same machine
# code.  They are written out, without helpers that take the arrays: an
# inlined helper's array arguments cost reference counting per value (7x).


@njit(**IEEE)
def _sums_of_entries(data, indices, p0, p1, stored, missing, s):
    """The first pass's sums over the entries ``[p0, p1)``, unweighted:
    per feature the number of stored values, of stored NaN, and the sum of
    the others."""
    for p in range(_at(p0), _at(p1)):
        j = _at(indices[p])
        v = np.float64(data[p])
        stored[j] += 1.0
        if v != v:
            missing[j] += 1.0
        else:
            s[j] += v


@njit(**IEEE)
def _sums_of_rows(data, indices, indptr, w, r0, r1, stored, missing, s, n_stored):
    """The first pass's sums over the rows ``[r0, r1)`` of weights ``w``
    (as :func:`_sums_of_entries`, weighted); returns their total weight."""
    total = 0.0
    for i in range(_at(r0), _at(r1)):
        wi = w[i]
        total += wi
        for p in range(_at(indptr[i]), _at(indptr[i + 1])):
            j = _at(indices[p])
            v = np.float64(data[p])
            n_stored[j] += 1
            stored[j] += wi
            if v != v:
                missing[j] += wi
            else:
                s[j] += wi * v
    return total


@njit(**IEEE)
def _deviations_of_entries(data, indices, p0, p1, shift, q, e):
    """The second pass's sums of ``(x - shift)**2`` and ``x - shift`` over
    the entries ``[p0, p1)``, unweighted, NaN skipped."""
    for p in range(_at(p0), _at(p1)):
        v = np.float64(data[p])
        if v == v:
            j = _at(indices[p])
            dv = v - shift[j]
            e[j] += dv
            q[j] += dv * dv


@njit(**IEEE)
def _deviations_of_rows(data, indices, indptr, w, r0, r1, shift, q, e):
    """:func:`_deviations_of_entries` over the rows ``[r0, r1)`` of weights
    ``w``."""
    for i in range(_at(r0), _at(r1)):
        wi = w[i]
        for p in range(_at(indptr[i]), _at(indptr[i + 1])):
            v = np.float64(data[p])
            if v == v:
                j = _at(indices[p])
                dv = v - shift[j]
                e[j] += wi * dv
                q[j] += wi * (dv * dv)


@parallel_kernel(IEEE)
def csr_sums(data, indices, indptr, d, w, weighted, n_tasks):
    """First pass over a CSR matrix, per task of consecutive rows.

    Returns ``(tasks, d)`` tables: the count (weight of the non-NaN values,
    zeros included), the weight of the implicit zeros and the weighted sum
    of the stored non-NaN values of each task.  Arguments as in
    :func:`csc_moments`; the tables and the task's scratch take
    ``7 * 8 * d`` bytes per task.
    """
    n = indptr.size - 1
    cnt, zero_w, sums = task_tables(n_tasks, d)
    for t in prange(n_tasks):
        r0, r1 = task_range(t, n_tasks, n)
        stored = np.zeros(d)  # weight of the rows that store a value
        missing = np.zeros(d)  # weight of the stored NaN
        s = np.zeros(d)  # weighted sum of the other stored values
        n_stored = np.zeros(d, np.int64)
        if weighted:
            total = _sums_of_rows(
                data, indices, indptr, w, r0, r1, stored, missing, s, n_stored
            )
        else:
            # One loop over the task's entries (a loop per row costs more
            # than its work on very sparse rows); total - stored then
            # counts the zeros exactly.
            total = float(r1 - r0)
            _sums_of_entries(data, indices, indptr[r0], indptr[r1], stored, missing, s)
        for j in range(d):
            full = n_stored[j] if weighted else 0
            cnt[t, j], zero_w[t, j] = _finish_count(
                total, stored[j], missing[j], full, r1 - r0
            )
            sums[t, j] = s[j]
    return cnt, zero_w, sums


@njit(**IEEE)
def sum_tables(cnt, zero_w, sums):
    """The whole matrix's count, zero weight and shift (its first-pass
    mean) from :func:`csr_sums`' tables, added in task order."""
    n_tasks, d = cnt.shape
    count = np.zeros(d)
    zeros = np.zeros(d)
    shift = np.zeros(d)
    for j in range(d):
        c, z, s = 0.0, 0.0, 0.0
        for t in range(n_tasks):
            c += cnt[t, j]
            z += zero_w[t, j]
            s += sums[t, j]
        count[j] = c
        zeros[j] = z
        shift[j] = ratio(s, c)
    return count, zeros, shift


@parallel_kernel(IEEE)
def csr_deviations(data, indices, indptr, w, weighted, n_tasks, shift):
    """Second pass over a CSR matrix around the per-feature ``shift``:
    ``(tasks, d)`` tables of the weighted sums of ``(x - shift)**2`` and of
    ``x - shift`` over the stored non-NaN values."""
    n = indptr.size - 1
    d = shift.size
    q = np.zeros((n_tasks, d))
    e = np.zeros((n_tasks, d))
    for t in prange(n_tasks):
        r0, r1 = task_range(t, n_tasks, n)
        qt = np.zeros(d)
        et = np.zeros(d)
        if weighted:
            _deviations_of_rows(data, indices, indptr, w, r0, r1, shift, qt, et)
        else:
            _deviations_of_entries(data, indices, indptr[r0], indptr[r1], shift, qt, et)
        for j in range(d):
            q[t, j] = qt[j]
            e[t, j] = et[j]
    return q, e


@njit(**IEEE)
def finish_tables(shift, count, zeros, q, e):
    """``(mean, M2)`` of each feature from :func:`csr_deviations`' tables,
    added in task order (see :func:`_from_deviations`)."""
    n_tasks, d = q.shape
    mean = np.zeros(d)
    m2 = np.zeros(d)
    for j in range(d):
        qj, ej = 0.0, 0.0
        for t in range(n_tasks):
            qj += q[t, j]
            ej += e[t, j]
        mean[j], m2[j] = _from_deviations(shift[j], count[j], zeros[j], qj, ej)
    return mean, m2


@parallel_kernel(JIT)
def scale_by_index(data, indices, scale, out, n_tasks):
    """``out[p] = data[p] * scale[indices[p]]``: the normalize step of CSR
    data with shift and offset 0 (the only one that keeps zeros).

    ``out`` may be ``data``.  Returns the number of infinite inputs.
    """
    nnz = data.size
    bad = np.zeros(n_tasks, np.int64)
    for t in prange(n_tasks):
        p0, p1 = task_range(t, n_tasks, nnz)
        k = 0
        for p in range(_at(p0), _at(p1)):
            v = data[p]
            k += np.isinf(v)
            out[p] = v * scale[_at(indices[p])]
        bad[t] = k
    return bad.sum()


@parallel_kernel(JIT)
def scale_by_slice(data, indptr, scale, out):
    """``out[p] = data[p] * scale[j]`` for the values of column ``j`` of CSC
    data (see :func:`scale_by_index`)."""
    d = indptr.size - 1
    bad = np.zeros(d, np.int64)
    for j in prange(d):
        a = scale[j]
        k = 0
        for p in range(_at(indptr[j]), _at(indptr[j + 1])):
            v = data[p]
            k += np.isinf(v)
            out[p] = v * a
        bad[j] = k
    return bad.sum()


@parallel_kernel(JIT)
def count_inf(data):
    """The number of infinite values in ``data`` (before writing in place).

    A ``prange`` reduction: an integer count is the same in any order.
    """
    k = 0
    for p in prange(data.size):
        if np.isinf(data[_at(p)]):
            k += 1
    return k
