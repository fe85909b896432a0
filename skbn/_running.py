"""The engine of :class:`~skbn.BatchNormalizer`: its fitted state, one
training step, and the normalize step, on whichever backend runs the call.

Each public method of the estimator is one call here: ``fit``,
``partial_fit``, ``fit_transform`` and ``partial_fit_transform`` are
:meth:`RunningStatsMixin._train` with a different output, ``transform`` and
``inverse_transform`` are :meth:`RunningStatsMixin._apply`.  The backend is
chosen once per call (:meth:`RunningStatsMixin._backend`), and the math is
:mod:`skbn._core`'s.
"""

import math
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _monitor, _params
from ._backends import check_device, for_input
from ._backends.numpy import WRITE_BY_BATCH, WRITE_BY_RUNNING
from ._core.moments import ema_update, samples_seen
from ._core.norm import inverse_coefficients, normalize_coefficients
from ._core.views import check_axis
from ._fitted import check_fitted_vectors, check_samples_seen, feature_vector


def _typed(value: Any) -> Any:
    """``value`` with the type of each part, as a key that compares equal
    only to the same setting: ``1 == 1.0 == True`` in Python, but ``axis=1.0``
    or ``center=1`` must be validated again.  Lists become tuples, so that a
    list changed in place after validation does not compare equal."""
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_typed(v) for v in value))
    return (type(value), value)


class RunningStatsMixin:
    """Fitting and applying momentum running statistics (see the module)."""

    running_mean_: np.ndarray
    running_var_: np.ndarray
    _seen: np.ndarray
    n_samples_seen_: Any
    n_batches_seen_: int

    # -- parameters and state ---------------------------------------------------

    def _check_params(self) -> None:
        """Validate the parameters, once per distinct setting.

        Full validation costs ~30 µs, as much as normalizing a small batch, so
        a streaming loop pays it only when a parameter changed.
        """
        key = _typed(
            (
                self.momentum,
                self.ema,
                self.eps,
                self.axis,
                self.with_mean,
                self.with_std,
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

    def _effective_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``gamma`` and ``beta`` as ``transform`` applies them."""
        n = self.n_features_in_
        gamma = self.gamma_ if self.scale else np.ones(n)
        beta = self.beta_ if self.center else np.zeros(n)
        return gamma, beta

    def _standard(self) -> bool:
        """Whether the normalize step subtracts the mean and divides by the
        standard deviation (the defaults), which the fused kernels do."""
        return bool(self.with_mean and self.with_std)

    def _coefficients(
        self,
        mean: np.ndarray,
        var: np.ndarray,
        affine: tuple[np.ndarray, np.ndarray],
        inverse: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``shift, scale, offset`` of the normalize step by ``mean`` and
        ``var`` (or of its inverse), with ``with_mean`` and ``with_std``."""
        make = inverse_coefficients if inverse else normalize_coefficients
        return make(  # type: ignore[no-any-return]
            mean,
            var,
            *affine,
            float(self.eps),
            with_mean=self.with_mean,
            with_std=self.with_std,
        )

    def _backend(self, X: Any) -> Any:
        """The backend that runs this call: the one place where the
        estimator chooses one (:func:`skbn._backends.for_input`)."""
        return for_input(X, self.device)

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

    def _start(
        self,
        n_features: int,
        axes: tuple[int, ...],
        ndim: int,
        affine: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """The fitted state of a fit before its first batch is folded in
        (``affine``: ``gamma_`` and ``beta_`` when already made)."""
        gamma, beta = self._initial_affine(n_features) if affine is None else affine
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
            and self._standard()
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
            check_samples_seen(self.n_samples_seen_, self.n_features_in_)
        self._check_params()
        backend = self._backend(X)
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
        y = None
        ghost = self.renorm is not None or self.virtual_batch_size is not None
        if output == WRITE_BY_BATCH and ghost and not self._standard():
            raise ValueError(
                "renorm and virtual_batch_size normalize by the batch's mean and "
                "standard deviation; they need with_mean=True and "
                f"with_std=True (got with_mean={self.with_mean!r}, "
                f"with_std={self.with_std!r})."
            )
        if output == WRITE_BY_BATCH and ghost:
            # Batch Renormalization or ghost batches: the moments of each
            # ghost batch, taken once, normalize it and merge into the batch's.
            vbs = _params.check_virtual_batch_size(
                self.virtual_batch_size, layout.shape[0], layout.axes
            )
            prior = None if reset else (self.running_mean_, self.running_var_)
            batch, y = backend.train_normalize(
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
        elif output == WRITE_BY_BATCH and self._standard():
            batch, y = backend.train_forward(
                layout, sample_weight, gamma, beta, eps, names
            )
        elif output == WRITE_BY_BATCH:
            # The fused kernels subtract the mean and divide by the standard
            # deviation; without either, the moments and then the normalize
            # step with the coefficients of with_mean and with_std.
            batch = backend.moments(layout, sample_weight, names)
            shift, scale, offset = self._coefficients(
                batch.mean, batch.var, (gamma, beta)
            )
            y = backend.normalize(layout, shift, scale, offset, None, names)
        else:
            batch = backend.moments(layout, sample_weight, names)
        if reset:
            self._start(n_features, layout.axes, len(layout.shape), (gamma, beta))
        self._fold_in(batch, layout.shape, layout.axes)
        if output == WRITE_BY_RUNNING:
            shift, scale, offset = self._coefficients(
                self.running_mean_, self.running_var_, (gamma, beta)
            )
            y = backend.normalize(layout, shift, scale, offset, None, names)
        return y

    def _fold_in(self, batch: Any, shape: Any, axes: tuple[int, ...]) -> None:
        """Fold the moments of a batch of ``shape`` (feature ``axes``) into
        the running statistics and the counts."""
        mean, var, seen = ema_update(
            self.running_mean_,
            self.running_var_,
            self._seen,
            batch,
            self.momentum,
            self.ema,
        )
        self.running_mean_, self.running_var_, self._seen = mean, var, seen
        n_samples = shape[0]
        if 0 in axes:
            # Axis 0 holds features: every sample is seen, whatever is NaN.
            count, per_sample = np.full(batch.count.shape, float(n_samples)), 1
        else:
            count = batch.count
            per_sample = math.prod(
                shape[i] for i in range(1, len(shape)) if i not in axes
            )
        self.n_samples_seen_ = samples_seen(self.n_samples_seen_, count, per_sample)
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
        if not fitted:
            # fit's state before its first batch (gamma and beta checked
            # first); undone below if the batch must take the general path.
            self._start(X.shape[1], (1,), 2)
            # What the feature-name check does on a fit from a plain ndarray.
            self.__dict__.pop("feature_names_in_", None)
        gamma, beta = self._effective_affine()
        res = backend.small_train(
            X,
            (self.running_mean_, self.running_var_, self._seen),
            self.momentum,
            self.ema,
            gamma,
            beta,
            self.eps,
            output,
        )
        if res is None:
            if not fitted:
                self._reset()
            return False, None
        self.running_mean_, self.running_var_, self._seen, y = res
        # Not +=: an array of counts may be shared with the caller.
        self.n_samples_seen_ = self.n_samples_seen_ + X.shape[0]
        self.n_batches_seen_ += 1
        return True, y

    # -- applying -----------------------------------------------------------------

    def _apply(self, X: Any, copy: bool | None, inverse: bool) -> Any:
        """Normalize ``X`` with the running statistics, or undo it."""
        # The running mean exists exactly when the estimator is fitted; even
        # check_is_fitted(self, "running_mean_") costs microseconds, as much
        # as a small batch's arithmetic, so it only runs to raise.
        if "running_mean_" not in self.__dict__:
            check_is_fitted(self, "running_mean_")
        # Before any kernel reads them (a training loop may assign them).
        check_fitted_vectors(self)
        self._check_params()
        backend = self._backend(X)
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
        shift, scale, offset = self._coefficients(mean, var, (gamma, beta), inverse)
        out = backend.output_buffer(layout, copy, names)
        return backend.normalize(layout, shift, scale, offset, out, names)
