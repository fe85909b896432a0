"""The Dask backend: moments per block, merged up a tree; a lazy normalize.

The statistics of a ``dask.array.Array`` are computed by the same routine as
for an ndarray, :func:`skbn._core.moments.moments`, once per block, and the
block moments are combined with :func:`skbn._core.moments.merge` in a tree
reduction
(``dask.array.reduction``).  Chan's merge is exact up to float64 rounding, so
the result matches a fit of the whole array in memory to ~1e-15, and the
merge order is fixed by the block grid alone: the same graph gives the same
bits on any scheduler, with any number of workers.

A block's moments travel as a structured array with fields ``count``,
``mean`` and ``m2`` (one record per feature) so that dask can concatenate
them like any other reduction intermediate.

Nothing here imports dask at module level: :func:`is_dask` looks the module up
in ``sys.modules`` (a dask array cannot exist unless dask is imported), so
NumPy users never pay for the import.  The block functions are module-level
functions of an importable module, so a ``dask.distributed`` worker unpickles
them by reference and compiles (or loads from Numba's cache) the kernels
itself.
"""

import sys
from functools import partial
from math import prod
from typing import NamedTuple

import numpy as np

from .._core import moments as core_moments
from .._core import norm
from .._core.views import Layout
from .._validation import (
    KEPT_TYPES,
    check_weight_total,
    validate_metadata,
    validate_sample_weight,
)
from .common import never_small, refused
from .sparse import is_sparse

NAME = "dask"
MOMENTS_DTYPE = np.dtype([("count", "f8"), ("mean", "f8"), ("m2", "f8")])


def is_dask(X) -> bool:
    """True when ``X`` is a ``dask.array.Array`` (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


class DaskLayout(NamedTuple):
    """A validated dask array and its feature axes (the lazy ``Layout``)."""

    X: object
    axes: tuple

    @property
    def shape(self):
        """The array's shape."""
        return self.X.shape

    @property
    def ndim(self):
        """The array's number of dimensions."""
        return self.X.ndim


# -- validation -----------------------------------------------------------------


def _dask_weights(sample_weight, X, axes):
    """Per-sample weights as a dask array of shape ``(n_samples, 1, ...)``."""
    import dask.array as da

    if sample_weight is None:
        return None
    n = X.shape[0]
    if is_dask(sample_weight):
        if 0 in axes:
            # Same rule (and message) as for NumPy weights.
            validate_sample_weight(np.ones(n), X, axes)
        if sample_weight.shape != (n,) or sample_weight.dtype.kind not in "biuf":
            raise ValueError(
                f"sample_weight must be a 1-D array of {n} numbers, one per "
                f"sample; got shape {sample_weight.shape} and dtype "
                f"{sample_weight.dtype}."
            )
        # Negative or non-finite dask weights are caught in the block function.
        w = sample_weight.astype(np.float64).rechunk((X.chunks[0],))
    else:
        w = validate_sample_weight(sample_weight, X, axes)
        w = da.from_array(w, chunks=(X.chunks[0],))
    return w.reshape((n,) + (1,) * (X.ndim - 1))


# -- statistics -----------------------------------------------------------------


def _as_records(mom, shape):
    """Pack :class:`~skbn.core_moments.Moments` into a structured array."""
    out = np.empty(prod(shape), dtype=MOMENTS_DTYPE)
    out["count"], out["mean"], out["m2"] = mom
    return out.reshape(shape)


def _block_moments(x, weights=None, *, axis, keepdims, feature_names=None):
    """``chunk`` of the reduction: the moments of one block.

    Returns records of the block's shape with the reduced ``axis`` of length
    one, i.e. one record per feature.
    """
    shape = tuple(1 if i in axis else s for i, s in enumerate(x.shape))
    if x.size == 0:
        # Dask probes the function with empty "meta" arrays; an empty block
        # has count 0, which merges as a no-op.
        return np.zeros(shape, dtype=MOMENTS_DTYPE)
    features = tuple(i for i in range(x.ndim) if i not in axis)
    w = None
    if weights is not None:
        # The weights arrive broadcast to the block's shape; one per sample.
        w = np.ascontiguousarray(weights[(slice(None),) + (0,) * (x.ndim - 1)])
        if not np.all(np.isfinite(w) & (w >= 0)):
            raise ValueError(
                "sample_weight must be finite and non-negative; the dask "
                "sample_weight holds a negative, NaN or infinite value."
            )
    mom = core_moments.moments(Layout(x, features), w, feature_names)
    return _as_records(mom, shape)


def _merge_blocks(parts, axis, keepdims):
    """``combine`` and ``aggregate``: merge block moments in block order.

    ``parts`` is the concatenation of the children's records along the
    reduced ``axis``; they are merged one after the other in C order of the
    block grid, which fixes the result bit for bit.
    """
    kept = [s for i, s in enumerate(parts.shape) if i not in axis]
    d = prod(kept)
    rows = np.moveaxis(parts, axis, tuple(range(len(axis)))).reshape(-1, d)
    total = core_moments.Moments(np.zeros(d), np.zeros(d), np.zeros(d))
    for row in rows:
        block = core_moments.Moments(
            *(np.ascontiguousarray(row[f]) for f in MOMENTS_DTYPE.names)
        )
        total = core_moments.merge(total, block)
    shape = [1 if i in axis else s for i, s in enumerate(parts.shape)]
    return _as_records(total, shape if keepdims else kept)


def moments(layout, sample_weight=None, feature_names=None):
    """Moments of each feature of a dask array, computed now.

    Parameters
    ----------
    layout : DaskLayout
        Made by :func:`validate` (float, whole features per block).
    sample_weight : array-like or dask array of shape (n_samples,), optional
    feature_names : sequence of str, optional
        For the message about an infinite value.

    Returns
    -------
    Moments
        float64, flattened in C order of the feature axes, as for NumPy input.
    """
    import dask
    import dask.array as da

    X, axes = layout
    reduced = tuple(i for i in range(X.ndim) if i not in axes)
    weights = _dask_weights(sample_weight, X, axes)
    records = da.reduction(
        X,
        partial(_block_moments, feature_names=feature_names),
        _merge_blocks,
        combine=_merge_blocks,
        axis=reduced,
        keepdims=False,
        dtype=MOMENTS_DTYPE,
        meta=np.empty((0,) * len(axes), dtype=MOMENTS_DTYPE),
        weights=weights,
        name="skbn-moments",
    )
    if weights is None:
        records = records.compute()
    else:
        # The weight total in the same pass, for the rule of NumPy input
        # (all-zero weights are refused).
        records, total = dask.compute(records, weights.sum())
        check_weight_total(total)
    return core_moments.Moments(
        *(np.ascontiguousarray(records[f].reshape(-1)) for f in MOMENTS_DTYPE.names)
    )


def validate(X, spec, *, reset):
    """Check a dask ``X`` without computing it.

    The dask counterpart of :func:`skbn._validation.validate_X`: the same
    rules and messages, checked on the array's metadata only.

    Parameters
    ----------
    X : dask.array.Array
    spec : skbn._validation.Spec
    reset : bool
        True in the first fit.

    Returns
    -------
    layout : DaskLayout
        float16, float32 or float64 data, with each feature axis in a single
        chunk.
    n_features : int
    """
    if is_sparse(getattr(X, "_meta", None)):
        raise TypeError(
            "A dask array of scipy.sparse blocks is not supported; pass the "
            "sparse matrix itself, or dense blocks (X.map_blocks(lambda b: "
            "b.toarray()))."
        )
    if any(np.isnan(s) for s in X.shape):
        raise ValueError(
            f"X has unknown chunk sizes (shape {X.shape}); call "
            "X.compute_chunk_sizes() first."
        )
    axes, n_features = validate_metadata(
        X, X.shape, X.dtype, spec, reset=reset, kind="dask array"
    )
    if X.dtype.type not in KEPT_TYPES:
        X = X.astype(np.float64)
    # A block then holds whole features, so that its moments (and an
    # infinite value's feature index in an error) are those of the full array.
    if any(X.numblocks[a] > 1 for a in axes):
        X = X.rechunk({a: -1 for a in axes})
    return DaskLayout(X, axes), n_features


# -- normalize ------------------------------------------------------------------


def _affine_block(x, *, axes, shift, scale, offset, feature_names):
    if x.size == 0:
        return np.empty(x.shape, dtype=x.dtype)
    return norm.affine(Layout(x, axes), shift, scale, offset, None, feature_names)


def affine(layout, shift, scale, offset, feature_names=None):
    """``(x - shift) * scale + offset`` per feature, lazily, block by block.

    Parameters
    ----------
    layout : DaskLayout
    shift, scale, offset : ndarray of shape (n_features,), float64
    feature_names : sequence of str, optional

    Returns
    -------
    dask.array.Array
        Same shape, chunks and float dtype as ``layout.X``; nothing computed.
    """
    X, axes = layout
    return X.map_blocks(
        _affine_block,
        axes=axes,
        shift=shift,
        scale=scale,
        offset=offset,
        feature_names=feature_names,
        dtype=X.dtype,
        meta=np.empty((0,) * X.ndim, dtype=X.dtype),
        token="skbn-normalize",
    )


def train_forward(layout, sample_weight, gamma, beta, eps, feature_names=None):
    """The batch's moments (computed now) and the batch normalized by them
    (lazy).

    Returns
    -------
    batch : Moments
    y : dask.array.Array
    """
    batch = moments(layout, sample_weight, feature_names)
    scale, offset = norm.coefficients(batch.var, gamma, beta, eps)
    return batch, affine(layout, batch.mean, scale, offset, feature_names)


# Ghost batches and Batch Renormalization need in-memory data.
train_normalize = refused(
    "train_normalize",
    "renorm and virtual_batch_size need in-memory (NumPy) input; got a dask array.",
)


def output_buffer(layout, copy, feature_names=None):
    """None: a lazy result is always a new array."""
    return None


def normalize(layout, shift, scale, offset, out=None, feature_names=None):
    """``(x - shift) * scale + offset`` per feature, lazily (see
    :func:`affine`)."""
    return affine(layout, shift, scale, offset, feature_names)


small_input = never_small


def _per_sample_block(x, *, normalize):
    if x.size == 0:
        return np.empty(x.shape, dtype=x.dtype)
    return normalize(x)


def per_sample_transform(X, spec, normalize, *, reset):
    """``transform`` of a per-sample normalizer on a dask array (lazy).

    Each sample is normalized by its own statistics, so blocks that hold
    whole samples (every axis but 0 in one chunk) are independent.

    Parameters
    ----------
    X : dask.array.Array
    spec : skbn._validation.Spec
    normalize : callable
        Normalizes an ndarray block of whole samples; it must not change
        when the estimator's parameters do (a snapshot's method).
    reset : bool
        True for an estimator that is not fitted.

    Returns
    -------
    dask.array.Array
    """
    X = validate(X, spec, reset=reset)[0].X
    if any(n > 1 for n in X.numblocks[1:]):
        X = X.rechunk({i: -1 for i in range(1, X.ndim)})
    return X.map_blocks(
        _per_sample_block,
        normalize=normalize,
        dtype=X.dtype,
        meta=np.empty((0,) * X.ndim, dtype=X.dtype),
        token="skbn-per-sample",
    )
