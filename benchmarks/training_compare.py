"""Forward + backward of batch norm: skbn.functional against torch autograd.

Run::

    python benchmarks/training_compare.py                # 1,000,000 x 64 float32
    python benchmarks/training_compare.py --norms batch,layer,group --repeats 9

Every case runs once per round, in turn (interleaved), so a slow moment of a
shared machine hits all cases alike; the table shows medians of ``--repeats``
rounds after a warm-up round.  ``np.copyto`` into a preallocated array (one
read and one write of ``x``) is the memory-bandwidth yardstick.  The project's
goal: batch norm forward + backward at least 1.5x faster than torch's on 2
threads.
"""

import argparse

import numba
import numpy as np

try:  # imported by asv as part of the benchmarks package
    from .bench_peers import N_GROUPS, skbn_training, torch_training
except ImportError:  # run as a script
    from bench_peers import N_GROUPS, skbn_training, torch_training

from skbn._bench import run

GOAL = 1.5


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--norms", default="batch", help="comma-separated: batch,layer,group"
    )
    a = p.parse_args()
    numba.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    shape = (a.rows, a.features)
    x = rng.standard_normal(shape, dtype=np.float32).astype(a.dtype) + 3
    dy = rng.standard_normal(shape, dtype=np.float32).astype(a.dtype)
    out = np.empty_like(x)
    cases = {"np.copyto (preallocated)": lambda: np.copyto(out, x)}
    norms = a.norms.split(",")
    for norm in norms:
        for impl, make in (("skbn", skbn_training), ("torch", torch_training)):
            try:
                fwd, bwd, both = make(
                    norm,
                    x,
                    dy,
                    1,
                    **({"threads": a.threads} if impl == "torch" else {}),
                )
            except NotImplementedError as e:
                print(f"{impl} {norm}: skipped ({e})")
                continue
            cases[f"{impl} {norm} forward"] = fwd
            cases[f"{impl} {norm} backward"] = bwd
            cases[f"{impl} {norm} forward+backward"] = both
    res = run(cases, repeats=a.repeats)
    print(
        f"{a.rows} x {a.features} {a.dtype}, {a.threads} threads, medians of "
        f"{a.repeats} interleaved rounds (group norm: {N_GROUPS} groups)"
    )
    print()
    print(f"{'case':36s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s}")
    for r in res.values():
        print(
            f"{r.name:36s} {r.median * 1e3:10.1f} {min(r.samples) * 1e3:8.1f} "
            f"{max(r.samples) * 1e3:8.1f}"
        )
    print()
    m = {k: v.median for k, v in res.items()}
    for norm in norms:
        for op in ("forward", "backward", "forward+backward"):
            sk, th = f"skbn {norm} {op}", f"torch {norm} {op}"
            if sk in m and th in m:
                print(f"torch / skbn, {norm} {op:17s} {m[th] / m[sk]:6.2f}x")
    key = "batch forward+backward"
    if f"skbn {key}" in m and f"torch {key}" in m:
        ratio = m[f"torch {key}"] / m[f"skbn {key}"]
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"\ngoal: batch norm forward+backward >= {GOAL}x torch: {verdict}")


if __name__ == "__main__":
    main()
