"""The floors behind the goals that are not met: what memory and Python allow.

Run::

    python benchmarks/floors.py                 # both parts, 2 threads
    python benchmarks/floors.py --part large    # full-size data only

Every case is timed in interleaved rounds (each case once per round, in
turn) and the table shows medians, so a slow moment of a shared machine hits
all cases alike.

**Full-size data.**  Whatever it computes, a batch norm's ``fit_transform``
must read X once (the moments) and then read X again while it writes a fresh
output (the normalize).  Both are timed here as the least Numba loops that do
so on all threads, with the same compiler and threads as skbn: a sum, and a
copy into ``np.empty_like(X)``.  Their sum is the floor, and
``StandardScaler``'s ``fit_transform`` over the floor is the largest ratio
against it that any implementation could show on this machine.

**Small batches** (256 x 64).  The floor of one scikit-learn transformer call
is the least compiled work, one dispatch of one Numba function that makes one
pass of shifted sums and writes the affine output (no accuracy guard, no
running statistics), plus the layer scikit-learn puts around every
``fit_transform`` (its ``set_output`` wrapper), timed on a transformer whose
``fit_transform`` returns its input; and the same with skbn's ``atomic``
layer, which every ``BatchNormalizer`` call has.
"""

import argparse

import numba
import numpy as np
from numba import njit, prange
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin

from skbn import BatchNormalizer, _bench
from skbn._atomic import atomic
from skbn._config import FASTMATH

# skbn's own compiler flags, so that the floors and skbn compile alike.
_JIT = {"fastmath": FASTMATH, "nogil": True}


@njit(parallel=True, **_JIT)
def one_read(x):
    """Column sums: every byte of ``x`` read once, on all threads.

    Four rows per sweep into a per-task accumulator, as in skbn's rows
    kernel: one accumulator load and store per element would bound the loop
    rather than memory, and the floor would not be one.
    """
    n, d = x.shape
    tasks = 64
    acc = np.zeros((tasks, d))
    for t in prange(tasks):
        s = np.zeros(d)
        r0, r1 = t * n // tasks, (t + 1) * n // tasks
        r4 = r0 + (r1 - r0) // 4 * 4
        for r in range(r0, r4, 4):
            for j in range(d):
                s[j] += (float(x[r, j]) + float(x[r + 1, j])) + (
                    float(x[r + 2, j]) + float(x[r + 3, j])
                )
        for r in range(r4, r1):
            for j in range(d):
                s[j] += x[r, j]
        acc[t] = s
    return acc.sum()


@njit(parallel=True, **_JIT)
def copy_into(x, out):
    """``x`` copied into ``out`` on all threads.  Given a fresh
    ``np.empty_like(x)``, the first touch of its pages is split between the
    threads, as in skbn.  (NumPy allocates it, not Numba, so that it gets the
    same huge-page advice as skbn's outputs.)"""
    n, d = x.shape
    tasks = 256
    for t in prange(tasks):
        for r in range(t * n // tasks, (t + 1) * n // tasks):
            for j in range(d):
                out[r, j] = x[r, j]
    return out


@njit(**_JIT)
def least_batch_norm(x):
    """One pass of shifted sums, then ``(x - mean) * scale``: the least
    compiled work of a small-batch ``fit_transform`` (a floor, not a result:
    no accuracy guard, no running statistics)."""
    n, d = x.shape
    s = np.zeros(d)
    q = np.zeros(d)
    for r in range(n):
        for j in range(d):
            v = float(x[r, j]) - float(x[0, j])  # in float64, as in skbn
            s[j] += v
            q[j] += v * v
    mean = np.empty(d)
    scale = np.empty(d)
    for j in range(d):
        mean[j] = x[0, j] + s[j] / n
        scale[j] = 1.0 / np.sqrt((q[j] - s[j] * s[j] / n) / n + 1e-5)
    out = np.empty_like(x)
    for r in range(n):
        for j in range(d):
            out[r, j] = (x[r, j] - mean[j]) * scale[j]
    return out


class _Identity(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """A transformer whose ``fit_transform`` does nothing: what is left of a
    call is scikit-learn's layer around it."""

    def fit(self, X, y=None):
        return self

    def fit_transform(self, X, y=None):
        return X


class _AtomicIdentity(_Identity):
    """The same, inside skbn's ``atomic`` (the estimator's lock and state
    snapshot, so that an error leaves it as it was and concurrent calls are
    applied one at a time): what every ``BatchNormalizer`` call pays."""

    @atomic
    def fit_transform(self, X, y=None):
        return X


def _identity(X):
    return X


def _line(label, value, unit=""):
    print(f"  {label:34s} {value:9.2f} {unit}")


def _loop(f, calls):
    def loop():
        for _ in range(calls):
            f()

    return loop


def interleaved(cases, repeats, calls=1):
    """Median seconds per call of each case: :func:`skbn._bench.run` (the
    interleaved rounds of ``skbn bench``), each sample a loop of ``calls``."""
    loops = {k: _loop(f, calls) for k, f in cases.items()}
    return {k: r.median / calls for k, r in _bench.run(loops, repeats).items()}


def _torch_fit_transform(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    F = torch.nn.functional.batch_norm
    return lambda X: F(torch.from_numpy(X), None, None, training=True)


def large(shape, dtype, repeats, threads):
    X = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    # skbn and its peers exactly as `skbn bench` times them.
    peers = _bench.cases(X, ("fit", "transform", "fit_transform"), threads)
    wanted = ["skbn fit", "skbn transform", "skbn fit_transform"]
    wanted += ["StandardScaler fit_transform", "PyTorch fit_transform"]
    cases = {
        "one read (Numba sum)": lambda: one_read(X),
        "fresh copy (Numba)": lambda: copy_into(X, np.empty_like(X)),
        **{k: peers[k] for k in wanted if k in peers},
    }
    t = interleaved(cases, repeats)
    read, copy = t["one read (Numba sum)"], t["fresh copy (Numba)"]
    floor = read + copy
    print(f"\n{shape[0]} x {shape[1]} {dtype}, {threads} threads, median of {repeats}")
    for k, v in t.items():
        _line(k, v * 1e3, "ms")
    _line("floor (one read + fresh copy)", floor * 1e3, "ms")
    sk = t["skbn fit_transform"]
    _line("skbn fit_transform / floor", sk / floor)
    _line("skbn fit / one read", t["skbn fit"] / read)
    _line("skbn transform / fresh copy", t["skbn transform"] / copy)
    if min(sk / floor, t["skbn fit"] / read) < 0.95:
        # Noise, or a floor loop slower than it should be: either way the
        # "the most" ratios below are not bounds in this run.
        print("  note: skbn beat a floor by more than 5 %; rerun before trusting it")
    for peer in ("StandardScaler", "PyTorch"):
        if f"{peer} fit_transform" in t:
            pt = t[f"{peer} fit_transform"]
            _line(f"{peer} / skbn", pt / sk, "x")
            _line(f"{peer} / floor (the most)", pt / floor, "x")


def small(rows, features, dtype, repeats, calls, threads):
    X = (np.random.default_rng(0).standard_normal((rows, features)) + 3.0).astype(dtype)
    bn = BatchNormalizer().fit(X)
    ident = _Identity().fit(X)
    atomic_ident = _AtomicIdentity().fit(X)
    cases = {
        "skbn fit_transform": lambda: bn.fit_transform(X),
        "least compiled batch norm": lambda: least_batch_norm(X),
        "scikit-learn layer (identity)": lambda: ident.fit_transform(X),
        "plain Python call (identity)": lambda: _identity(X),
        "... and atomic (identity)": lambda: atomic_ident.fit_transform(X),
    }
    torch_ft = _torch_fit_transform(threads)
    if torch_ft is not None:
        cases["torch fit_transform"] = lambda: torch_ft(X)
    t = interleaved(cases, repeats, calls)
    layer = t["scikit-learn layer (identity)"] - t["plain Python call (identity)"]
    floor = t["least compiled batch norm"] + layer
    guarded = t["least compiled batch norm"] + (
        t["... and atomic (identity)"] - t["plain Python call (identity)"]
    )
    print(f"\n{rows} x {features} {dtype}, {threads} threads, ", end="")
    print(f"median of {repeats} rounds of {calls} calls")
    for k, v in t.items():
        _line(k, v * 1e6, "us")
    _line("floor (compiled + layer)", floor * 1e6, "us")
    _line("floor with atomic", guarded * 1e6, "us")
    if "torch fit_transform" in t:
        pt = t["torch fit_transform"]
        _line("torch / skbn", pt / t["skbn fit_transform"], "x")
        _line("torch / floor (the most)", pt / floor, "x")
        _line("torch / floor with atomic", pt / guarded, "x")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["large", "small", "both"], default="both")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    numba.set_num_threads(a.threads)
    if a.part in ("large", "both"):
        large((1_000_000, 64), "float32", a.repeats, a.threads)
        large((100_000, 1024), "float32", a.repeats, a.threads)
        large((1_000_000, 64), "float64", a.repeats, a.threads)
    if a.part in ("small", "both"):
        small(256, 64, "float32", a.repeats, 500, a.threads)


if __name__ == "__main__":
    main()
