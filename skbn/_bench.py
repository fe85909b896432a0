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


def _forward(op, to):
    """A peer method that calls the method ``op`` of the peer's ``to``."""

    def method(self, X):
        return getattr(getattr(self, to), op)(X)

    method.__name__ = method.__qualname__ = op
    return method


class SkbnPeer(Peer):
    """skbn's :class:`~skbn.BatchNormalizer`."""

    name = "skbn"

    def __init__(self, X, axis=-1):
        super().__init__(X, axis)
        self.bn = BatchNormalizer(axis=axis).fit(X)
        self.Y = self.bn.transform(X)

    # Each operation is the fitted estimator's method of the same name.
    fit = _forward("fit", "bn")
    partial_fit = _forward("partial_fit", "bn")
    transform = _forward("transform", "bn")
    fit_transform = _forward("fit_transform", "bn")
    partial_fit_transform = _forward("partial_fit_transform", "bn")
    inverse_transform = _forward("inverse_transform", "bn")


class NumpyPeer(Peer):
    """A plain NumPy ``BatchNormalization`` class, as a tutorial writes it.

    ``fit`` computes ``np.mean``/``np.var`` of the batch, updates the running
    statistics with momentum and returns the batch normalized by its own
    statistics; ``transform`` normalizes with the running statistics.
    """

    name = "numpy"

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

    def fit_transform(self, X):
        return self.cls().fit(X).transform(X)

    partial_fit = _forward("partial_fit", "ss")
    transform = _forward("transform", "ss")
    inverse_transform = _forward("inverse_transform", "ss")


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


PEERS = {p.name: p for p in (SkbnPeer, NumpyPeer, ScalerPeer, TorchPeer)}


@dataclass
class Result:
    """Median time of one case, in seconds, and all its samples."""

    name: str
    median: float
    samples: list


def cases(
    X,
    operations=("fit", "transform", "fit_transform"),
    threads=2,
    axis=-1,
    peers=tuple(PEERS),
):
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
    peers : sequence of str
        Names from :data:`PEERS`; those that cannot handle ``X`` are left out.

    Returns
    -------
    dict of str to callable
        Includes ``X.copy()`` and ``np.copyto`` into a preallocated array,
        the memory-bandwidth yardsticks.
    """
    out = np.empty_like(X)
    c = {"X.copy()": X.copy, "np.copyto (preallocated)": lambda: np.copyto(out, X)}
    for cls in (PEERS[name] for name in peers):
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


def sparse_data(shape, density, fmt="csr", dtype=np.float64, seed=0):
    """Random scipy.sparse data of ``shape`` and ``density``, values ``3 +
    N(0, 1)``, as a ``csr_matrix`` or ``csc_matrix`` (``fmt``)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.random(*shape, density=density, format=fmt, random_state=rng)
    X.data = 3.0 + rng.standard_normal(X.nnz)
    return X.astype(dtype)


def sparse_cases(X):
    """Callables to time on scipy.sparse ``X``: skbn's
    ``BatchNormalizer(with_mean=False, momentum=None)`` (pooled statistics,
    StandardScaler's) against ``StandardScaler(with_mean=False)``, each
    ``fit``, ``transform`` and ``fit_transform``, and ``X.copy()`` (what a
    transform that copies its input must at least do).

    Returns
    -------
    dict of str to callable
    """
    from sklearn.preprocessing import StandardScaler

    peers = {
        "skbn": lambda: BatchNormalizer(with_mean=False, momentum=None),
        "StandardScaler": lambda: StandardScaler(with_mean=False),
    }
    c = {"X.copy()": X.copy}
    for name, make in peers.items():
        fitted = make().fit(X)
        c[f"{name} fit"] = (lambda m: lambda: m().fit(X))(make)
        c[f"{name} transform"] = (lambda f: lambda: f.transform(X))(fitted)
        c[f"{name} fit_transform"] = (lambda m: lambda: m().fit_transform(X))(make)
    return c


def spread_table(results, reference="StandardScaler", subject="skbn"):
    """Results as a text table of medians and spread (min to max), with the
    time of ``reference`` over that of ``subject`` for each operation."""
    lines = [f"{'case':30s} {'median ms':>10s} {'min ms':>9s} {'max ms':>9s}"]
    for r in results.values():
        lines.append(
            f"{r.name:30s} {r.median * 1e3:10.2f} {min(r.samples) * 1e3:9.2f} "
            f"{max(r.samples) * 1e3:9.2f}"
        )
    lines.append("")
    for name in results:
        op = name.split(" ", 1)[1] if name.startswith(f"{subject} ") else None
        other = results.get(f"{reference} {op}")
        if op and other:
            ratio = other.median / results[name].median
            lines.append(f"{op:24s} {reference} / {subject}: {ratio:.2f}x")
    return "\n".join(lines)


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
    """Format results as a text table, with ratios to ``reference`` if given."""
    ref = results[reference].median if reference else None
    head = f"{'case':36s} {'median ms':>10s}"
    lines = [head + (f" {'/ ' + reference:>24s}" if ref else "")]
    for r in results.values():
        row = f"{r.name:36s} {r.median * 1e3:10.2f}"
        lines.append(row + (f" {r.median / ref:24.2f}" if ref else ""))
    return "\n".join(lines)


# Memory bounds, as the project's goals define them: ``X.copy()`` allocates
# and writes its output like ``transform`` does; one read of X costs half of
# ``np.copyto`` into a preallocated array (a read plus a write).
_BOUNDS = {
    "fit": lambda copy, copyto: copyto / 2,
    "partial_fit": lambda copy, copyto: copyto / 2,
    "transform": lambda copy, copyto: copy,
    "inverse_transform": lambda copy, copyto: copy,
    "fit_transform": lambda copy, copyto: copy + copyto / 2,
    "partial_fit_transform": lambda copy, copyto: copy + copyto / 2,
}


def report(results, operations, nbytes):
    """Peer ratios and memory-bound distances of one :func:`run`, as text.

    Parameters
    ----------
    results : dict of str to Result
    operations : sequence of str
    nbytes : int
        Size of the data, for the bandwidth line.

    Returns
    -------
    str
    """
    m = {k: v.median for k, v in results.items()}
    copy, copyto = m["X.copy()"], m["np.copyto (preallocated)"]
    lines = [
        f"copy bandwidth: {2 * nbytes / copyto / 1e9:.1f} GB/s "
        "(np.copyto: bytes read + written / time)",
        "",
        f"{'operation':24s} {'skbn ms':>9s} {'bound ms':>9s} {'/ bound':>8s}  "
        "peers (time / skbn)",
    ]
    for op in operations:
        if f"skbn {op}" not in m:
            continue
        t = m[f"skbn {op}"]
        bound = _BOUNDS[op](copy, copyto)
        peers = ", ".join(
            f"{name.rsplit(' ', 1)[0]} {m[name] / t:.1f}x"
            for name in m
            if name.endswith(f" {op}") and not name.startswith("skbn ")
        )
        lines.append(
            f"{op:24s} {t * 1e3:9.2f} {bound * 1e3:9.2f} {t / bound:8.2f}  {peers}"
        )
    return "\n".join(lines)


def accuracy(rows=1_000_000, features=8, offset=1e3, seed=0):
    """Max relative error of the variance of float32 data far from zero.

    Against a float64 two-pass reference, for skbn, NumPy's float32 ``var``
    and (when installed) torch's CPU ``batch_norm`` running variance.

    Returns
    -------
    dict of str to float
    """
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((rows, features)) + offset).astype(np.float32)
    ref = X.astype(np.float64).var(axis=0)
    out = {"skbn running_var_": BatchNormalizer().fit(X).running_var_}
    out["numpy float32 var"] = X.var(axis=0, dtype=np.float32)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        rm, rv = torch.zeros(features), torch.ones(features)
        torch.nn.functional.batch_norm(
            torch.from_numpy(X), rm, rv, training=True, momentum=1.0
        )
        # torch stores the unbiased variance; convert to the biased one.
        out["torch running_var"] = rv.double().numpy() * (rows - 1) / rows
    return {k: float(np.max(np.abs(v / ref - 1))) for k, v in out.items()}
