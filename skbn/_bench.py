"""Peers and interleaved timing, shared by ``skbn bench``, the asv suite and
``benchmarks/compare.py``.

Each peer wraps one implementation behind the same six operations so that a
benchmark names an operation and a peer, nothing else.  An operation a peer
does not have raises ``NotImplementedError`` (asv then skips that case).

:func:`run` times cases interleaved: each repetition runs every case once, in
turn, so that a slow moment of a shared machine hits all cases alike.
"""

import time
from dataclasses import dataclass

import numpy as np

from .batch_norm import BatchNormalizer

OPERATIONS = (
    "fit",
    "partial_fit",
    "transform",
    "fit_transform",
    "partial_fit_transform",
    "inverse_transform",
)


def _reduce_axes(ndim, axis):
    axis = axis % ndim
    return tuple(a for a in range(ndim) if a != axis)


def _per_feature_shape(ndim, axis):
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return shape


class Peer:
    """One implementation of batch normalization, fitted on ``X`` once."""

    name = "peer"

    def __init__(self, X, axis=-1):
        self.X = X
        self.axis = axis

    def _missing(self, *args, **kwargs):
        raise NotImplementedError(f"{self.name} has no such operation")

    fit = partial_fit = transform = fit_transform = _missing
    partial_fit_transform = inverse_transform = _missing


class SkbnPeer(Peer):
    """skbn's :class:`~skbn.BatchNormalizer`."""

    name = "skbn"

    def __init__(self, X, axis=-1):
        super().__init__(X, axis)
        self.bn = BatchNormalizer(axis=axis).fit(X)
        self.Y = self.bn.transform(X)

    def fit(self, X):
        return self.bn.fit(X)

    def partial_fit(self, X):
        return self.bn.partial_fit(X)

    def transform(self, X):
        return self.bn.transform(X)

    def fit_transform(self, X):
        return self.bn.fit_transform(X)

    def partial_fit_transform(self, X):
        return self.bn.partial_fit_transform(X)

    def inverse_transform(self, X):
        return self.bn.inverse_transform(X)


class SeedPeer(Peer):
    """The seed documents' NumPy ``BatchNormalization`` class.

    ``fit`` computes ``np.mean``/``np.var`` of the batch, updates the running
    statistics with momentum and returns the batch normalized by its own
    statistics; ``transform`` normalizes with the running statistics.
    """

    name = "seed numpy"

    def __init__(self, X, axis=-1, epsilon=1e-5, momentum=0.9):
        super().__init__(X, axis)
        self.epsilon = epsilon
        self.momentum = momentum
        self.reduce = _reduce_axes(X.ndim, axis)
        self.shape = _per_feature_shape(X.ndim, axis)
        c = X.shape[axis]
        self.gamma = np.ones(c)
        self.beta = np.zeros(c)
        self.running_mean = np.zeros(c)
        self.running_var = np.zeros(c)
        self.fit(X)

    def _b(self, v):
        return v.reshape(self.shape)

    def fit(self, X):
        batch_mean = np.mean(X, axis=self.reduce)
        batch_var = np.var(X, axis=self.reduce)
        m = self.momentum
        self.running_mean = m * self.running_mean + (1 - m) * batch_mean
        self.running_var = m * self.running_var + (1 - m) * batch_var
        X_hat = (X - self._b(batch_mean)) / np.sqrt(self._b(batch_var) + self.epsilon)
        return self._b(self.gamma) * X_hat + self._b(self.beta)

    partial_fit = partial_fit_transform = fit_transform = fit

    def transform(self, X):
        X_hat = (X - self._b(self.running_mean)) / np.sqrt(
            self._b(self.running_var) + self.epsilon
        )
        return self._b(self.gamma) * X_hat + self._b(self.beta)

    def inverse_transform(self, X):
        std = np.sqrt(self._b(self.running_var) + self.epsilon)
        return (X - self._b(self.beta)) / self._b(self.gamma) * std + self._b(
            self.running_mean
        )


class ScalerPeer(Peer):
    """scikit-learn's ``StandardScaler`` (2-D data, per column only)."""

    name = "StandardScaler"

    def __init__(self, X, axis=-1):
        from sklearn.preprocessing import StandardScaler

        if X.ndim != 2 or axis % 2 != 1:
            raise NotImplementedError("StandardScaler normalizes 2-D columns only")
        super().__init__(X, axis)
        self.cls = StandardScaler
        self.ss = StandardScaler().fit(X)

    def fit(self, X):
        return self.cls().fit(X)

    def partial_fit(self, X):
        return self.ss.partial_fit(X)

    def transform(self, X):
        return self.ss.transform(X)

    def fit_transform(self, X):
        return self.cls().fit(X).transform(X)

    def inverse_transform(self, X):
        return self.ss.inverse_transform(X)


class TorchPeer(Peer):
    """``torch.nn.functional.batch_norm`` on the CPU (channels on axis 1).

    Training mode computes the batch statistics, updates the running ones and
    normalizes in one call, so it stands for ``fit_transform``,
    ``partial_fit`` and ``partial_fit_transform``; eval mode for
    ``transform``.
    """

    name = "torch"

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

    def _t(self, X):
        return self.tX if X is self.X else self.torch.from_numpy(X)

    def fit_transform(self, X):
        return self.bn(self._t(X), None, None, training=True)

    def partial_fit_transform(self, X):
        return self.bn(self._t(X), self.rm, self.rv, training=True, momentum=0.1)

    partial_fit = partial_fit_transform

    def transform(self, X):
        return self.bn(self._t(X), self.rm, self.rv, training=False)


PEERS = {p.name: p for p in (SkbnPeer, SeedPeer, ScalerPeer, TorchPeer)}


@dataclass
class Result:
    """Median time of one case, in seconds, and all its samples."""

    name: str
    median: float
    samples: list


def cases(X, operations=("fit", "transform", "fit_transform"), threads=2, axis=-1):
    """Callables to time on ``X``, keyed by a display name.

    Parameters
    ----------
    X : ndarray
    operations : sequence of str
        Names from :data:`OPERATIONS`.
    threads : int
        Threads for torch (skbn uses Numba's setting).
    axis : int
        Feature axis.

    Returns
    -------
    dict of str to callable
        Includes ``X.copy()`` and ``np.copyto`` into a preallocated array,
        the memory-bandwidth yardsticks.
    """
    out = np.empty_like(X)
    c = {"X.copy()": X.copy, "np.copyto (preallocated)": lambda: np.copyto(out, X)}
    for cls in PEERS.values():
        try:
            peer = cls(X, axis) if cls is not TorchPeer else cls(X, axis, threads)
        except NotImplementedError:
            continue
        for op in operations:
            if getattr(type(peer), op) is Peer._missing:
                continue
            arg = peer.Y if op == "inverse_transform" and cls is SkbnPeer else X
            c[f"{peer.name} {op}"] = (lambda f, a: lambda: f(a))(getattr(peer, op), arg)
    return c


def run(named_cases, repeats=7, warmup=1):
    """Time each case ``repeats`` times, interleaved; return medians.

    Parameters
    ----------
    named_cases : dict of str to callable
    repeats : int
    warmup : int
        Untimed rounds first (JIT compilation, page faults of first use).

    Returns
    -------
    dict of str to Result
    """
    for _ in range(warmup):
        for f in named_cases.values():
            f()
    samples = {k: [] for k in named_cases}
    for _ in range(repeats):
        for k, f in named_cases.items():
            t0 = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t0)
    return {k: Result(k, float(np.median(v)), v) for k, v in samples.items()}


def table(results, reference="skbn fit_transform"):
    """Format results as a text table with ratios to ``reference``."""
    ref = results[reference].median
    lines = [f"{'case':36s} {'median ms':>10s} {'/ ' + reference:>24s}"]
    for r in results.values():
        lines.append(f"{r.name:36s} {r.median * 1e3:10.2f} {r.median / ref:24.2f}")
    return "\n".join(lines)
