"""Per-call cost on small batches: the streaming ``partial_fit`` loop.

Run::

    python benchmarks/small_batches.py                  # 256 x 64 float32, 2 threads
    python benchmarks/small_batches.py --rows 1024 --features 32

A call on a 256 x 64 batch takes tens of microseconds, too short to time one
at a time, so each case is timed as a loop of ``--calls`` calls; the rounds
are interleaved (every case once per round, in turn) and the table shows the
median per-call time over ``--repeats`` rounds, after a warm-up round.

The peers: ``torch.nn.functional.batch_norm`` in training mode with running
statistics (what ``partial_fit`` and ``partial_fit_transform`` do) and
without (what ``fit_transform`` does), in eval mode (``transform``), and
``StandardScaler.partial_fit`` / ``transform``.
"""

import argparse
import time

import numba
import numpy as np
from sklearn.preprocessing import StandardScaler

from skbn import BatchNormalizer


def cases(X, threads):
    bn = BatchNormalizer().fit(X)
    ss = StandardScaler().fit(X)
    c = {
        "skbn partial_fit": lambda: bn.partial_fit(X),
        "skbn partial_fit_transform": lambda: bn.partial_fit_transform(X),
        "skbn fit_transform": lambda: bn.fit_transform(X),
        "skbn transform": lambda: bn.transform(X),
        "StandardScaler partial_fit": lambda: ss.partial_fit(X),
        "StandardScaler transform": lambda: ss.transform(X),
    }
    try:
        import torch
    except ImportError:
        return c
    torch.set_num_threads(threads)
    F = torch.nn.functional.batch_norm
    d = X.shape[1]
    rm = torch.zeros(d, dtype=torch.from_numpy(X[:1]).dtype)
    rv = torch.ones(d, dtype=rm.dtype)
    # torch.from_numpy inside the call: a NumPy user pays for it too.
    c["torch train, running stats"] = lambda: F(
        torch.from_numpy(X), rm, rv, training=True, momentum=0.1
    )
    c["torch train, no running stats"] = lambda: F(
        torch.from_numpy(X), None, None, training=True
    )
    c["torch eval"] = lambda: F(torch.from_numpy(X), rm, rv, training=False)
    return c


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    numba.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((a.rows, a.features)) + 3.0).astype(a.dtype)
    named = cases(X, a.threads)
    samples = {k: [] for k in named}
    for f in named.values():  # warm-up: compilation, first-use allocations
        f()
    for _ in range(a.repeats):
        for k, f in named.items():
            t0 = time.perf_counter()
            for _ in range(a.calls):
                f()
            samples[k].append((time.perf_counter() - t0) / a.calls)
    us = {k: float(np.median(v)) * 1e6 for k, v in samples.items()}
    print(
        f"{a.rows} x {a.features} {a.dtype}, {a.threads} threads, per-call median "
        f"of {a.repeats} interleaved rounds of {a.calls} calls"
    )
    print()
    print(f"{'case':32s} {'us / call':>10s}")
    for k, v in us.items():
        print(f"{k:32s} {v:10.1f}")
    print()
    pairs = [
        ("partial_fit", "StandardScaler partial_fit", "skbn partial_fit"),
        ("partial_fit", "torch train, running stats", "skbn partial_fit"),
        (
            "partial_fit_transform",
            "torch train, running stats",
            "skbn partial_fit_transform",
        ),
        ("fit_transform", "torch train, no running stats", "skbn fit_transform"),
        ("transform", "StandardScaler transform", "skbn transform"),
        ("transform", "torch eval", "skbn transform"),
    ]
    print(f"{'operation':24s} {'peer':32s} {'peer / skbn':>11s}")
    for op, peer, ours in pairs:
        if peer in us:
            print(f"{op:24s} {peer:32s} {us[peer] / us[ours]:10.2f}x")


if __name__ == "__main__":
    main()
