"""Peers and interleaved timing, shared by ``skbn bench``, ``skbn demo``, the
asv suite and ``benchmarks/compare.py``.

The peers (skbn, NumPy, StandardScaler, PyTorch) are in :mod:`skbn._peers`.
:func:`run` times cases interleaved: each round runs every case once, in
turn, so that a slow moment of a shared machine hits all cases alike, and the
ratio of two cases can be taken round by round.  :func:`timing_table` shows
each case's threads, output dtype, median and range.
"""

import time
from dataclasses import dataclass

import numpy as np

from ._peers import (
    EXTRA_PEERS,
    PEERS,
    NumpyFloat64StatsPeer,
    NumpyPeer,
    Peer,
    ScalerPeer,
    SkbnPeer,
    TorchPeer,
)
from .batch_norm import BatchNormalizer

# The peers are defined in skbn._peers and named here too: the asv suite and
# the scripts of benchmarks/ import them from this module.
__all__ = [
    "EXTRA_PEERS",
    "OPERATIONS",
    "PEERS",
    "Case",
    "NumpyFloat64StatsPeer",
    "NumpyPeer",
    "Peer",
    "Result",
    "ScalerPeer",
    "SkbnPeer",
    "TorchPeer",
    "accuracy",
    "cases",
    "ratio",
    "report",
    "run",
    "sparse_cases",
    "sparse_data",
    "timing_table",
]

OPERATIONS = (
    "fit",
    "partial_fit",
    "transform",
    "fit_transform",
    "partial_fit_transform",
    "inverse_transform",
)


class Case:
    """A callable to time, with the threads it runs on.

    Calling it calls ``f`` and keeps the dtype of what ``f`` returned (none
    for an estimator), so a table can show each row's output dtype.

    Parameters
    ----------
    f : callable
        Takes no argument.
    threads : int
        Threads ``f`` runs on.
    """

    def __init__(self, f, threads=1):
        self.f = f
        self.threads = threads
        self.out_dtype = None

    def __call__(self):
        out = self.f()
        dtype = getattr(out, "dtype", None)
        # torch.float32 -> float32, NumPy's dtype('float32') -> float32.
        self.out_dtype = None if dtype is None else str(dtype).rsplit(".", 1)[-1]
        return out


def _threads(f):
    return getattr(f, "threads", None)


@dataclass
class Result:
    """Median time of one case, in seconds, all its samples (in the order of
    the interleaved rounds), its threads and its output dtype."""

    name: str
    median: float
    samples: list
    threads: int | None = None
    out_dtype: str | None = None


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
        Threads for PyTorch (skbn runs on Numba's setting, NumPy and
        StandardScaler on one).
    axis : int
        Feature axis.
    peers : sequence of str
        Names from :data:`PEERS` or :data:`EXTRA_PEERS`; those that cannot
        handle ``X`` are left out.

    Returns
    -------
    dict of str to Case
        Named ``"<peer label> <operation>"``.  Includes ``X.copy()`` and
        ``np.copyto`` into a preallocated array, the memory-bandwidth
        yardsticks.
    """
    out = np.empty_like(X)
    c = {
        "X.copy()": Case(X.copy),
        "np.copyto (preallocated)": Case(lambda: np.copyto(out, X)),
    }
    known = {**PEERS, **EXTRA_PEERS}
    for cls in (known[name] for name in peers):
        try:
            peer = cls(X, axis) if cls is not TorchPeer else cls(X, axis, threads)
        except NotImplementedError:
            continue
        for op in operations:
            if getattr(type(peer), op) is Peer._missing:
                continue
            arg = peer.Y if op == "inverse_transform" and cls is SkbnPeer else X
            call = (lambda f, a: lambda: f(a))(getattr(peer, op), arg)
            c[f"{peer.label} {op}"] = Case(call, peer.threads)
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
    dict of str to Case
        skbn's run on Numba's threads; StandardScaler's sparse statistics
        and scaling (Cython and SciPy) and ``X.copy()`` on one.
    """
    import numba
    from sklearn.preprocessing import StandardScaler

    peers = {
        "skbn": (lambda: BatchNormalizer(with_mean=False, momentum=None), None),
        "StandardScaler": (lambda: StandardScaler(with_mean=False), 1),
    }
    c = {"X.copy()": Case(X.copy)}
    for name, (make, threads) in peers.items():
        threads = threads or numba.get_num_threads()
        fitted = make().fit(X)
        c[f"{name} fit"] = Case((lambda m: lambda: m().fit(X))(make), threads)
        c[f"{name} transform"] = Case(
            (lambda f: lambda: f.transform(X))(fitted), threads
        )
        c[f"{name} fit_transform"] = Case(
            (lambda m: lambda: m().fit_transform(X))(make), threads
        )
    return c


def run(named_cases, repeats=7, warmup=1):
    """Time each case ``repeats`` times, interleaved; return medians.

    Parameters
    ----------
    named_cases : dict of str to callable
        A :class:`Case` also gives its result's threads and output dtype.
    repeats : int
    warmup : int
        Untimed rounds first (JIT compilation, page faults of first use).

    Returns
    -------
    dict of str to Result
        Each result's ``samples[i]`` is from round ``i``, the same round for
        every case, so the ratio of two cases can be taken round by round.
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
    return {
        k: Result(
            k,
            float(np.median(v)),
            v,
            _threads(named_cases[k]),
            getattr(named_cases[k], "out_dtype", None),
        )
        for k, v in samples.items()
    }


def ratio(result, reference):
    """``result`` over ``reference``: the ratio of the medians, and the
    smallest and largest ratio of one interleaved round.

    Returns
    -------
    (float, float, float)
        Median ratio, round minimum, round maximum.
    """
    rounds = [a / b for a, b in zip(result.samples, reference.samples, strict=True)]
    return result.median / reference.median, min(rounds), max(rounds)


def _ms(seconds):
    # Three significant figures from 0.01 ms to 10 s, so columns align.
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def timing_table(results, subject="skbn", labels=None, indent=""):
    """Results as an aligned text table.

    One row per case: the threads it ran on, its output dtype, the median
    and the min..max of its times, and, for a case that has an operation of
    ``subject`` to compare with, its time over ``subject``'s: the ratio of
    the medians and the range of the round-by-round ratios.

    Parameters
    ----------
    results : dict of str to Result
    subject : str
        The peer label that the ratios divide by.
    labels : dict of str to str, optional
        Display names for some cases.
    indent : str
        Put in front of every line.

    Returns
    -------
    str
    """
    labels = labels or {}
    rows = []
    for key, r in results.items():
        peer, _, op = key.rpartition(" ")
        ref = results.get(f"{subject} {op}")
        if ref is not None and ref is not r and peer != key:
            med, lo, hi = ratio(r, ref)
            vs = f"{med:.2f}x ({lo:.2f}-{hi:.2f})"
        else:
            vs = ""
        rows.append(
            (
                labels.get(key, key),
                "-" if r.threads is None else str(r.threads),
                r.out_dtype or "-",
                _ms(r.median),
                f"{_ms(min(r.samples))}-{_ms(max(r.samples))}",
                vs,
            )
        )
    any_ratio = any(row[5] for row in rows)
    head = ("case", "threads", "out", "median ms", "min-max ms", f"time / {subject}")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
        cells += [row[2].ljust(widths[2])]
        cells += [c.rjust(w) for c, w in zip(row[3:5], widths[3:5], strict=True)]
        cells += [row[5].ljust(widths[5])]
        lines.append(indent + "  ".join(cells).rstrip())
    if any_ratio:
        lines.append(
            f"{indent}time / {subject}: ratio of the medians (lowest-highest "
            "ratio within one round)"
        )
    return "\n".join(lines)


# Memory bounds: ``X.copy()`` allocates and writes its output like
# ``transform`` does; one read of X costs half of ``np.copyto`` into a
# preallocated array (a read plus a write).
_BOUNDS = {
    "fit": lambda copy, copyto: copyto / 2,
    "partial_fit": lambda copy, copyto: copyto / 2,
    "transform": lambda copy, copyto: copy,
    "inverse_transform": lambda copy, copyto: copy,
    "fit_transform": lambda copy, copyto: copy + copyto / 2,
    "partial_fit_transform": lambda copy, copyto: copy + copyto / 2,
}


def report(results, operations, nbytes):
    """skbn's distance from the memory bound in one :func:`run`, as text.

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
        "(np.copyto, one thread: bytes read + written / time)",
        "",
        f"{'operation':24s} {'skbn ms':>9s} {'bound ms':>9s} {'/ bound':>8s}",
    ]
    for op in operations:
        if f"skbn {op}" not in m:
            continue
        t = m[f"skbn {op}"]
        bound = _BOUNDS[op](copy, copyto)
        lines.append(f"{op:24s} {_ms(t):>9s} {_ms(bound):>9s} {t / bound:8.2f}")
    threads = {r.threads for k, r in results.items() if k.startswith("skbn ")}
    if threads - {1, None}:
        # The copies are NumPy's, on one thread; a core's bandwidth is not
        # the machine's, so more threads can go below this bound.
        lines.append(
            "bound: from the one-thread copies above; skbn on "
            f"{max(t for t in threads if t)} threads can go below 1.00"
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
    out["NumPy float32 var"] = X.var(axis=0, dtype=np.float32)
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
        out["PyTorch running_var"] = rv.double().numpy() * (rows - 1) / rows
    return {k: float(np.max(np.abs(v / ref - 1))) for k, v in out.items()}
