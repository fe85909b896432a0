"""``BatchNormalizer``: batch normalization as a scikit-learn transformer."""

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _monitor, _params
from ._backends import check_device, for_input
from ._backends.numpy import WRITE_BY_BATCH, WRITE_BY_RUNNING, WRITE_NOTHING
from ._core.moments import ema_update
from ._core.norm import coefficients, inverse_coefficients
from ._core.views import check_axis
from ._interop import InteropMixin
from ._sklearn_compat import wrap_data_with_container
from ._state import StateMixin
from ._validation import (
    FITTED_VECTORS,
    AtomicMixin,
    SpecMixin,
    check_fitted_vectors,
    feature_vector,
)


def _typed(value: Any) -> Any:
    """``value`` with the type of each part, as a key that compares equal
    only to the same setting: ``1 == 1.0 == True`` in Python, but ``axis=1.0``
    or ``center=1`` must be validated again.  Lists become tuples, so that a
    list changed in place after validation does not compare equal."""
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_typed(v) for v in value))
    return (type(value), value)


class BatchNormalizer(
    AtomicMixin,
    SpecMixin,
    StateMixin,
    InteropMixin,
    OneToOneFeatureMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Batch normalization with momentum running statistics.

    In training mode (:meth:`partial_fit_transform`) a batch is normalized by
    its own mean and variance; in inference mode (:meth:`transform`) by the
    running statistics accumulated over the batches seen::

        y = gamma * (x - mean) / sqrt(var + eps) + beta

    Statistics are mergeable moments accumulated in float64 in one pass over
    memory (two-pass within cache-resident blocks, merged with the update of
    Chan, Golub and LeVeque), so float32 data far from zero gets a variance
    exact to float64 rounding, and the result is bit-identical for any number
    of threads.  The variance is the biased (population) one, as in Keras,
    Flax and :class:`~sklearn.preprocessing.StandardScaler`.

    Parameters
    ----------
    momentum : float in [0, 1] or None, default=0.9
        Weight of the *old* running value in
        ``running = momentum * running + (1 - momentum) * batch``, the
        convention of Keras (0.99) and Flax.  PyTorch's ``momentum`` is the
        weight of the *new* batch: PyTorch's 0.1 is skbn's 0.9.  ``None`` pools
        every sample seen exactly (the statistics of the concatenation of all
        batches, the same numbers as ``StandardScaler.partial_fit``), which is
        what "precise BN" population statistics want; PyTorch's
        ``momentum=None`` instead averages batch statistics with equal weight.
    eps : float > 0, default=1e-5
        Added to the variance before the square root.
    axis : int or tuple of int, default=-1
        Feature axis or axes: each index along them keeps its own statistics,
        all other axes are reduced.  ``-1`` is per column of 2-D
        ``(n_samples, n_features)`` data and per channel of channels-last
        images; ``axis=1`` on ``(N, C, H, W)`` is PyTorch's ``BatchNorm2d``.
        Statistics are stored flat, ``(n_features,)``, in C order of the
        feature axes.
    center : bool, default=True
        Add ``beta``.  With ``center=False`` (Keras' name) ``beta_`` is zero.
    scale : bool, default=True
        Multiply by ``gamma``.  With ``scale=False`` ``gamma_`` is one.
    gamma : float or array-like of shape (n_features,), default=1.0
        Initial scale; copied into ``gamma_`` by :meth:`fit`.
    beta : float or array-like of shape (n_features,), default=0.0
        Initial shift; copied into ``beta_`` by :meth:`fit`.
    copy : bool, default=True
        If False, :meth:`transform` and :meth:`inverse_transform` overwrite
        their input when it is a writable float ndarray of a layout the
        kernels read directly.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the work runs.  ``"auto"`` follows the data: a CUDA array (a
        Numba device array, a CuPy array, a PyTorch CUDA tensor: anything with
        ``__cuda_array_interface__``) runs on its GPU and the result is of the
        same kind; anything else runs on the CPU.  ``"cuda"`` also takes host
        data, copies it to the GPU and returns NumPy.  ``"cpu"`` refuses GPU
        data.  The running statistics stay NumPy arrays on the host either
        way.  The GPU path needs the ``cuda`` extra (``pip install
        'skbn[cuda]'``); ``"cuda"`` raises ``ValueError`` where it cannot run.
        ``renorm`` and ``virtual_batch_size`` are CPU-only.
    track_batch_stats : bool, default=False
        Keep each batch's own mean and variance, and the running statistics
        after it, in :attr:`batch_stats_` (for drift monitoring, see
        :func:`skbn.plotting.plot_batch_stats`).
    max_batch_stats : int >= 1, default=1000
        With ``track_batch_stats``, how many of the latest batches are kept
        (a ring buffer: memory stays bounded on an endless stream).
    renorm : (r_max, d_max) or None, default=None
        Batch Renormalization (Ioffe 2017) in :meth:`partial_fit_transform`:
        the batch is normalized as ``(x - mean_B) / sigma_B * r + d`` with
        ``r`` and ``d`` clipped to ``[1/r_max, r_max]`` and
        ``[-d_max, d_max]`` and computed from the running statistics before
        the batch (see :func:`skbn.functional.batch_norm_forward`).
    virtual_batch_size : int >= 1 or None, default=None
        Ghost batch norm in :meth:`partial_fit_transform`: each group of this
        many consecutive samples is normalized by its own statistics (it must
        divide the batch size).  The running statistics are those of the
        whole batch.

    Attributes
    ----------
    running_mean_ : ndarray of shape (n_features,)
        Running mean (float64).  A feature with no observed value yet (all
        NaN) has mean 0 and variance 1, PyTorch's initial values.
    running_var_ : ndarray of shape (n_features,)
        Running biased variance (float64).
    gamma_ : ndarray of shape (n_features,)
        Scale applied after normalizing; a training loop may update it.
    beta_ : ndarray of shape (n_features,)
        Shift applied after normalizing; a training loop may update it.
    n_samples_seen_ : int
        Number of samples (rows, entries along axis 0) seen since the last
        :meth:`fit`.
    n_batches_seen_ : int
        Number of batches seen since the last :meth:`fit` (``fit`` counts one).
    n_features_in_ : int
        Number of features (indices along ``axis``).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during :meth:`fit`, when ``X`` has string
        column names.
    batch_stats_ : BatchStats
        Only with ``track_batch_stats=True``: arrays ``batch``, ``n_samples``,
        ``mean``, ``var``, ``running_mean`` and ``running_var`` of the last
        ``max_batch_stats`` batches, oldest first (see
        :class:`skbn._monitor.BatchStats`).

    See Also
    --------
    sklearn.preprocessing.StandardScaler : Exact statistics, no momentum.

    Notes
    -----
    A ``dask.array.Array`` is accepted by :meth:`fit`, :meth:`partial_fit`,
    :meth:`partial_fit_transform` and :meth:`transform`: the statistics are
    computed block by block and merged as moments (exact to float64 rounding;
    computed when the method is called), and the normalized output is a lazy
    dask array.  :meth:`save` and :meth:`load` keep the state in a file
    without pickle; :meth:`to_torch_state_dict`, :meth:`from_torch`,
    :meth:`to_keras_weights` and :meth:`from_keras_weights` convert to and from
    PyTorch and Keras batch norm.

    NaN values are ignored when fitting and stay NaN in :meth:`transform`;
    infinite values raise ``ValueError`` naming the feature.  A constant
    feature (variance 0) transforms to exactly ``beta``.  A call that raises
    leaves the estimator as it was.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn import BatchNormalizer
    >>> rng = np.random.default_rng(0)
    >>> bn = BatchNormalizer(momentum=0.9)
    >>> for _ in range(20):
    ...     batch = rng.normal(5.0, 2.0, size=(64, 3)).astype(np.float32)
    ...     y = bn.partial_fit_transform(batch)
    >>> bn.n_batches_seen_
    20
    >>> np.round(bn.running_mean_, 0)
    array([5., 5., 5.])
    >>> bn.transform(batch).dtype
    dtype('float32')
    """

    # Fitted attributes (annotations only: they exist once fitted).
    running_mean_: np.ndarray
    running_var_: np.ndarray
    _seen: np.ndarray
    n_samples_seen_: int
    n_batches_seen_: int

    _parameter_constraints: dict[str, list[Any]] = _params.BATCH_NORM
    # Fitted state that save/load keep besides the public attributes.
    _state_private = ("_axes", "_fit_axis", "_ndim", "_seen", "_batch_stats")
    _state_vectors = FITTED_VECTORS

    def __init__(
        self,
        *,
        momentum: float | None = 0.9,
        eps: float = 1e-5,
        axis: int | tuple[int, ...] = -1,
        center: bool = True,
        scale: bool = True,
        gamma: float | ArrayLike = 1.0,
        beta: float | ArrayLike = 0.0,
        copy: bool = True,
        device: str = "auto",
        track_batch_stats: bool = False,
        max_batch_stats: int = 1000,
        renorm: tuple[float, float] | None = None,
        virtual_batch_size: int | None = None,
    ) -> None:
        self.momentum = momentum
        self.eps = eps
        self.axis = axis
        self.center = center
        self.scale = scale
        self.gamma = gamma
        self.beta = beta
        self.copy = copy
        self.device = device
        self.track_batch_stats = track_batch_stats
        self.max_batch_stats = max_batch_stats
        self.renorm = renorm
        self.virtual_batch_size = virtual_batch_size

    # -- parameters and state ---------------------------------------------------

    def _check_params(self) -> None:
        """Validate the parameters, once per distinct setting.

        Full validation costs ~30 µs, as much as normalizing a small batch, so
        a streaming loop pays it only when a parameter changed.
        """
        key = _typed(
            (
                self.momentum,
                self.eps,
                self.axis,
                self.center,
                self.scale,
                self.copy,
                self.device,
                self.track_batch_stats,
                self.max_batch_stats,
                self.renorm,
                self.virtual_batch_size,
            )
        )
        if getattr(self, "_checked_params", None) == key:
            return
        self._validate_params()
        check_axis(self.axis)
        _params.check_renorm(self.renorm)
        check_device(self.device)
        self._checked_params = key

    def _reset(self) -> None:
        for name in (
            "running_mean_",
            "running_var_",
            "gamma_",
            "beta_",
            "n_samples_seen_",
            "n_batches_seen_",
            "n_features_in_",
            "_seen",
            "_batch_stats",
        ):
            self.__dict__.pop(name, None)

    def _initial_affine(self, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """``gamma_`` and ``beta_`` as a fit starts them.  Both parameters are
        checked even when ``scale=False`` / ``center=False`` drop them."""
        gamma = feature_vector(self.gamma, n_features, "gamma")
        beta = feature_vector(self.beta, n_features, "beta")
        return (
            gamma if self.scale else np.ones(n_features),
            beta if self.center else np.zeros(n_features),
        )

    def _start(self, n_features: int, axes: tuple[int, ...], ndim: int) -> None:
        """The fitted state of a fit before its first batch is folded in."""
        gamma, beta = self._initial_affine(n_features)
        self.n_features_in_ = n_features
        self._axes = axes
        self._fit_axis = self.axis
        self._ndim = ndim
        self.gamma_, self.beta_ = gamma, beta
        self.running_mean_ = np.zeros(n_features)
        self.running_var_ = np.ones(n_features)
        self._seen = np.zeros(n_features)
        self.n_samples_seen_ = 0
        self.n_batches_seen_ = 0

    def _plain_rows(self, X: np.ndarray, fitted: bool) -> bool:
        """Whether this estimator's settings allow the one-call path of the
        NumPy backend for ``X`` (see :mod:`skbn._backends.numpy`): per-column
        statistics of 2-D data, nothing optional switched on."""
        if not (
            type(self.axis) is int
            and self.axis in (-1, 1)
            and not self.track_batch_stats
            and self.renorm is None
            and self.virtual_batch_size is None
        ):
            return False
        d = self.__dict__
        return not fitted or (
            "feature_names_in_" not in d
            and d.get("_ndim") == 2
            and d.get("_axes") == (1,)
            and X.shape[1] == d["n_features_in_"]
            and self.axis == d["_fit_axis"]
        )

    # -- training ---------------------------------------------------------------

    def _train(self, X: Any, sample_weight: Any, output: int) -> Any:
        """One training step: fold the batch ``X`` into the running statistics
        and, as ``output`` says, normalize it by its own statistics
        (``WRITE_BY_BATCH``) or by the updated running ones
        (``WRITE_BY_RUNNING``).  Returns the output, or None."""
        fitted = "running_mean_" in self.__dict__
        if fitted:
            check_fitted_vectors(self)
        self._check_params()
        # The one place where this estimator chooses a backend.
        backend = for_input(X, self.device)
        if (
            sample_weight is None
            and backend.small_input(X)
            and self._plain_rows(X, fitted)
        ):
            done, y = self._small_train(backend, X, fitted, output)
            if done:
                return y
        reset = not fitted
        layout, n_features = backend.validate(X, self._spec(reset), reset=reset)
        names = self.__dict__.get("feature_names_in_")
        if reset:
            gamma, beta = self._initial_affine(n_features)
        else:
            gamma, beta = self._effective_affine()
        eps = float(self.eps)
        plain = self.renorm is None and self.virtual_batch_size is None
        prior = None if reset else (self.running_mean_, self.running_var_)
        y = None
        if output == WRITE_BY_BATCH and plain:
            batch, y = backend.train_forward(
                layout, sample_weight, gamma, beta, eps, names
            )
        else:
            batch = backend.moments(layout, sample_weight, names)
        if reset:
            self._start(n_features, layout.axes, len(layout.shape))
        self._fold_in(batch, layout.shape[0])
        if output == WRITE_BY_BATCH and not plain:
            vbs = _params.check_virtual_batch_size(
                self.virtual_batch_size, layout.shape[0], layout.axes
            )
            y = backend.train_normalize(
                layout,
                sample_weight,
                gamma,
                beta,
                eps,
                prior,
                self.renorm,
                vbs,
                names,
            )
        elif output == WRITE_BY_RUNNING:
            scale, offset = coefficients(self.running_var_, gamma, beta, eps)
            y = backend.normalize(
                layout, self.running_mean_, scale, offset, None, names
            )
        return y

    def _fold_in(self, batch: Any, n_samples: int) -> None:
        """Fold a batch's moments into the running statistics."""
        mean, var, seen = ema_update(
            self.running_mean_, self.running_var_, self._seen, batch, self.momentum
        )
        self.running_mean_, self.running_var_, self._seen = mean, var, seen
        self.n_samples_seen_ += n_samples
        self.n_batches_seen_ += 1
        if self.track_batch_stats:
            self._batch_stats = _monitor.record(
                getattr(self, "_batch_stats", ()),
                self.max_batch_stats,
                self.n_batches_seen_,
                n_samples,
                batch,
                mean,
                var,
            )

    def _small_train(
        self, backend: Any, X: np.ndarray, fitted: bool, output: int
    ) -> tuple[bool, Any]:
        """The training step of a small batch in one compiled call.

        ``(False, None)``, and nothing changed, when the batch holds NaN or
        infinity: the general path then handles it.
        """
        n = X.shape[1]
        if fitted:
            running = (self.running_mean_, self.running_var_, self._seen)
            gamma, beta = self._effective_affine()
        else:
            # Checked before anything is assigned.
            gamma, beta = self._initial_affine(n)
            running = (np.zeros(n), np.ones(n), np.zeros(n))
        res = backend.small_train(
            X, running, self.momentum, gamma, beta, self.eps, output
        )
        if res is None:
            return False, None
        if not fitted:
            # What the feature-name check does on a fit from a plain ndarray.
            self.__dict__.pop("feature_names_in_", None)
            self._start(n, (1,), 2)
        self.running_mean_, self.running_var_, self._seen, y = res
        self.n_samples_seen_ += X.shape[0]
        self.n_batches_seen_ += 1
        return True, y

    def fit(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> "BatchNormalizer":
        """Forget all statistics, then take the exact statistics of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Training data.  NaN values are ignored.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample (entry along axis 0).

        Returns
        -------
        self : BatchNormalizer
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> bn = BatchNormalizer().fit(X)
        >>> bn.running_mean_, bn.running_var_
        (array([ 2., 20.]), array([  1., 100.]))
        """
        self._reset()
        return self.partial_fit(X, y, sample_weight=sample_weight)

    def fit_transform(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> Any:
        """Fit to ``X``, then normalize it with the statistics just fitted.

        The same result as ``fit(X).transform(X)``, with the input checked
        and laid out once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Training data.  NaN values are ignored when fitting.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        X_out : ndarray of the shape and float dtype of ``X``
            Normalized data, in the container chosen with ``set_output``.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> np.round(BatchNormalizer().fit_transform(X), 3)
        array([[-1., -1.],
               [ 1.,  1.]])
        """
        self._reset()
        return self._train(X, sample_weight, WRITE_BY_RUNNING)

    def partial_fit(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> "BatchNormalizer":
        """Update the running statistics with one mini-batch.

        The first batch initializes them (no zero-initialization bias); later
        batches update them with ``momentum`` (see the class docstring).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            One mini-batch.  NaN values are ignored.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        self : BatchNormalizer
            The updated estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(momentum=0.9)
        >>> bn = bn.partial_fit(np.full((4, 2), 1.0))  # the first batch sets them
        >>> bn = bn.partial_fit(np.full((4, 2), 21.0))
        >>> bn.running_mean_  # 0.9 * 1 + 0.1 * 21
        array([3., 3.])
        >>> bn.n_batches_seen_, bn.n_samples_seen_
        (2, 8)
        """
        self._train(X, sample_weight, WRITE_NOTHING)
        return self

    def partial_fit_transform(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> Any:
        """Training mode: update the running statistics and normalize the batch.

        The batch is normalized by its own (weighted) mean and variance, as a
        batch-norm layer does while training; the running statistics are
        updated as :meth:`partial_fit` does.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            One mini-batch.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        X_out : ndarray of the shape and float dtype of ``X``
            The batch normalized by its own statistics, in the container
            chosen with ``set_output``.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(momentum=0.9)
        >>> np.round(bn.partial_fit_transform(np.array([[0.0], [2.0]])), 3)
        array([[-1.],
               [ 1.]])
        >>> np.round(bn.partial_fit_transform(np.array([[10.0], [12.0]])), 3)
        array([[-1.],
               [ 1.]])
        >>> bn.running_mean_  # 0.9 * 1 + 0.1 * 11
        array([2.])
        """
        y_out = self._train(X, sample_weight, WRITE_BY_BATCH)
        return wrap_data_with_container("transform", y_out, X, self)

    # -- applying -----------------------------------------------------------------

    def _apply(self, X: Any, copy: bool | None, inverse: bool) -> Any:
        """Normalize ``X`` with the running statistics, or undo it."""
        # check_is_fitted(self) scans every attribute (~5 µs a call); the
        # running mean exists exactly when the estimator is fitted.
        check_is_fitted(self, "running_mean_")
        # Before any kernel reads them (a training loop may assign them).
        check_fitted_vectors(self)
        self._check_params()
        backend = for_input(X, self.device)
        copy = self.copy if copy is None else copy
        gamma, beta = self._effective_affine()
        mean, var, eps = self.running_mean_, self.running_var_, float(self.eps)
        if (
            not inverse
            and copy
            and backend.small_input(X)
            and self._plain_rows(X, fitted=True)
        ):
            y = backend.small_apply(X, mean, var, gamma, beta, eps)
            if y is not None:
                return y
            # NaN (kept) or infinity (an error): the general path tells.
        layout, _ = backend.validate(X, self._spec(reset=False), reset=False)
        names = self.__dict__.get("feature_names_in_")
        if inverse:
            shift, scale = inverse_coefficients(var, gamma, beta, eps)
            offset = mean
        else:
            shift = mean
            scale, offset = coefficients(var, gamma, beta, eps)
        out = backend.output_buffer(layout, copy, names)
        return backend.normalize(layout, shift, scale, offset, out, names)

    def transform(self, X: ArrayLike, copy: bool | None = None) -> Any:
        """Normalize ``X`` with the running statistics (inference mode).

        ``gamma_ * (X - running_mean_) / sqrt(running_var_ + eps) + beta_``,
        applied as one scale-and-shift pass.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Data to normalize.  NaN stays NaN.
        copy : bool, default=None
            Overrides the ``copy`` parameter for this call.

        Returns
        -------
        X_out : ndarray of the shape and float dtype of ``X``
            Normalized data (a lazy dask array for dask input).

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer().fit(np.array([[0.0], [2.0]]))  # mean 1, var 1
        >>> np.round(bn.transform(np.array([[1.0], [3.0]])), 3)
        array([[0.],
               [2.]])
        """
        return self._apply(X, copy, inverse=False)

    def inverse_transform(self, X: ArrayLike, copy: bool | None = None) -> Any:
        """Undo :meth:`transform` (up to rounding).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Normalized data.
        copy : bool, default=None
            Overrides the ``copy`` parameter for this call.

        Returns
        -------
        X_original : ndarray of the shape and float dtype of ``X``
            Data in the original units.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> bn = BatchNormalizer().fit(X)
        >>> np.allclose(bn.inverse_transform(bn.transform(X)), X)
        True
        """
        return self._apply(X, copy, inverse=True)

    @property
    def batch_stats_(self) -> Any:
        """Statistics of the latest batches (``track_batch_stats=True``).

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(momentum=0.5, track_batch_stats=True)
        >>> for shift in (0.0, 2.0, 4.0):
        ...     bn = bn.partial_fit(np.array([[shift], [shift + 2.0]]))
        >>> bn.batch_stats_.mean.ravel()
        array([1., 3., 5.])
        >>> bn.batch_stats_.running_mean.ravel()
        array([1. , 2. , 3.5])
        """
        if not hasattr(self, "_batch_stats"):
            raise AttributeError(
                "batch_stats_ is kept only with track_batch_stats=True, from the "
                "first batch fitted with it on."
            )
        history = self._batch_stats[-self.max_batch_stats :]
        return _monitor.stack(history, self.n_features_in_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
