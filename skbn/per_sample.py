"""Per-sample normalizers: layer, group and instance norm as transformers.

Each sample is normalized by its own statistics, so there is nothing to
learn from the data: ``fit`` only checks the input and records its number of
features, like :class:`sklearn.preprocessing.Normalizer`, and ``transform``
works even before ``fit``.  They run on the kernels of
:mod:`skbn._core.groups`, the routines of :mod:`skbn.functional`'s
per-sample functions.

NaN values are left out of a sample's statistics and stay NaN; infinite
values raise ``ValueError``.  A constant group normalizes to ``beta``.

float16, float32 and float64 input give output of the same dtype, computed
in float64 (float16 is rounded once, from float64, like
``astype(np.float16)``; beyond its range a value becomes ``inf``), in the
input's memory order (as ``np.empty_like(X)``: Fortran-ordered or
channels-last input gives such output, with the bits of the C-ordered one).
"""

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    clone,
)

from . import _params
from ._atomic import AtomicMixin
from ._backends import dask
from ._core.groups import groups_normalize
from ._core.views import (
    channel_view,
    kernel_dtype,
    layer_view,
    memory_order,
    restore_view,
)
from ._docstrings import shared_docs
from ._state import StateMixin
from ._validation import SpecMixin, validate_X
from .batch_norm import TransformOutput

if TYPE_CHECKING:
    # typing.Self is Python 3.11+; only type checkers read this name.
    from typing_extensions import Self


class _PerSampleNormalizer(
    AtomicMixin,
    SpecMixin,
    StateMixin,
    OneToOneFeatureMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Shared ``fit``/``transform``; subclasses define :meth:`_view`."""

    _parameter_constraints: dict[str, list[Any]] = _params.PER_SAMPLE
    # Fitted state that save/load keep besides the public attributes.
    _state_private = ("_axes", "_fit_axis", "_ndim")

    def __init__(
        self,
        *,
        eps: float,
        axis: Any,
        gamma: float | ArrayLike | None,
        beta: float | ArrayLike | None,
    ) -> None:
        # The parameters every per-sample normalizer has.  Each subclass
        # states its defaults in a signature of its own, where scikit-learn
        # reads the parameters from.
        self.eps = eps
        self.axis = axis
        self.gamma = gamma
        self.beta = beta

    def _view(self, X: np.ndarray) -> tuple[Any, Any]:
        """``X`` (C-contiguous) as ``(N, S1, G, Cg, S2)`` and the transpose used."""
        raise NotImplementedError

    def _normalize(self, X: Any) -> Any:
        # The result keeps X's memory order and dtype (float16 is computed
        # in float64 and rounded once).
        order, dtype = memory_order(X), X.dtype
        X = np.ascontiguousarray(X, dtype=kernel_dtype(dtype))
        x5, perm = self._view(X)
        n_ch = x5.shape[2] * x5.shape[3]
        gamma = _params.affine_vector(self.gamma, n_ch, "gamma")
        beta = _params.affine_vector(self.beta, n_ch, "beta")
        y5, _, _ = groups_normalize(x5, gamma, beta, float(self.eps), training=False)
        return restore_view(y5, X.shape, perm, order, dtype)

    def fit(self, X: Any, y: object = None) -> "Self":
        """Check ``X`` and record its number of features; nothing is learned.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Data of the shape that :meth:`transform` will see.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import LayerNormalizer
        >>> LayerNormalizer().fit(np.ones((4, 3))).n_features_in_
        3
        """
        self._validate_params()
        X, axes, n_features = validate_X(X, self._spec(reset=True), reset=True)
        # Fails here, not in transform, for a bad gamma or n_groups.
        self._normalize(X[:1])
        self.n_features_in_ = n_features
        self._axes = axes
        self._fit_axis = self.axis
        self._ndim = X.ndim
        return self

    def transform(self, X: Any, copy: bool | None = None) -> TransformOutput:
        """Normalize each sample of ``X`` by its own statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Data to normalize.  NaN stays NaN.
        copy : None
            Ignored; the output is always a new array.

        Returns
        -------
        X_out : ndarray of the shape, float dtype and memory order of ``X``
            Each sample normalized by its own statistics, then scaled and
            shifted (a lazy dask array for dask input, computed block by
            block).

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import InstanceNormalizer
        >>> X = np.array([[[1.0, 3.0], [10.0, 30.0]]])  # (N, C, L)
        >>> np.round(InstanceNormalizer().transform(X), 3)  # no fit needed
        array([[[-1.,  1.],
                [-1.,  1.]]])
        """
        fitted = hasattr(self, "n_features_in_")
        lazy = dask.is_dask(X)
        if fitted and not lazy:
            X, _, _ = validate_X(X, self._spec(reset=False), reset=False)
            return self._normalize(X)
        # Stateless: an unfitted transformer checks X as fit would, on a
        # copy, without recording anything on itself.  The copy is also what
        # a lazy (dask) result computes with, so that changing a parameter
        # before it is computed does not change it.
        snapshot = clone(self)
        snapshot._validate_params()
        spec = (self if fitted else snapshot)._spec(reset=not fitted)
        if lazy:
            return dask.per_sample_transform(
                X, spec, snapshot._normalize, reset=not fitted
            )
        X, _, _ = validate_X(X, spec, reset=True)
        return self._normalize(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32", "float16"]
        return tags


@shared_docs
class LayerNormalizer(_PerSampleNormalizer):
    """Layer normalization: each sample normalized over its own features.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the mean and
    (biased) variance of each sample's values along ``axis`` (Ba, Kiros and
    Hinton 2016).  On ``(n_samples, n_features)`` data each row gets mean 0
    and variance 1 (before ``gamma`` and ``beta``).

    {{per_sample_output}}

    Parameters
    ----------
    {{eps}}
    axis : int or tuple of int, default=-1
        The axes normalized over (Keras' convention); not axis 0.
    gamma : float, array-like or None, default=None
        Elementwise scale over the normalized axes (their shape, or flat).
    beta : float, array-like or None, default=None
        Elementwise shift over the normalized axes.

    Attributes
    ----------
    n_features_in_ : int
        Number of values along ``axis`` (the columns of 2-D data).
    {{feature_names_in_}}

    See Also
    --------
    skbn.functional.layer_norm_forward : The same, with a backward pass.
    sklearn.preprocessing.Normalizer : Scales rows to unit norm, no centering.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn import LayerNormalizer
    >>> X = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 30.0]])
    >>> np.round(LayerNormalizer().fit_transform(X), 4)
    array([[-1.2247,  0.    ,  1.2247],
           [-0.7071, -0.7071,  1.4142]])
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **_PerSampleNormalizer._parameter_constraints,
        "axis": _params.LAYER_AXIS,
    }

    def __init__(
        self,
        *,
        eps: float = 1e-5,
        axis: int | tuple[int, ...] = -1,
        gamma: float | ArrayLike | None = None,
        beta: float | ArrayLike | None = None,
    ) -> None:
        super().__init__(eps=eps, axis=axis, gamma=gamma, beta=beta)

    def _view(self, X: np.ndarray) -> tuple[Any, Any]:
        x5, perm = layer_view(X, self.axis)
        return x5, perm


@shared_docs
class GroupNormalizer(_PerSampleNormalizer):
    """Group normalization: each sample's channels normalized in groups.

    The channels along ``axis`` are split into ``n_groups`` consecutive
    groups of equal size; the values of one sample in one group (every
    position of its channels) are normalized by their own mean and variance,
    then scaled and shifted per channel (Wu and He 2018).  ``n_groups=1`` is
    layer norm over the channels and positions; ``n_groups`` equal to the
    number of channels is instance norm.

    {{per_sample_output}}

    Parameters
    ----------
    n_groups : int >= 1
        Number of groups; it must divide the number of channels.
    {{eps}}
    axis : int, default=1
        The channel axis: ``1`` for ``(N, C, H, W)`` and for the columns of
        2-D data, ``-1`` for channels-last images.
    {{channel_affine_and_attributes}}

    See Also
    --------
    skbn.functional.group_norm_forward : The same, with a backward pass.
    skbn.InstanceNormalizer : One channel per group.
    skbn.LayerNormalizer : All the features of a sample together.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn import GroupNormalizer
    >>> X = np.array([[1.0, 3.0, 10.0, 20.0]])
    >>> np.round(GroupNormalizer(n_groups=2).fit_transform(X), 4)
    array([[-1.,  1., -1.,  1.]])
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **_PerSampleNormalizer._parameter_constraints,
        "n_groups": _params.N_GROUPS,
    }

    def __init__(
        self,
        n_groups: int,
        *,
        eps: float = 1e-5,
        axis: int = 1,
        gamma: float | ArrayLike | None = None,
        beta: float | ArrayLike | None = None,
    ) -> None:
        self.n_groups = n_groups
        super().__init__(eps=eps, axis=axis, gamma=gamma, beta=beta)

    def _view(self, X: np.ndarray) -> tuple[Any, Any]:
        return channel_view(X, self.axis, self.n_groups), None


@shared_docs
class InstanceNormalizer(_PerSampleNormalizer):
    """Instance normalization: each channel of each sample normalized alone.

    Each channel of each sample is normalized over its positions (the axes
    other than 0 and ``axis``), then scaled and shifted per channel
    (Ulyanov, Vedaldi and Lempitsky 2016): group norm with one channel per
    group.  On 2-D data a channel of a sample is one value, which normalizes
    to ``beta``.

    {{per_sample_output}}

    Parameters
    ----------
    {{eps}}
    axis : int, default=1
        The channel axis: ``1`` for ``(N, C, L)`` or ``(N, C, H, W)``,
        ``-1`` for channels-last data.
    {{channel_affine_and_attributes}}

    See Also
    --------
    skbn.functional.instance_norm_forward : The same, with a backward pass.
    skbn.GroupNormalizer : Several channels in each group.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn import InstanceNormalizer
    >>> X = np.array([[[1.0, 3.0], [0.0, 10.0]]])  # (N=1, C=2, L=2)
    >>> np.round(InstanceNormalizer().fit_transform(X), 4)
    array([[[-1.,  1.],
            [-1.,  1.]]])
    """

    def __init__(
        self,
        *,
        eps: float = 1e-5,
        axis: int = 1,
        gamma: float | ArrayLike | None = None,
        beta: float | ArrayLike | None = None,
    ) -> None:
        super().__init__(eps=eps, axis=axis, gamma=gamma, beta=beta)

    def _view(self, X: np.ndarray) -> tuple[Any, Any]:
        return channel_view(X, self.axis, None), None
