"""``BatchNormalizer``: batch normalization as a scikit-learn transformer."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._set_output import _wrap_data_with_container
from sklearn.utils.validation import check_is_fitted

from . import _moments
from ._kernels import cpu
from ._layout import Layout
from ._validation import atomic, feature_vector, validate_sample_weight, validate_X


class BatchNormalizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
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
        Where the work runs.  ``"auto"`` follows the data; this version has
        the CPU path only and ``"cuda"`` raises ``ValueError``.

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

    See Also
    --------
    sklearn.preprocessing.StandardScaler : Exact statistics, no momentum.

    Notes
    -----
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

    _parameter_constraints: dict = {
        "momentum": [Interval(Real, 0, 1, closed="both"), None],
        "eps": [Interval(Real, 0, None, closed="neither")],
        "axis": [Integral, tuple],
        "center": ["boolean"],
        "scale": ["boolean"],
        "gamma": [Real, "array-like"],
        "beta": [Real, "array-like"],
        "copy": ["boolean"],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(
        self,
        *,
        momentum=0.9,
        eps=1e-5,
        axis=-1,
        center=True,
        scale=True,
        gamma=1.0,
        beta=0.0,
        copy=True,
        device="auto",
    ):
        self.momentum = momentum
        self.eps = eps
        self.axis = axis
        self.center = center
        self.scale = scale
        self.gamma = gamma
        self.beta = beta
        self.copy = copy
        self.device = device

    # -- parameters -----------------------------------------------------------

    def _check_params(self):
        """Validate the parameters, once per distinct setting.

        Full validation costs ~30 µs, as much as normalizing a small batch, so
        a streaming loop pays it only when a parameter changed.
        """
        key = (
            self.momentum,
            self.eps,
            self.axis,
            self.center,
            self.scale,
            self.copy,
            self.device,
        )
        if getattr(self, "_checked_params", None) == key:
            return
        self._validate_params()
        if self.device == "cuda":
            raise ValueError(
                "device='cuda' is not available: this version of skbn has the "
                "CPU path only. Use device='cpu' or device='auto'."
            )
        self._checked_params = key

    def _reset(self):
        for name in (
            "running_mean_",
            "running_var_",
            "gamma_",
            "beta_",
            "n_samples_seen_",
            "n_batches_seen_",
            "n_features_in_",
            "_seen",
        ):
            self.__dict__.pop(name, None)

    # -- fitting ----------------------------------------------------------------

    @atomic
    def fit(self, X, y=None, sample_weight=None):
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
        """
        self._reset()
        return self.partial_fit(X, y, sample_weight=sample_weight)

    @atomic
    def partial_fit(self, X, y=None, sample_weight=None):
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
        """
        self._update(X, sample_weight)
        return self

    def _update(self, X, sample_weight):
        """Fold the batch ``X`` into the running statistics.

        Returns the layout of ``X`` and the batch moments, for the training
        mode to normalize with.
        """
        self._check_params()
        first = not hasattr(self, "running_mean_")
        X, axes, n_features = validate_X(self, X, reset=first)
        w = validate_sample_weight(sample_weight, X, axes)
        layout = Layout(X, axes)
        batch = _moments.moments(layout, w, getattr(self, "feature_names_in_", None))
        if first:
            # Everything is computed before anything is assigned, so a failure
            # (a bad gamma, say) leaves no half-fitted estimator behind.
            gamma = feature_vector(self.gamma, n_features, "gamma")
            beta = feature_vector(self.beta, n_features, "beta")
            self.n_features_in_ = n_features
            self._axes = axes
            self._fit_axis = self.axis
            self._ndim = X.ndim
            self.gamma_ = gamma if self.scale else np.ones(n_features)
            self.beta_ = beta if self.center else np.zeros(n_features)
            self.running_mean_ = np.zeros(n_features)
            self.running_var_ = np.ones(n_features)
            self._seen = np.zeros(n_features)
            self.n_samples_seen_ = 0
            self.n_batches_seen_ = 0
        mean, var, seen = _moments.ema_update(
            self.running_mean_, self.running_var_, self._seen, batch, self.momentum
        )
        self.running_mean_, self.running_var_, self._seen = mean, var, seen
        self.n_samples_seen_ += X.shape[0]
        self.n_batches_seen_ += 1
        return layout, batch

    @atomic
    def partial_fit_transform(self, X, y=None, sample_weight=None):
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
        """
        X_in = X
        layout, batch = self._update(X, sample_weight)
        y_out = self._apply(layout, batch.mean, batch.var, out=None)
        return _wrap_data_with_container("transform", y_out, X_in, self)

    # -- applying -----------------------------------------------------------------

    def _coefficients(self, var):
        return cpu.coefficients(
            var, self.gamma_, self.beta_, float(self.eps), self.scale, self.center
        )

    def _apply(self, layout, mean, var, out):
        scale, offset = self._coefficients(var)
        return _moments.affine(
            layout, mean, scale, offset, out, getattr(self, "feature_names_in_", None)
        )

    def _prepare(self, X, copy):
        # check_is_fitted(self) scans every attribute (~5 µs a call); the
        # running mean exists exactly when the estimator is fitted.
        check_is_fitted(self, "running_mean_")
        self._check_params()
        X, axes, _ = validate_X(self, X, reset=False)
        layout = Layout(X, axes)
        copy = self.copy if copy is None else copy
        # Writing into x3 is writing into X when x3 is a view of it, or into
        # a private converted copy otherwise; either honours copy=False.
        in_place = not copy and layout.x3.flags.writeable
        return layout, (layout.x3 if in_place else None)

    @atomic
    def transform(self, X, copy=None):
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
            Normalized data.
        """
        layout, out = self._prepare(X, copy)
        return self._apply(layout, self.running_mean_, self.running_var_, out)

    @atomic
    def inverse_transform(self, X, copy=None):
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
        """
        layout, out = self._prepare(X, copy)
        scale, offset = self._coefficients(self.running_var_)
        if not np.all(scale != 0):
            zero = np.flatnonzero(scale == 0)
            raise ValueError(
                f"inverse_transform is undefined where gamma_ is 0 (feature "
                f"{', '.join(map(str, zero[:5]))})."
            )
        return _moments.affine(
            layout,
            offset,
            1.0 / scale,
            self.running_mean_,
            out,
            getattr(self, "feature_names_in_", None),
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
