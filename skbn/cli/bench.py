"""``skbn bench``: time skbn against NumPy, StandardScaler, PyTorch and the
memory bound.

Every operation of skbn and of its peers runs in one process, interleaved
(:mod:`skbn._bench`); each row states the threads it ran on and its output
dtype, the median and range of its times, and its time over skbn's (the
ratio of the medians and the range of the round-by-round ratios).  Then
skbn's distance from the memory bound, and a float32 accuracy check.
Arguments are checked before any data is made, so a bad one is one line at
once, not a traceback after minutes of benchmarks.
"""

import argparse
import sys
from math import prod
from typing import Any

import numpy as np

from .. import _bench
from .._core.views import normalize_axis
from .common import Command, fail, positive_int, set_threads, shape, threads_line


def _add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument(
        "--shape",
        type=shape,
        action="append",
        help="data shape, e.g. 1000000x64 or 64x64x56x56 (repeatable; "
        "default 1000000x64)",
    )
    bench.add_argument("--axis", type=int, default=-1, help="feature axis (-1)")
    bench.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="(float32; float64 with --sparse)",
    )
    bench.add_argument(
        "--sparse",
        type=_density,
        default=None,
        metavar="DENSITY",
        help="scipy.sparse data of this density in (0, 1]: skbn "
        "(with_mean=False, momentum=None) against StandardScaler(with_mean="
        "False), fit, transform and fit_transform (default shape 1000000x1000)",
    )
    bench.add_argument(
        "--format",
        default="csr,csc",
        help="with --sparse: comma-separated sparse formats, from csr, csc (csr,csc)",
    )
    bench.add_argument(
        "--operations",
        default="fit,transform,fit_transform",
        help="comma-separated, from: " + ", ".join(_bench.OPERATIONS),
    )
    bench.add_argument("--repeats", type=positive_int, default=7, help="(7)")
    bench.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="Numba threads for skbn, and PyTorch's threads; NumPy and "
        "StandardScaler run on one, so --threads 1 compares like with like "
        "(default: Numba's default, all cores)",
    )
    bench.add_argument(
        "--no-accuracy", action="store_true", help="skip the float32 accuracy check"
    )


def _run(args: argparse.Namespace) -> int:
    operations = [op.strip() for op in args.operations.split(",") if op.strip()]
    unknown = sorted(set(operations) - set(_bench.OPERATIONS))
    if unknown:
        print(f"skbn bench: unknown operation(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    if not operations:
        return _usage(f"--operations names no operation, got {args.operations!r}")
    if args.sparse is not None:
        return _run_sparse(args)
    shapes = args.shape or [(1_000_000, 64)]
    args.dtype = args.dtype or "float32"
    # Every shape is checked against --axis before any data is made, so a bad
    # pair is one line at once, not a traceback after minutes of benchmarks.
    for dims in shapes:
        problem = _shape_problem(dims, args.axis)
        if problem:
            return _usage(problem)
    threads = set_threads(args.threads)
    for dims in shapes:
        try:
            X = np.random.default_rng(0).standard_normal(dims, dtype=np.float32)
            X = X.astype(args.dtype, copy=False) + 3.0
        except (MemoryError, ValueError):
            # ValueError: NumPy's "array is too big" for a size past the
            # address space.
            return _usage(f"--shape {'x'.join(map(str, dims))} does not fit in memory")
        peers = ("skbn", "numpy", "numpy-f64-stats", "StandardScaler", "torch")
        named = _bench.cases(
            X, operations, threads=threads, axis=args.axis, peers=peers
        )
        results = _bench.run(named, repeats=args.repeats)
        print(
            f"\n{' x '.join(map(str, dims))} {args.dtype}, axis={args.axis}, "
            f"{args.repeats} interleaved rounds (each case once a round)\n"
            + threads_line(threads, args.threads, _others(results))
        )
        print(_bench.timing_table(results))
        print(_legend(named, peers))
        print()
        print(_bench.report(results, operations, X.nbytes))
    if not args.no_accuracy:
        print(
            "\nmax relative error of the variance, float32 data, offset 1e3, 1e6 x 8:"
        )
        for name, err in _bench.accuracy().items():
            print(f"  {name:22s} {err:.2e}")
    return 0


def _others(results: dict[str, Any]) -> str:
    """The peers other than skbn in ``results``, with their threads."""
    counts: dict[int, list[str]] = {}
    for label in ("NumPy", "StandardScaler", "PyTorch"):
        threads = {r.threads for k, r in results.items() if k.startswith(label + " ")}
        for t in threads:
            counts.setdefault(t, []).append(label)
    return ", ".join(f"{_and(v)} on {t}" for t, v in sorted(counts.items()))


def _and(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _legend(named: dict[str, Any], peers: tuple[str, ...]) -> str:
    """What each peer in ``named`` computes, one line each."""
    known = {**_bench.PEERS, **_bench.EXTRA_PEERS}
    lines = []
    for name in peers:
        cls = known[name]
        if any(key.startswith(f"{cls.label} ") for key in named):
            lines.append(f"{cls.label}: {cls.description}")
    return "\n".join(lines)


def _density(text: str) -> float:
    """``--sparse``: a density in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def _run_sparse(args: argparse.Namespace) -> int:
    """``skbn bench --sparse DENSITY``: skbn against StandardScaler on
    scipy.sparse data, each format in turn."""

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or set(formats) - {"csr", "csc"}:
        return _usage(f"--format must name csr and/or csc, got {args.format!r}")
    shapes = args.shape or [(1_000_000, 1000)]
    for dims in shapes:
        if len(dims) != 2 or dims[0] < 2:
            text = "x".join(map(str, dims))
            return _usage(
                f"--sparse needs a 2-D --shape with 2 rows or more, got {text}"
            )
    threads = set_threads(args.threads)
    dtype = args.dtype or "float64"
    for dims in shapes:
        for fmt in formats:
            X = _bench.sparse_data(dims, args.sparse, fmt, np.dtype(dtype))
            results = _bench.run(_bench.sparse_cases(X), repeats=args.repeats)
            print(
                f"\n{' x '.join(map(str, dims))} {fmt} {dtype}, density "
                f"{args.sparse:g} ({X.nnz} stored values), {args.repeats} "
                "interleaved rounds (each case once a round)\n"
                + threads_line(threads, args.threads, "StandardScaler on 1")
            )
            print(_bench.timing_table(results))
            print(
                "skbn: BatchNormalizer(with_mean=False, momentum=None); "
                "StandardScaler: StandardScaler(with_mean=False)"
            )
    return 0


def _usage(message: str) -> int:
    """A bad ``skbn bench`` argument: one line on stderr, status 2 (argparse's)."""
    return fail("bench", message, 2)


def _shape_problem(dims: tuple[int, ...], axis: int) -> str | None:
    """Why ``--shape dims --axis axis`` cannot be benchmarked, or None."""
    text = "x".join(map(str, dims))
    try:
        (feature_axis,) = normalize_axis(axis, len(dims))
    except ValueError:
        return (
            f"--axis must be in [-{len(dims)}, {len(dims) - 1}] for "
            f"--shape {text}, got {axis}"
        )
    samples = prod(dims) // dims[feature_axis]
    if samples < 2:
        # A batch of one sample per feature has no variance to train on
        # (PyTorch, a peer, refuses it).
        return (
            f"--shape {text} has {samples} sample per feature along axis "
            f"{axis}; the benchmark needs at least 2"
        )
    return None


COMMAND = Command(
    name="bench",
    help="time skbn against NumPy, StandardScaler, PyTorch and the memory bound",
    description="Time every operation of skbn, of plain NumPy ((X - "
    "X.mean(0)) / np.sqrt(X.var(0) + eps), in the input's dtype), of "
    "StandardScaler and of PyTorch (when installed) in one process, "
    "interleaved, and print for each the threads it ran on, its output "
    "dtype, the median and range of its times and its time over skbn's; "
    "then skbn's distance from the memory bound and a float32 accuracy check.",
    add_arguments=_add_arguments,
    run=_run,
)
