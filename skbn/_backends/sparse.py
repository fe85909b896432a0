"""The sparse backend: scipy.sparse matrices and arrays on the CPU.

CSR and CSC input (``csr_matrix``, ``csr_array``, ``csc_matrix``,
``csc_array``) is read where it lies; any other format is converted to CSR,
as scikit-learn's ``check_array(accept_sparse=("csr", "csc"))`` does,
without changing the caller's object.  The statistics are those of the
matrix with its implicit zeros (:mod:`skbn._core.sparse`); the normalize
step multiplies each stored value by its feature's scale, which needs a
shift and an offset of 0 (``with_mean=False``, ``beta_`` 0), so the output
stays sparse: the input's format and class, the input's float dtype.

Nothing here imports scipy at module level: :func:`is_sparse` looks the
module up in ``sys.modules`` (a sparse matrix cannot exist unless
scipy.sparse is imported).
"""

import sys
from typing import NamedTuple

import numpy as np

from .._core import sparse as core_sparse
from .._validation import FLOAT_TYPES, validate_metadata, validate_sample_weight
from .common import never_small, refused

NAME = "sparse"


def is_sparse(X) -> bool:
    """True when ``X`` is a scipy.sparse matrix or array (without importing
    scipy)."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(X)


def refuse_device(device):
    """Refuse ``device="cuda"``: the sparse kernels run on the CPU only."""
    if device == "cuda":
        raise ValueError(
            "device='cuda' takes dense input only; got a scipy.sparse X. Use "
            "device='auto' or 'cpu' for sparse data, or X.toarray() to densify."
        )


class SparseLayout(NamedTuple):
    """A validated sparse batch.

    ``X`` is the CSR or CSC object whose arrays ``c`` are; ``own`` says that
    it is a private copy (a conversion), which the normalize step may
    overwrite; ``canonical`` whether its indices are known to be sorted and
    unique (None: not checked, see :func:`canonical`).
    """

    X: object
    c: core_sparse.Compressed
    own: bool
    canonical: bool | None = None

    @property
    def shape(self):
        """The matrix's shape."""
        return self.c.shape

    @property
    def axes(self):
        """The feature axes: one feature per column."""
        return (1,)


CENTER_ERROR = (
    "Cannot center sparse matrices: pass `with_mean=False` instead. "
    "Subtracting the mean would turn every implicit zero of X into a "
    "stored value (a dense matrix); with_mean=False divides by the "
    "standard deviation only."
)


def validate(X, spec, *, reset):
    """Check a sparse ``X`` and make its arrays ready for the kernels.

    Parameters
    ----------
    X : scipy.sparse matrix or array
    spec : skbn._validation.Spec
    reset : bool
        True in the first fit.

    Returns
    -------
    layout : SparseLayout
        float32 or float64 CSR or CSC, checked to be a well-formed matrix;
        its order (duplicates, unsorted indices) is checked where it
        matters (:func:`canonical`).
    n_features : int
    """
    if spec.with_mean:
        raise ValueError(CENTER_ERROR)
    axes, n_features = validate_metadata(
        X, X.shape, X.dtype, spec, reset=reset, kind="sparse matrix"
    )
    if axes != (1,):
        raise ValueError(
            "Sparse X keeps one statistic per column: axis must be -1 or 1; got "
            f"axis={spec.axis!r}."
        )
    own = False
    if X.format not in ("csr", "csc"):
        X = X.tocsr()
        own = True
    data = X.data
    if data.dtype.type not in FLOAT_TYPES or not data.dtype.isnative:
        # Integers and bools become float64; a float keeps its precision.
        keep = data.dtype.kind == "f" and data.dtype.itemsize in (4, 8)
        X = X.astype(data.dtype.newbyteorder("=") if keep else np.float64)
        own = True
    arrays = (X.data, X.indices, X.indptr)
    if any(a.dtype.kind != "i" for a in arrays[1:]):
        raise TypeError(
            "X's indices and indptr must be integer arrays; got dtypes "
            f"{X.indices.dtype} and {X.indptr.dtype}."
        )
    if not own and not all(a.flags.c_contiguous and a.dtype.isnative for a in arrays):
        X = X.copy()  # the kernels read contiguous arrays in native order
        own = True
    c = core_sparse.check_structure(
        X.format == "csr", X.data, X.indices, X.indptr, X.shape
    )
    return SparseLayout(X, c, own), n_features


def canonical(layout):
    """``layout`` with its indices sorted and unique within each slice, as
    the statistics need them (a duplicate entry counts once, as the sum of
    its values, which is what scipy means by it).

    Returns
    -------
    SparseLayout
        ``layout`` itself when already canonical, else one of a private,
        canonical copy of ``X``.
    """
    if layout.canonical:
        return layout
    if core_sparse.is_canonical(layout.c):
        return layout._replace(canonical=True)
    X = layout.X if layout.own else layout.X.copy()
    X.sum_duplicates()
    c = core_sparse.check_structure(
        layout.c.by_rows, X.data, X.indices, X.indptr, X.shape
    )
    return SparseLayout(X, c, True, True)


def moments(layout, sample_weight, feature_names=None):
    """Moments of a validated sparse batch (weights checked here).

    Returns
    -------
    skbn._core.moments.Moments
    """
    w = None
    if sample_weight is not None:
        w = validate_sample_weight(
            sample_weight, np.empty((layout.shape[0], 0)), layout.axes
        )
    return core_sparse.moments(canonical(layout).c, w, feature_names)


# Normalizing by the batch's mean would densify.
train_forward = refused("train_forward", CENTER_ERROR)
# Ghost batches and Batch Renormalization need dense input.
train_normalize = refused(
    "train_normalize",
    "renorm and virtual_batch_size take dense input only; got a "
    "scipy.sparse X. Densify it with X.toarray() or drop them.",
)


def output_buffer(layout, copy, feature_names=None):
    """The layout itself where :func:`normalize` may write into ``X``:
    ``copy=False`` and float CSR/CSC data in canonical format (or a private
    copy).  An infinity must raise before anything is overwritten, so it
    is looked for first.

    Returns
    -------
    SparseLayout or None
    """
    if copy or not (layout.own or layout.c.data.flags.writeable):
        return None
    if not (layout.own or layout.canonical or core_sparse.is_canonical(layout.c)):
        return None  # the user's X in place only when canonical
    core_sparse.check_no_inf(layout.c, feature_names)
    return layout


def _check_keeps_zeros(shift, offset):
    """The normalize step of sparse data keeps zeros: shift and offset 0."""
    bad = np.flatnonzero((shift != 0) | (offset != 0))
    if bad.size:
        raise ValueError(
            "Sparse X stays sparse only if zeros stay zeros, but beta_ is not 0 "
            f"(feature {', '.join(map(str, bad[:5]))}): pass center=False or "
            "beta=0 to normalize sparse data, or densify it with X.toarray()."
        )


def normalize(layout, shift, scale, offset, out=None, feature_names=None):
    """``(x - shift) * scale + offset`` per feature, for ``shift`` and
    ``offset`` 0: each stored value times its feature's scale.

    Parameters
    ----------
    layout : SparseLayout
    shift, scale, offset : ndarray of shape (n_features,), float64
    out : SparseLayout or None
        The layout, to write into ``X`` (see :func:`output_buffer`).
    feature_names : sequence of str, optional

    Returns
    -------
    scipy.sparse matrix or array
        Of ``X``'s format, class and float dtype: ``X`` itself when written
        in place or a private copy, else a new one.  Duplicate entries are
        scaled one by one (their sum is scaled) and kept.
    """
    _check_keeps_zeros(shift, offset)
    c = layout.c
    if out is not None or layout.own:
        core_sparse.scale_values(c, scale, c.data, feature_names)
        return layout.X
    # A new matrix of X's class; its values are written once, by the kernel
    # (not copied first, as X.copy() would).
    data = np.empty_like(c.data)
    core_sparse.scale_values(c, scale, data, feature_names)
    return type(layout.X)((data, c.indices.copy(), c.indptr.copy()), shape=c.shape)


small_input = never_small
