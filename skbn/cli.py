"""The ``skbn`` command line.

Each subcommand is one ``_add_<name>`` function that registers its parser and
points ``func`` at the function that runs it, so ``bench``, ``fit`` and
``transform`` can be added beside ``demo`` without touching :func:`main`.
"""

import argparse
import sys
from collections.abc import Sequence

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline

from . import __version__, _bench
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
    return args.func(args)


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


def _add_demo(subparsers) -> None:
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
            peers=("skbn", "seed numpy", "StandardScaler"),
        ),
        repeats=repeats,
    )
    names = {
        "skbn fit_transform": "skbn BatchNormalizer().fit_transform(X)",
        "StandardScaler fit_transform": "sklearn StandardScaler().fit(X).transform(X)",
        "seed numpy fit_transform": "NumPy (X - mean) / sqrt(var + eps)",
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


def _add_bench(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="time skbn against its peers and the memory bound",
        description="Time every operation of skbn and of its peers (the seed "
        "documents' NumPy class, StandardScaler, torch when installed) in one "
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
    if args.threads:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threads = numba.get_num_threads()
    for shape in args.shape or [(1_000_000, 64)]:
        X = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        X = X.astype(args.dtype, copy=False) + 3.0
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
