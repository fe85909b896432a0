"""Dask arrays: moments per block, merged up a tree; a lazy normalize.

The statistics of a ``dask.array.Array`` are computed by the same routine as
for an ndarray, :func:`skbn._moments.moments`, once per block, and the block
moments are combined with :func:`skbn._moments.merge` in a tree reduction
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

from . import _moments
from ._layout import Layout
from ._validation import (
    FLOAT_TYPES,
    check_weight_total,
    validate_metadata,
    validate_sample_weight,
)

MOMENTS_DTYPE = np.dtype([("count", "f8"), ("mean", "f8"), ("m2", "f8")])


def is_dask(X) -> bool:
    """True when ``X`` is a ``dask.array.Array`` (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


class DaskLayout(NamedTuple):
    """A validated dask array and its feature axes (the lazy ``Layout``)."""

    X: object
    axes: tuple


# -- validation -----------------------------------------------------------------


def validate(est, X, *, reset):
    """Check a dask ``X`` for ``est`` without computing it.

    The dask counterpart of :func:`skbn._validation.validate_X`: the same
    rules and messages, checked on the array's metadata only.

    Parameters
    ----------
    est : estimator
    X : dask.array.Array
    reset : bool
        True in the first fit.

    Returns
    -------
    X : dask.array.Array
        float32 or float64, with each feature axis in a single chunk.
    axes : tuple of int
    n_features : int
    """
    if any(np.isnan(s) for s in X.shape):
        raise ValueError(
            f"X has unknown chunk sizes (shape {X.shape}); call "
            "X.compute_chunk_sizes() first."
        )
    axes, n_features = validate_metadata(
        est, X, X.shape, X.dtype, reset=reset, kind="dask array"
    )
    if X.dtype.type not in FLOAT_TYPES:
        X = X.astype(np.float64)
    # A block then holds whole features, so that its moments (and an
    # infinite value's feature index in an error) are those of the full array.
    if any(X.numblocks[a] > 1 for a in axes):
        X = X.rechunk({a: -1 for a in axes})
    return X, axes, n_features


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
    """Pack :class:`~skbn._moments.Moments` into a structured array."""
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
    mom = _moments.moments(Layout(x, features), w, feature_names)
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
    total = _moments.Moments(np.zeros(d), np.zeros(d), np.zeros(d))
    for row in rows:
        block = _moments.Moments(
            *(np.ascontiguousarray(row[f]) for f in MOMENTS_DTYPE.names)
        )
        total = _moments.merge(total, block)
    shape = [1 if i in axis else s for i, s in enumerate(parts.shape)]
    return _as_records(total, shape if keepdims else kept)


def moments(X, axes, sample_weight=None, feature_names=None):
    """Moments of each feature of a dask array, computed now.

    Parameters
    ----------
    X : dask.array.Array
        Validated by :func:`validate` (float, whole features per block).
    axes : tuple of int
        Feature axes.
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
    return _moments.Moments(
        *(np.ascontiguousarray(records[f].reshape(-1)) for f in MOMENTS_DTYPE.names)
    )


def batch_moments(est, X, sample_weight, *, reset):
    """Validate a dask batch and compute its moments (for ``_update``).

    Returns
    -------
    X : dask.array.Array
    axes : tuple of int
    n_features : int
    layout : DaskLayout
    batch : Moments
    """
    X, axes, n_features = validate(est, X, reset=reset)
    names = getattr(est, "feature_names_in_", None)
    batch = moments(X, axes, sample_weight, names)
    return X, axes, n_features, DaskLayout(X, axes), batch


# -- normalize ------------------------------------------------------------------


def _affine_block(x, *, axes, shift, scale, offset, feature_names):
    if x.size == 0:
        return np.empty(x.shape, dtype=x.dtype)
    return _moments.affine(Layout(x, axes), shift, scale, offset, None, feature_names)


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


def transform(est, X):
    """Inference-mode normalize of a dask array (for ``transform``).

    Parameters
    ----------
    est : BatchNormalizer
        Fitted.
    X : dask.array.Array

    Returns
    -------
    dask.array.Array
        Lazy; computing it runs the kernels block by block.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "running_mean_")
    est._check_params()
    X, axes, _ = validate(est, X, reset=False)
    return est._apply(DaskLayout(X, axes), est.running_mean_, est.running_var_, None)


def _per_sample_block(x, *, est):
    if x.size == 0:
        return np.empty(x.shape, dtype=x.dtype)
    return est._normalize(x)


def per_sample_transform(est, X):
    """``transform`` of a per-sample normalizer on a dask array (lazy).

    Each sample is normalized by its own statistics, so blocks that hold
    whole samples (every axis but 0 in one chunk) are independent.

    Parameters
    ----------
    est : LayerNormalizer, GroupNormalizer or InstanceNormalizer
    X : dask.array.Array

    Returns
    -------
    dask.array.Array
    """
    from sklearn.base import clone

    # The graph keeps a snapshot, so that changing a parameter before the
    # result is computed does not change the result.
    snapshot = clone(est)
    snapshot._validate_params()
    fitted = hasattr(est, "n_features_in_")
    X, _, _ = validate(est if fitted else snapshot, X, reset=not fitted)
    if any(n > 1 for n in X.numblocks[1:]):
        X = X.rechunk({i: -1 for i in range(1, X.ndim)})
    return X.map_blocks(
        _per_sample_block,
        est=snapshot,
        dtype=X.dtype,
        meta=np.empty((0,) * X.ndim, dtype=X.dtype),
        token="skbn-per-sample",
    )
