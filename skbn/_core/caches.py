"""The caches that the functional API's forward functions return and its
backward functions take, and the checks of what comes back.
"""

from typing import Any, NamedTuple

import numpy as np

from .views import Layout


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs; opaque to users."""

    layout: Layout  # or a CudaLayout for GPU input
    axes: tuple[int, ...]
    spans: list[tuple[int, int]]
    mean: np.ndarray  # (n_spans, d) float64
    inv_std: np.ndarray  # (n_spans, d) float64
    gamma: np.ndarray | None  # (d,) float64
    r: np.ndarray | None  # (n_spans, d), renorm only
    d: np.ndarray | None
    training: bool
    gamma_shape: tuple[int, ...] | None
    beta_shape: tuple[int, ...] | None


class PerSampleCache(NamedTuple):
    """What the per-sample backward functions need; opaque to users."""

    kind: str
    x5: np.ndarray
    mean: np.ndarray  # (N, G) float64
    inv_std: np.ndarray  # (N, G) float64
    gamma: np.ndarray | None  # (G * Cg,) float64
    shape: tuple[int, ...]  # of the forward input
    perm: list[int] | None  # layer norm over non-trailing axes: the transpose used
    gamma_shape: tuple[int, ...] | None
    beta_shape: tuple[int, ...] | None
    order: list[int]  # the forward input's memory order, kept by the results
    dtype: np.dtype  # the forward input's dtype, kept by the results


def shaped_grad(grad: Any, shape: Any, dtype: Any) -> Any:
    """A per-feature gradient in the shape of its parameter (a scalar sums)."""
    if shape is None:
        return None
    # Beyond dtype's range a gradient becomes infinite, as in the kernels'
    # float32 output; no warning.
    with np.errstate(over="ignore"):
        if shape == ():
            return np.asarray(grad.sum(), dtype=dtype)
        return grad.astype(dtype).reshape(shape)


def check_cache(cache: Any, cls: Any, caller: Any, kinds: Any = None) -> None:
    """Refuse a cache that is not what ``caller``'s forward function made."""
    if not isinstance(cache, cls) or (kinds is not None and cache.kind not in kinds):
        made_by = kinds[0] if kinds else "batch_norm"
        raise TypeError(
            f"{caller} needs the cache returned by {made_by}_forward; got "
            f"{type(cache).__name__}"
            + (f" from {cache.kind}_forward." if hasattr(cache, "kind") else ".")
        )
