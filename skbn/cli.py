"""The ``skbn`` command line.

Each subcommand is one ``_add_<name>`` function that registers its parser and
points ``func`` at the function that runs it, so ``bench``, ``fit`` and
``transform`` can be added beside ``demo`` without touching :func:`main`.
"""

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from math import prod
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline

from . import __version__, _bench, _npy
from ._core.views import normalize_axis
from ._state import StateMixin
from .batch_norm import BatchNormalizer


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skbn`` command line.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        The exit status: 0 on success.

    Examples
    --------
    >>> from skbn.cli import main
    >>> main(["demo", "--rows", "2000", "--repeats", "1"])  # doctest: +ELLIPSIS
    Streaming: ...held-out accuracy: 0.9...
    0
    """
    args = _build_parser().parse_args(argv)
    with _removing_outputs_on_signals():
        status: int = args.func(args)
    return status


@contextlib.contextmanager
def _removing_outputs_on_signals() -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP remove its unfinished output.

    Python's default for these signals ends the process at once, which would
    leave the temporary ``.part`` / ``.tmp`` file behind.  The handler
    removes every temporary output and exits with ``128 + signum``, the
    status a shell reports for a process killed by that signal.  Only the
    main thread can install handlers; elsewhere (``main`` called from a
    thread) the defaults stay.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        _npy.discard_all()
        raise SystemExit(128 + signum)

    signums = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skbn",
        description="Batch normalization on Numba kernels, as scikit-learn "
        "transformers.",
    )
    parser.add_argument("--version", action="version", version=f"skbn {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    # A subcommand is required, but argparse's own `required=True` reports it
    # as "the following arguments are required: COMMAND", which tells a new
    # user nothing; printing the help instead lists what there is.
    parser.set_defaults(func=lambda args: _print_help(parser))
    _add_demo(subparsers)
    _add_bench(subparsers)
    _add_fit(subparsers)
    _add_transform(subparsers)
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


# -- demo ----------------------------------------------------------------------


def _positive_int(text: str) -> int:
    """Parse a count >= 1; ArgumentTypeError becomes a usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _add_demo(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="stream digits through BatchNormalizer, then time it against peers",
        description="Train BatchNormalizer + SGDClassifier batch by batch on "
        "scikit-learn's digits data, cross-validate a BatchNormalizer + "
        "LogisticRegression pipeline, and time BatchNormalizer against "
        "StandardScaler and plain NumPy on a synthetic float32 array.",
    )
    count = {"type": _positive_int}
    demo.add_argument("--batch-size", **count, default=64, help="rows per batch (64)")
    demo.add_argument("--epochs", **count, default=3, help="passes over the data (3)")
    demo.add_argument(
        "--rows", **count, default=200_000, help="rows of the timed array (200000)"
    )
    demo.add_argument(
        "--features", **count, default=64, help="columns of the timed array (64)"
    )
    demo.add_argument(
        "--repeats", **count, default=5, help="timed runs; the median is shown (5)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    X, y = load_digits(return_X_y=True)
    _demo_streaming(X, y, args.batch_size, args.epochs, args.seed)
    _demo_pipeline(X, y)
    _demo_speed(args.rows, args.features, args.repeats, args.seed)
    return 0


def _demo_streaming(
    X: np.ndarray, y: np.ndarray, batch_size: int, epochs: int, seed: int
) -> None:
    """Train batch norm and a linear classifier together, one batch at a time.

    This is the out-of-core pattern: neither step ever holds more than one
    batch, and the fitted pair is then used as an ordinary ``Pipeline``.
    """
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    # partial_fit needs every class up front: a batch may lack some digits.
    classes = np.unique(y)
    bn = BatchNormalizer()
    clf = SGDClassifier(random_state=seed)
    rng = np.random.default_rng(seed)
    n_batches = 0
    for _ in range(epochs):
        # SGD assumes shuffled batches; sorted ones would bias each epoch.
        order = rng.permutation(len(X_train))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            bn.partial_fit(X_train[rows])
            clf.partial_fit(bn.transform(X_train[rows]), y_train[rows], classes=classes)
            n_batches += 1
    model = Pipeline([("batchnormalizer", bn), ("sgdclassifier", clf)])
    print(
        f"Streaming: load_digits, {len(X_train)} training rows in {n_batches} "
        f"batches of <= {batch_size} ({epochs} epochs), "
        "BatchNormalizer.partial_fit + SGDClassifier.partial_fit"
    )
    print(
        f"  Pipeline of the fitted steps, held-out accuracy: "
        f"{model.score(X_test, y_test):.3f} ({len(X_test)} rows)"
    )


def _demo_pipeline(X: np.ndarray, y: np.ndarray) -> None:
    """Cross-validate BatchNormalizer as an ordinary step of a Pipeline."""
    # The default max_iter=100 stops lbfgs short of convergence on digits.
    model = make_pipeline(BatchNormalizer(), LogisticRegression(max_iter=1000))
    scores = cross_val_score(model, X, y, cv=5)
    print(
        "\nPipeline: make_pipeline(BatchNormalizer(), LogisticRegression()), "
        "5-fold cross_val_score"
    )
    print(f"  accuracy: {scores.mean():.3f} +/- {scores.std():.3f}")


def _demo_speed(rows: int, features: int, repeats: int, seed: int) -> None:
    """Time BatchNormalizer against the two things a user would otherwise use."""
    rng = np.random.default_rng(seed)
    X = rng.normal(3.0, 2.0, size=(rows, features)).astype(np.float32)
    results = _bench.run(
        _bench.cases(
            X,
            operations=("fit_transform",),
            peers=("skbn", "numpy", "StandardScaler"),
        ),
        repeats=repeats,
    )
    names = {
        "skbn fit_transform": "skbn BatchNormalizer().fit_transform(X)",
        "StandardScaler fit_transform": "sklearn StandardScaler().fit(X).transform(X)",
        "numpy fit_transform": "NumPy (X - mean) / sqrt(var + eps)",
    }
    ref = results["skbn fit_transform"].median
    width = max(map(len, names.values()))
    print(
        f"\nSpeed: {rows} x {features} float32, median of {repeats} runs, "
        "JIT warm-up excluded"
    )
    print(f"  {'':<{width}}  {'ms':>8}  {'time / skbn':>11}")
    for key, name in names.items():
        sec = results[key].median
        print(f"  {name:<{width}}  {sec * 1e3:8.1f}  {sec / ref:10.2f}x")


# -- bench ---------------------------------------------------------------------


def _shape(text: str) -> tuple[int, ...]:
    """Parse ``1000000x64`` into a shape."""
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"a shape is two or more positive integers joined by 'x', got {text!r}"
        )
    return shape


def _add_bench(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="time skbn against its peers and the memory bound",
        description="Time every operation of skbn and of its peers (a plain "
        "NumPy class, StandardScaler, torch when installed) in one "
        "process, interleaved, and print medians, ratios, each result's "
        "distance from the memory bound, and a float32 accuracy check.",
    )
    bench.add_argument(
        "--shape",
        type=_shape,
        action="append",
        help="data shape, e.g. 1000000x64 or 64x64x56x56 (repeatable; "
        "default 1000000x64)",
    )
    bench.add_argument("--axis", type=int, default=-1, help="feature axis (-1)")
    bench.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="(float32)"
    )
    bench.add_argument(
        "--operations",
        default="fit,transform,fit_transform",
        help="comma-separated, from: " + ", ".join(_bench.OPERATIONS),
    )
    bench.add_argument("--repeats", type=_positive_int, default=7, help="(7)")
    bench.add_argument(
        "--threads", type=_positive_int, default=None, help="threads (all cores)"
    )
    bench.add_argument(
        "--no-accuracy", action="store_true", help="skip the float32 accuracy check"
    )
    bench.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    import numba

    operations = [op.strip() for op in args.operations.split(",") if op.strip()]
    unknown = sorted(set(operations) - set(_bench.OPERATIONS))
    if unknown:
        print(f"skbn bench: unknown operation(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    if not operations:
        return _bench_usage(f"--operations names no operation, got {args.operations!r}")
    shapes = args.shape or [(1_000_000, 64)]
    # Every shape is checked against --axis before any data is made, so a bad
    # pair is one line at once, not a traceback after minutes of benchmarks.
    for shape in shapes:
        problem = _bench_shape_problem(shape, args.axis)
        if problem:
            return _bench_usage(problem)
    if args.threads:
        limit = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined, unused-ignore]
        numba.set_num_threads(min(args.threads, limit))
    threads = numba.get_num_threads()
    for shape in shapes:
        try:
            X = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
            X = X.astype(args.dtype, copy=False) + 3.0
        except (MemoryError, ValueError):
            # ValueError: NumPy's "array is too big" for a size past the
            # address space.
            dims = "x".join(map(str, shape))
            return _bench_usage(f"--shape {dims} does not fit in memory")
        results = _bench.run(
            _bench.cases(X, operations, threads=threads, axis=args.axis),
            repeats=args.repeats,
        )
        dims = " x ".join(map(str, shape))
        print(
            f"\n{dims} {args.dtype}, axis={args.axis}, {threads} threads, "
            f"median of {args.repeats} interleaved runs"
        )
        print(_bench.table(results, reference=None))
        print()
        print(_bench.report(results, operations, X.nbytes))
    if not args.no_accuracy:
        print(
            "\nmax relative error of the variance, float32 data, offset 1e3, 1e6 x 8:"
        )
        for name, err in _bench.accuracy().items():
            print(f"  {name:22s} {err:.2e}")
    return 0


def _bench_usage(message: str) -> int:
    """A bad ``skbn bench`` argument: one line on stderr, status 2 (argparse's)."""
    print(f"skbn bench: error: {message}", file=sys.stderr)
    return 2


def _bench_shape_problem(shape: tuple[int, ...], axis: int) -> str | None:
    """Why ``--shape shape --axis axis`` cannot be benchmarked, or None."""
    dims = "x".join(map(str, shape))
    try:
        (feature_axis,) = normalize_axis(axis, len(shape))
    except ValueError:
        return (
            f"--axis must be in [-{len(shape)}, {len(shape) - 1}] for "
            f"--shape {dims}, got {axis}"
        )
    samples = prod(shape) // shape[feature_axis]
    if samples < 2:
        # A batch of one sample per feature has no variance to train on
        # (PyTorch, a peer, refuses it).
        return (
            f"--shape {dims} has {samples} sample per feature along axis "
            f"{axis}; the benchmark needs at least 2"
        )
    return None


# -- fit and transform: out of core over .npy files -----------------------------


def _momentum(text: str) -> float | None:
    """Parse ``none`` or a float in [0, 1]."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a number in [0, 1] or 'none', got {text!r}"
        )
    return value


def _axis(text: str) -> int | tuple[int, ...]:
    """Parse ``-1`` or ``1,2`` (several feature axes)."""
    try:
        axes = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer or integers joined by ',', got {text!r}"
        ) from None
    return axes[0] if len(axes) == 1 else axes


def _add_streaming_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="rows per mini-batch (default: about 16 MiB of data)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar or summary"
    )


def _add_fit(subparsers: Any) -> None:
    fit = subparsers.add_parser(
        "fit",
        help="fit BatchNormalizer on a .npy file, batch by batch",
        description="Stream DATA.npy through BatchNormalizer.partial_fit in "
        "mini-batches of rows, mapping one batch of the file into memory at a "
        "time (files larger than memory work), and save the fitted state. "
        "With the default --momentum none the statistics are exactly those of "
        "the whole file.",
    )
    fit.add_argument("data", metavar="DATA.npy", help="input array, rows first")
    fit.add_argument(
        "-o", "--output", metavar="STATE", required=True, help="state file to write"
    )
    fit.add_argument(
        "--momentum",
        type=_momentum,
        default=None,
        metavar="M|none",
        help="weight of the old running value per batch, or 'none' for exact "
        "statistics of all rows (default: none)",
    )
    fit.add_argument(
        "--axis",
        type=_axis,
        default=-1,
        metavar="A",
        help="feature axis, or axes joined by ',' (default: -1); not 0",
    )
    _add_streaming_options(fit)
    fit.set_defaults(func=_run_fit)


def _add_transform(subparsers: Any) -> None:
    transform = subparsers.add_parser(
        "transform",
        help="normalize a .npy file with a saved state, batch by batch",
        description="Normalize DATA.npy with the estimator saved in STATE "
        "(by 'skbn fit' or its save method) and write OUT.npy, one mini-batch "
        "of rows at a time through memory maps (files larger than memory "
        "work). OUT.npy appears only when complete.",
    )
    transform.add_argument("data", metavar="DATA.npy", help="input array, rows first")
    transform.add_argument(
        "--state", required=True, metavar="STATE", help="state file to apply"
    )
    transform.add_argument(
        "-o", "--output", metavar="OUT.npy", required=True, help="array to write"
    )
    _add_streaming_options(transform)
    transform.set_defaults(func=_run_transform)


class _PlainProgress:
    """A one-line percentage on stderr, when tqdm is not installed."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done, self.shown = max(total, 1), desc, 0, -1

    def update(self, n: int) -> None:
        self.done += n
        percent = 100 * self.done // self.total
        if percent != self.shown:
            self.shown = percent
            print(f"\r{self.desc}: {percent:3d}%", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        print(file=sys.stderr)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, quiet: bool) -> Any:
    """A progress bar over ``total`` rows on a terminal, else nothing."""
    if quiet or not sys.stderr.isatty():
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total, desc)
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, leave=False)


def _error(command: str, exc: BaseException) -> int:
    """Report a failure as one line on stderr; no traceback."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        message = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, MemoryError):
        message = "out of memory; try a smaller --batch-size"
    else:
        message = str(exc) or type(exc).__name__
    print(f"skbn {command}: error: {message}", file=sys.stderr)
    return 1


# What a bad file, state or argument raises; anything else is a bug and keeps
# its traceback.
_USER_ERRORS = (OSError, ValueError, TypeError, MemoryError)


def _check_rows_are_samples(reader: _npy.NpyReader, axes: tuple[int, ...]) -> None:
    if len(reader.shape) < 2:
        raise ValueError(
            f"{reader.path} holds a {len(reader.shape)}-D array; skbn needs "
            "2-D (rows, features) or N-D data with samples along axis 0."
        )
    if 0 in reader.shape:
        # Nothing to fit or transform: refused before any output is made, so
        # no unfitted state or empty result appears.
        dims = " x ".join(map(str, reader.shape))
        raise ValueError(f"{reader.path} holds no values (shape {dims}).")
    if 0 in axes:
        raise ValueError(
            "axis 0 is a feature axis here, but the file is streamed in batches "
            "of rows (axis 0); choose feature axes other than 0."
        )


def _stream(
    reader: _npy.NpyReader,
    batch_size: int | None,
    desc: str,
    quiet: bool,
    step: Callable[[int, np.ndarray], object],
) -> None:
    bar = _progress(reader.shape[0], desc, quiet)
    try:
        for start, stop in reader.windows(batch_size):
            step(start, reader.rows(start, stop))
            bar.update(stop - start)
    finally:
        bar.close()


def _run_fit(args: argparse.Namespace) -> int:
    try:
        _npy.check_output(args.output)
        reader = _npy.NpyReader(args.data)
        ndim = max(len(reader.shape), 2)  # a 1-D file is reported just below
        _check_rows_are_samples(reader, normalize_axis(args.axis, ndim))
        bn = BatchNormalizer(momentum=args.momentum, axis=args.axis)
        _stream(
            reader,
            args.batch_size,
            "fit",
            args.quiet,
            lambda start, rows: bn.partial_fit(rows),
        )
        bn.save(args.output)
    except _USER_ERRORS as exc:
        return _error("fit", exc)
    if not args.quiet:
        print(
            f"fitted {bn.n_features_in_} features on {bn.n_samples_seen_} rows "
            f"in {bn.n_batches_seen_} batches; state written to {args.output}"
        )
    return 0


def _run_transform(args: argparse.Namespace) -> int:
    try:
        _npy.check_output(args.output)
        est = StateMixin.load(args.state)
        reader = _npy.NpyReader(args.data)
        _check_rows_are_samples(reader, getattr(est, "_axes", ()))
        # One row checks the feature count and gives the output dtype before
        # any output is created.
        dtype = est.transform(reader.rows(0, min(1, reader.shape[0]))).dtype
        with _npy.NpyWriter(args.output, reader.shape, dtype) as writer:
            _stream(
                reader,
                args.batch_size,
                "transform",
                args.quiet,
                lambda start, rows: writer.write(start, est.transform(rows)),
            )
    except _USER_ERRORS as exc:
        return _error("transform", exc)
    if not args.quiet:
        print(f"wrote {os.fspath(args.output)} ({' x '.join(map(str, reader.shape))})")
    return 0
