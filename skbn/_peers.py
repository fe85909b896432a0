"""The peers of ``skbn bench``, the asv suite and ``benchmarks/compare.py``:
skbn, plain NumPy, StandardScaler and PyTorch behind the same six operations.

Each peer wraps one implementation so that a benchmark names an operation and
a peer, nothing else.  An operation a peer does not have raises
``NotImplementedError`` (asv then skips that case).  Each does what its
``description`` says, in the input's dtype where the peer allows, and states
the threads it runs on.
"""

import numpy as np

from .batch_norm import BatchNormalizer


def _reduce_axes(ndim, axis):
    axis = axis % ndim
    return tuple(a for a in range(ndim) if a != axis)


class Peer:
    """One implementation of batch normalization, fitted on ``X`` once.

    Attributes
    ----------
    name : str
        Its key in :data:`PEERS` (and the asv parameter value).
    label : str
        Its name in printed tables.
    description : str
        What its operations compute, printed under a table.
    """

    name = "peer"
    label = "peer"
    description = ""

    def __init__(self, X, axis=-1):
        self.X = X
        self.axis = axis

    @property
    def threads(self):
        """Threads its operations run on (NumPy ufuncs and reductions: 1)."""
        return 1

    def _missing(self, *args, **kwargs):
        raise NotImplementedError(f"{self.label} has no such operation")

    fit = partial_fit = transform = fit_transform = _missing
    partial_fit_transform = inverse_transform = _missing


def _forward(op, to):
    """A peer method that calls the method ``op`` of the peer's ``to``."""

    def method(self, X):
        return getattr(getattr(self, to), op)(X)

    method.__name__ = method.__qualname__ = op
    return method


class SkbnPeer(Peer):
    """skbn's :class:`~skbn.BatchNormalizer`."""

    name = label = "skbn"
    description = "BatchNormalizer() (Numba kernels); output in the input's dtype"

    def __init__(self, X, axis=-1):
        super().__init__(X, axis)
        self.bn = BatchNormalizer(axis=axis).fit(X)
        self.Y = self.bn.transform(X)

    @property
    def threads(self):
        """Numba's thread count (:func:`numba.get_num_threads`)."""
        import numba

        return numba.get_num_threads()

    # Each operation is the fitted estimator's method of the same name.
    fit = _forward("fit", "bn")
    partial_fit = _forward("partial_fit", "bn")
    transform = _forward("transform", "bn")
    fit_transform = _forward("fit_transform", "bn")
    partial_fit_transform = _forward("partial_fit_transform", "bn")
    inverse_transform = _forward("inverse_transform", "bn")


class NumpyPeer(Peer):
    """Plain NumPy: ``(X - X.mean(0)) / np.sqrt(X.var(0) + eps)``.

    Everything stays in the input's dtype: NumPy's own float32 reductions for
    float32 input, and float32 output, so the bytes read and written are
    those of skbn.  ``fit`` computes the mean and variance, ``transform``
    normalizes with them, ``fit_transform`` is the formula above and no more
    (no running statistics, no scale or shift).  ``partial_fit`` alone keeps
    running statistics (``momentum * running + (1 - momentum) * batch``), as
    skbn's ``partial_fit`` does; ``partial_fit_transform`` updates them and
    normalizes by the batch's statistics.
    """

    name = "numpy"
    label = "NumPy"
    description = (
        "(X - X.mean(0)) / np.sqrt(X.var(0) + eps) in the input's dtype, "
        "no running statistics"
    )

    def __init__(self, X, axis=-1, epsilon=1e-5, momentum=0.9):
        super().__init__(X, axis)
        self.reduce = _reduce_axes(X.ndim, axis)
        # A NumPy scalar of X's dtype: a Python float would do under NumPy 2's
        # promotion rules, but NumPy 1 promotes some cases to float64.
        self.epsilon = X.dtype.type(epsilon)
        self.momentum = X.dtype.type(momentum)
        self.fit(X)
        self.running_mean, self.running_var = self.mean, self.var

    def _statistics(self, X):
        # keepdims broadcasts against X along any feature axis.
        return X.mean(self.reduce, keepdims=True), X.var(self.reduce, keepdims=True)

    def fit(self, X):
        self.mean, self.var = self._statistics(X)
        return self

    def transform(self, X):
        return (X - self.mean) / np.sqrt(self.var + self.epsilon)

    def fit_transform(self, X):
        mean, var = self._statistics(X)
        return (X - mean) / np.sqrt(var + self.epsilon)

    def _update(self, X):
        """Fold the batch's statistics into the running ones; return them."""
        mean, var = self._statistics(X)
        m = self.momentum
        self.running_mean = m * self.running_mean + (1 - m) * mean
        self.running_var = m * self.running_var + (1 - m) * var
        return mean, var

    def partial_fit(self, X):
        self._update(X)
        return self

    def partial_fit_transform(self, X):
        mean, var = self._update(X)
        return (X - mean) / np.sqrt(var + self.epsilon)

    def inverse_transform(self, X):
        return X * np.sqrt(self.var + self.epsilon) + self.mean


class NumpyFloat64StatsPeer(NumpyPeer):
    """NumPy with float64 statistics: the mean and variance of float32 input
    accumulated in float64 (as skbn's are), the output in the input's dtype.

    Only ``fit``, ``transform`` and ``fit_transform``.
    """

    name = "numpy-f64-stats"
    label = "NumPy f64 stats"
    description = (
        "the same formula, mean and var accumulated in float64, "
        "output cast back to the input's dtype"
    )

    def _statistics(self, X):
        mean = X.mean(self.reduce, dtype=np.float64, keepdims=True)
        var = X.var(self.reduce, dtype=np.float64, keepdims=True)
        return mean, var

    def transform(self, X):
        # The per-feature scale in float64, then one pass over X in its dtype.
        scale = (1.0 / np.sqrt(self.var + self.epsilon)).astype(X.dtype)
        return (X - self.mean.astype(X.dtype)) * scale

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    partial_fit = partial_fit_transform = inverse_transform = Peer._missing


class ScalerPeer(Peer):
    """scikit-learn's ``StandardScaler`` (2-D data, per column only).

    It keeps float32 input float32 (its statistics are float64).
    """

    name = label = "StandardScaler"
    description = (
        "StandardScaler().fit(X), .transform(X) (float64 statistics, "
        "output in the input's dtype)"
    )

    def __init__(self, X, axis=-1):
        from sklearn.preprocessing import StandardScaler

        if X.ndim != 2 or axis % 2 != 1:
            raise NotImplementedError("StandardScaler normalizes 2-D columns only")
        super().__init__(X, axis)
        self.cls = StandardScaler
        self.ss = StandardScaler().fit(X)

    def fit(self, X):
        return self.cls().fit(X)

    def fit_transform(self, X):
        return self.cls().fit(X).transform(X)

    partial_fit = _forward("partial_fit", "ss")
    transform = _forward("transform", "ss")
    inverse_transform = _forward("inverse_transform", "ss")


class TorchPeer(Peer):
    """``torch.nn.functional.batch_norm`` on the CPU (channels on axis 1).

    Training mode without running statistics stands for ``fit_transform``;
    with them (one call updates and normalizes) for ``partial_fit`` and
    ``partial_fit_transform``; eval mode for ``transform``.  Output in the
    input's dtype.
    """

    name = "torch"
    label = "PyTorch"
    description = (
        "torch.nn.functional.batch_norm on the CPU, output in the input's "
        "dtype; fit_transform keeps no running statistics"
    )

    def __init__(self, X, axis=-1, threads=None):
        try:
            import torch
        except ImportError as e:
            raise NotImplementedError("torch is not installed") from e
        if axis % X.ndim != 1:
            raise NotImplementedError("torch batch_norm normalizes axis 1 only")
        super().__init__(X, axis)
        if threads is not None:
            torch.set_num_threads(threads)
        self.torch = torch
        self.bn = torch.nn.functional.batch_norm
        c = X.shape[1]
        self.rm = torch.zeros(c, dtype=torch.from_numpy(X[:1]).dtype)
        self.rv = torch.ones(c, dtype=self.rm.dtype)
        self.tX = torch.from_numpy(X)

    @property
    def threads(self):
        """PyTorch's intra-op thread count (:func:`torch.get_num_threads`)."""
        return self.torch.get_num_threads()

    def _t(self, X):
        return self.tX if X is self.X else self.torch.from_numpy(X)

    def fit_transform(self, X):
        return self.bn(self._t(X), None, None, training=True)

    def partial_fit_transform(self, X):
        return self.bn(self._t(X), self.rm, self.rv, training=True, momentum=0.1)

    partial_fit = partial_fit_transform

    def transform(self, X):
        return self.bn(self._t(X), self.rm, self.rv, training=False)


# The keys are the asv suite's ``peer`` parameter values: keep them stable.
PEERS = {p.name: p for p in (SkbnPeer, NumpyPeer, ScalerPeer, TorchPeer)}
# Peers ``skbn bench`` times besides, left out of the asv grid.
EXTRA_PEERS = {p.name: p for p in (NumpyFloat64StatsPeer,)}
