"""Interleaved timing of skbn against its peers, in one process.

Each repetition runs every case once, in turn, so that a slow moment of a
shared machine hits all cases alike; the table reports medians and ratios.
Used by ``benchmarks/compare.py`` and the ``skbn bench`` command.
"""

import time
from dataclasses import dataclass

import numpy as np

from .batch_norm import BatchNormalizer


@dataclass
class Result:
    """Median time of one case, in seconds, and all its samples."""

    name: str
    median: float
    samples: list


class SeedBatchNorm:
    """The seed documents' NumPy class: ``mean``/``var``, then normalize."""

    def __init__(self, epsilon=1e-5, momentum=0.9):
        self.epsilon = epsilon
        self.momentum = momentum

    def fit_transform(self, X):
        """Normalize ``X`` by its batch statistics (the seeds' ``fit``)."""
        mean = np.mean(X, axis=0)
        var = np.var(X, axis=0)
        return (X - mean) / np.sqrt(var + self.epsilon)


def _torch_cases(X, threads):
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    tX = torch.from_numpy(X)
    bn = torch.nn.functional.batch_norm
    return {
        "torch batch_norm (training)": lambda: bn(tX, None, None, training=True),
    }


def cases(X, threads=2, peers=True):
    """Callables to time on ``X``, keyed by a display name.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    threads : int
        Threads for torch (skbn uses Numba's setting).
    peers : bool
        Include StandardScaler, the seed class and torch.

    Returns
    -------
    dict of str to callable
    """
    from sklearn.preprocessing import StandardScaler

    bn = BatchNormalizer().fit(X)
    out = np.empty_like(X)
    c = {
        "X.copy()": X.copy,
        "np.copyto (preallocated)": lambda: np.copyto(out, X),
        "skbn fit": lambda: bn.fit(X),
        "skbn transform": lambda: bn.transform(X),
        "skbn fit_transform": lambda: bn.fit_transform(X),
    }
    if peers:
        c["StandardScaler fit+transform"] = lambda: StandardScaler().fit(X).transform(X)
        c["seed NumPy class fit"] = lambda: SeedBatchNorm().fit_transform(X)
        c.update(_torch_cases(X, threads))
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
    lines = [f"{'case':34s} {'median ms':>10s} {'x skbn fit_transform':>22s}"]
    for r in results.values():
        lines.append(f"{r.name:34s} {r.median * 1e3:10.2f} {r.median / ref:22.2f}")
    return "\n".join(lines)
