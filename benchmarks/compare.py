"""Peer comparison on one array, interleaved, medians: the core claims.

Run::

    python benchmarks/compare.py --rows 1000000 --features 64 --repeats 9

It prints the timing table, the ratios the project's goals are stated in, and
the float32 accuracy check (offset 1e3) against torch and NumPy.
"""

import argparse

import numba
import numpy as np

from skbn import BatchNormalizer
from skbn._bench import cases, run, table


def accuracy(rows=1_000_000, features=8, offset=1e3, seed=0):
    """Relative error of the variance of float32 data far from zero."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((rows, features)) + offset).astype(np.float32)
    ref = X.astype(np.float64).var(axis=0)  # two-pass, float64
    out = {"skbn running_var_": BatchNormalizer().fit(X).running_var_}
    out["numpy float32 var"] = X.var(axis=0, dtype=np.float32)
    try:
        import torch

        rm = torch.zeros(features)
        rv = torch.ones(features)
        torch.nn.functional.batch_norm(
            torch.from_numpy(X), rm, rv, training=True, momentum=1.0
        )
        # torch stores the unbiased variance; convert to the biased one.
        out["torch running_var"] = rv.double().numpy() * (rows - 1) / rows
    except ImportError:
        pass
    return {k: float(np.max(np.abs(v / ref - 1))) for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    numba.set_num_threads(a.threads)
    X = np.random.default_rng(0).standard_normal((a.rows, a.features)).astype(a.dtype)
    res = run(cases(X, threads=a.threads), repeats=a.repeats)
    print(f"{a.rows} x {a.features} {a.dtype}, {a.threads} threads, {a.repeats} runs")
    print(table(res))
    m = {k: v.median for k, v in res.items()}
    ft = m["skbn fit_transform"]
    print()
    ratios = []
    if "torch fit_transform" in m:
        ratios.append(("torch / skbn fit_transform", m["torch fit_transform"] / ft))
    ratios += [
        ("StandardScaler / skbn fit_transform", m["StandardScaler fit_transform"] / ft),
        ("skbn transform / X.copy()", m["skbn transform"] / m["X.copy()"]),
        (
            "skbn fit / one read of X",
            m["skbn fit"] / (m["np.copyto (preallocated)"] / 2),
        ),
    ]
    for name, value in ratios:
        print(f"{name:38s} {value:6.2f}")
    print()
    print("max relative error of the variance, float32, offset 1e3, 1e6 x 8:")
    for k, v in accuracy().items():
        print(f"  {k:22s} {v:.2e}")


if __name__ == "__main__":
    main()
