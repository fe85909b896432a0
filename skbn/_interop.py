"""Converters between ``BatchNormalizer`` and PyTorch / Keras batch norm.

The conventions that differ, and what the converters do about them:

* **momentum.**  skbn (like Keras) weighs the *old* running value, PyTorch the
  *new* batch: torch ``momentum = 1 - skbn momentum``.  PyTorch's
  ``momentum=None`` (an equal-weight average of batch statistics) maps to
  skbn's ``None`` (exact pooled statistics), the closest skbn has.
* **variance.**  At inference both divide by ``sqrt(running_var + eps)``, so
  the running variance is copied as it is: a converted module computes what
  ``transform`` computes.  The difference is in how each *updates* it while
  training: PyTorch folds in the unbiased (``n - 1``) variance of each batch,
  skbn and Keras the biased one, so a module that keeps training in PyTorch
  accumulates slightly larger variances from then on.
* **num_batches_tracked** is ``n_batches_seen_``.  PyTorch does not record how
  many samples its statistics summarize; a loaded estimator has
  ``n_samples_seen_ = 0``, and its statistics count as already seen (a later
  ``partial_fit`` updates them with ``momentum``) when the module tracked at
  least one batch.
* **layout.**  PyTorch normalizes axis 1 of ``(N, C, *)``: ``BatchNorm1d`` on
  ``(N, C)`` or ``(N, C, L)``, ``BatchNorm2d`` on ``(N, C, H, W)``,
  ``BatchNorm3d`` on ``(N, C, D, H, W)``.  Keras normalizes ``axis=-1`` by
  default, as skbn does.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._core.views import normalize_axis
from ._fitted import check_fitted_vectors

# Data dimensions each torch module expects (its default when ambiguous).
_TORCH_NDIM = {"BatchNorm1d": 2, "BatchNorm2d": 4, "BatchNorm3d": 5}


def _import_torch(what):
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{what} needs PyTorch, which is not installed; see "
            "https://pytorch.org/get-started/ to install it."
        ) from exc
    return torch


def _vector(value, n, name):
    arr = np.array(value, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(
            f"{name} must have {n} values, one per feature; got {arr.size}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite.")
    return arr


def from_statistics(cls, params, mean, var, gamma, beta, *, n_batches, ndim):
    """A fitted ``cls`` whose running statistics are the given vectors.

    The attributes are those a first ``partial_fit`` sets; ``n_samples_seen_``
    is 0 because neither PyTorch nor Keras records it.
    """
    est = cls(**params)
    est._validate_params()
    mean = np.array(mean, dtype=np.float64).reshape(-1)
    n = mean.shape[0]
    if n < 1:
        # An estimator of no features could not transform anything, and its
        # own state file would not load.
        raise ValueError(
            "the running mean must hold at least one value (one per feature); "
            "got an empty array."
        )
    mean = _vector(mean, n, "the running mean")
    var = _vector(var, n, "the running variance")
    if np.any(var < 0):
        raise ValueError("the running variance must be non-negative.")
    if not isinstance(ndim, int) or ndim < 2:
        raise ValueError(f"ndim must be an int >= 2; got {ndim!r}.")
    axes = normalize_axis(est.axis, ndim)
    est.n_features_in_ = n
    est._axes = axes
    est._fit_axis = est.axis
    est._ndim = ndim
    est.gamma_ = _vector(gamma, n, "gamma") if est.scale else np.ones(n)
    est.beta_ = _vector(beta, n, "beta") if est.center else np.zeros(n)
    est.running_mean_ = mean
    est.running_var_ = var
    est._seen = np.full(n, 1.0 if n_batches > 0 else 0.0)
    est.n_samples_seen_ = 0
    est.n_batches_seen_ = int(n_batches)
    return est


class InteropMixin:
    """PyTorch and Keras converters for ``BatchNormalizer``."""

    def _check_standard(self, peer):
        """PyTorch's and Keras' batch norm always subtract the mean and
        divide by the standard deviation: refuse to export what does not."""
        with_mean = getattr(self, "with_mean", True)
        with_std = getattr(self, "with_std", True)
        if not (with_mean and with_std):
            raise ValueError(
                f"{peer} batch norm subtracts the mean and divides by the "
                "standard deviation; this estimator has "
                f"with_mean={with_mean!r}, with_std={with_std!r}, which "
                f"{peer} cannot express. Export an estimator with the "
                "defaults (with_mean=True, with_std=True)."
            )

    def to_torch_state_dict(self) -> dict:
        """The fitted state as a ``state_dict`` of ``torch.nn.BatchNorm*d``.

        Load it with ``module.load_state_dict(...)`` into a module with
        ``num_features = n_features_in_`` and ``momentum = 1 - momentum``
        (:meth:`to_torch_module` builds one).  In ``eval()`` the module then
        computes what :meth:`transform` computes.  The running variance is
        copied as is (both divide by it at inference; PyTorch only *updates*
        it with unbiased batch variances).  ``weight`` and ``bias`` are
        present unless both ``scale`` and ``center`` are False (PyTorch's
        ``affine=False``); a disabled one is exported as ones / zeros.

        Returns
        -------
        dict of str to torch.Tensor
            ``weight``, ``bias``, ``running_mean``, ``running_var`` (float64)
            and ``num_batches_tracked`` (int64).

        Examples
        --------
        >>> import numpy as np
        >>> import torch  # doctest: +SKIP
        >>> from skbn import BatchNormalizer
        >>> X = np.random.default_rng(0).normal(3.0, 2.0, size=(100, 4))
        >>> bn = BatchNormalizer().fit(X)
        >>> module = torch.nn.BatchNorm1d(4, momentum=0.1).double()  # doctest: +SKIP
        >>> _ = module.load_state_dict(bn.to_torch_state_dict())  # doctest: +SKIP
        >>> y = module.eval()(torch.from_numpy(X)).detach().numpy()  # doctest: +SKIP
        >>> bool(np.allclose(y, bn.transform(X)))  # doctest: +SKIP
        True
        """
        check_is_fitted(self, "running_mean_")
        check_fitted_vectors(self)
        self._check_standard("PyTorch")
        torch = _import_torch("to_torch_state_dict")
        state = {}
        if self.scale or self.center:
            gamma, beta = self._effective_affine()
            state["weight"] = torch.tensor(gamma, dtype=torch.float64)
            state["bias"] = torch.tensor(beta, dtype=torch.float64)
        state["running_mean"] = torch.tensor(self.running_mean_, dtype=torch.float64)
        state["running_var"] = torch.tensor(self.running_var_, dtype=torch.float64)
        state["num_batches_tracked"] = torch.tensor(
            self.n_batches_seen_, dtype=torch.long
        )
        return state

    def to_torch_module(self):
        """A ``torch.nn.BatchNorm1d/2d/3d`` (float64) holding the fitted state.

        The module class follows the data the estimator was fitted on (2-D or
        3-D: ``BatchNorm1d``, 4-D: ``BatchNorm2d``, 5-D: ``BatchNorm3d``),
        whose one feature axis must be axis 1, where PyTorch keeps channels.
        ``momentum`` is converted (``1 - momentum``; ``None`` stays ``None``),
        and ``eps`` and ``affine`` carried over.

        Returns
        -------
        torch.nn.Module
            In training mode, as a new module is; call ``eval()`` for inference.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(momentum=0.9, axis=1).fit(np.ones((8, 3, 4, 4)))
        >>> module = bn.to_torch_module()  # doctest: +SKIP
        >>> type(module).__name__, module.momentum  # doctest: +SKIP
        ('BatchNorm2d', 0.09999999999999998)
        """
        check_is_fitted(self, "running_mean_")
        check_fitted_vectors(self)
        torch = _import_torch("to_torch_module")
        if self._ndim > 5 or self._axes != (1,):
            raise ValueError(
                "to_torch_module needs an estimator fitted with its one feature "
                "axis at axis 1 of 2-D to 5-D data (PyTorch's (N, C, *) layout); "
                f"this one was fitted with axis={self._fit_axis!r} on "
                f"{self._ndim}-D data. Use to_torch_state_dict and permute the "
                "data instead."
            )
        module_cls = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d"}.get(
            self._ndim, "BatchNorm3d"
        )
        module = getattr(torch.nn, module_cls)(
            self.n_features_in_,
            eps=float(self.eps),
            momentum=None if self.momentum is None else 1.0 - self.momentum,
            affine=bool(self.scale or self.center),
            dtype=torch.float64,
        )
        module.load_state_dict(self.to_torch_state_dict())
        return module

    @classmethod
    def from_torch(cls, module, *, ndim=None):
        """A fitted estimator from a ``torch.nn.BatchNorm1d/2d/3d``.

        Parameters
        ----------
        module : torch.nn.modules.batchnorm._BatchNorm
            With ``track_running_stats=True``.
        ndim : int, default=None
            Dimensions of the data to transform: by default 2 for
            ``BatchNorm1d`` (pass 3 for ``(N, C, L)``), 4 for ``BatchNorm2d``
            and 5 for ``BatchNorm3d``.  The feature axis is axis 1.

        Returns
        -------
        BatchNormalizer
            With ``momentum = 1 - module.momentum`` (``None`` for ``None``),
            ``eps``, ``center = scale = module.affine``, the running statistics,
            ``gamma_``/``beta_`` from ``weight``/``bias`` and
            ``n_batches_seen_ = num_batches_tracked``.

        Examples
        --------
        >>> import torch  # doctest: +SKIP
        >>> from skbn import BatchNormalizer
        >>> module = torch.nn.BatchNorm2d(3, momentum=0.1)  # doctest: +SKIP
        >>> bn = BatchNormalizer.from_torch(module)  # doctest: +SKIP
        >>> bn.momentum, bn.axis, bn.running_var_  # doctest: +SKIP
        (0.9, 1, array([1., 1., 1.]))
        """
        torch = _import_torch("from_torch")
        if not isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            raise TypeError(
                "module must be a torch.nn.BatchNorm1d, BatchNorm2d or BatchNorm3d; "
                f"got {type(module).__name__}."
            )
        if module.running_mean is None:
            raise ValueError(
                "module has no running statistics (track_running_stats=False); "
                "there is nothing to convert."
            )
        if ndim is None:
            ndim = _TORCH_NDIM.get(type(module).__name__)
            if ndim is None:
                raise ValueError(
                    f"pass ndim: the data dimensions of a {type(module).__name__} "
                    "are not implied by its class."
                )

        def numpy(t):
            return t.detach().to("cpu", torch.float64).numpy()

        n = module.num_features
        params = {
            "momentum": None if module.momentum is None else 1.0 - module.momentum,
            "eps": float(module.eps),
            "axis": -1 if ndim == 2 else 1,
            "center": bool(module.affine),
            "scale": bool(module.affine),
        }
        return from_statistics(
            cls,
            params,
            numpy(module.running_mean),
            numpy(module.running_var),
            numpy(module.weight) if module.affine else np.ones(n),
            numpy(module.bias) if module.affine else np.zeros(n),
            n_batches=int(module.num_batches_tracked),
            ndim=ndim,
        )

    def to_keras_weights(self) -> list:
        """The fitted state in the order ``BatchNormalization.set_weights`` takes.

        ``[gamma, beta, moving_mean, moving_variance]``, without ``gamma``
        when ``scale=False`` and without ``beta`` when ``center=False``, as
        Keras omits those variables.  Keras' ``momentum`` and ``epsilon`` mean
        what skbn's ``momentum`` and ``eps`` mean; pass them to the layer.

        Returns
        -------
        list of ndarray of shape (n_features,), float64

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(center=False).fit(np.array([[1.0], [3.0]]))
        >>> bn.to_keras_weights()
        [array([1.]), array([2.]), array([1.])]
        """
        check_is_fitted(self, "running_mean_")
        check_fitted_vectors(self)
        self._check_standard("Keras")
        gamma, beta = self._effective_affine()
        weights = [gamma.copy()] if self.scale else []
        weights += [beta.copy()] if self.center else []
        return weights + [self.running_mean_.copy(), self.running_var_.copy()]

    @classmethod
    def from_keras_weights(
        cls,
        weights,
        *,
        momentum=0.99,
        eps=1e-3,
        center=True,
        scale=True,
        axis=-1,
        ndim=2,
    ):
        """A fitted estimator from Keras ``BatchNormalization.get_weights()``.

        Parameters
        ----------
        weights : list of array-like
            ``[gamma, beta, moving_mean, moving_variance]``, without ``gamma``
            if ``scale=False`` and without ``beta`` if ``center=False``.
        momentum : float or None, default=0.99
            The layer's ``momentum`` (Keras' default; same convention as skbn).
        eps : float, default=1e-3
            The layer's ``epsilon`` (Keras' default).
        center, scale : bool, default=True
            The layer's ``center`` and ``scale``.
        axis : int or tuple of int, default=-1
            The layer's ``axis``.
        ndim : int, default=2
            Dimensions of the data, e.g. 4 for ``(N, H, W, C)`` images.

        Returns
        -------
        BatchNormalizer
            ``n_batches_seen_`` is 1: Keras does not count batches, and the
            statistics count as already seen.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> w = [np.ones(2), np.zeros(2), np.array([1.0, 2.0]), np.array([4.0, 9.0])]
        >>> bn = BatchNormalizer.from_keras_weights(w, eps=0.0001)
        >>> bn.transform(np.array([[3.0, 5.0]])).round(3)
        array([[1., 1.]])
        """
        weights = list(weights)
        expected = 2 + bool(scale) + bool(center)
        if len(weights) != expected:
            names = ["gamma"] * scale + ["beta"] * center
            names += ["moving_mean", "moving_variance"]
            raise ValueError(
                f"weights must be [{', '.join(names)}] "
                f"for center={center}, scale={scale}: {expected} arrays; got "
                f"{len(weights)}."
            )
        mean, var = weights[-2], weights[-1]
        n = np.size(mean)
        gamma = weights[0] if scale else np.ones(n)
        beta = weights[int(bool(scale))] if center else np.zeros(n)
        params = {
            "momentum": momentum,
            "eps": eps,
            "axis": axis,
            "center": center,
            "scale": scale,
        }
        return from_statistics(
            cls, params, mean, var, gamma, beta, n_batches=1, ndim=ndim
        )
