"""``skbn demo``: BatchNormalizer on scikit-learn's digits, then its speed.

Three parts: batch norm and a linear classifier trained together one batch at
a time (the out-of-core pattern), BatchNormalizer cross-validated as an
ordinary Pipeline step, and a timing against the two things a user would
otherwise use (StandardScaler and plain NumPy), like against like: float32 in
and out for all three, interleaved runs, each row's threads and spread.
"""

import argparse
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline

from .. import _bench
from ..batch_norm import BatchNormalizer
from .common import Command, positive_int, set_threads, threads_line


def _add_arguments(demo: argparse.ArgumentParser) -> None:
    count: dict[str, Any] = {"type": positive_int}
    demo.add_argument("--batch-size", **count, default=64, help="rows per batch (64)")
    demo.add_argument("--epochs", **count, default=3, help="passes over the data (3)")
    demo.add_argument(
        "--rows", **count, default=200_000, help="rows of the timed array (200000)"
    )
    demo.add_argument(
        "--features", **count, default=64, help="columns of the timed array (64)"
    )
    demo.add_argument(
        "--repeats",
        **count,
        default=7,
        help="interleaved timing rounds; the median and range are shown (7)",
    )
    demo.add_argument(
        "--threads",
        **count,
        default=None,
        metavar="N",
        help="Numba threads for skbn; NumPy and StandardScaler run on one, so "
        "--threads 1 compares like with like (default: Numba's, all cores)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")


def _run(args: argparse.Namespace) -> int:
    X, y = load_digits(return_X_y=True)
    _streaming(X, y, args.batch_size, args.epochs, args.seed)
    _pipeline(X, y)
    _speed(args.rows, args.features, args.repeats, args.seed, args.threads)
    return 0


COMMAND = Command(
    name="demo",
    help="stream digits through BatchNormalizer, then time it against peers",
    description="Train BatchNormalizer + SGDClassifier batch by batch on "
    "scikit-learn's digits data, cross-validate a BatchNormalizer + "
    "LogisticRegression pipeline, and time BatchNormalizer against "
    "StandardScaler and plain NumPy on a synthetic float32 array (float32 "
    "out for all three; each row's threads, median and range).",
    add_arguments=_add_arguments,
    run=_run,
)


def _streaming(
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


def _pipeline(X: np.ndarray, y: np.ndarray) -> None:
    """Cross-validate BatchNormalizer as an ordinary step of a Pipeline."""
    # The default max_iter=100 stops lbfgs short of convergence on digits.
    model = make_pipeline(BatchNormalizer(), LogisticRegression(max_iter=1000))
    scores = cross_val_score(model, X, y, cv=5)
    print(
        "\nPipeline: make_pipeline(BatchNormalizer(), LogisticRegression()), "
        "5-fold cross_val_score"
    )
    print(f"  accuracy: {scores.mean():.3f} +/- {scores.std():.3f}")


def _speed(
    rows: int, features: int, repeats: int, seed: int, threads: int | None
) -> None:
    """Time BatchNormalizer against the two things a user would otherwise use.

    Each does the same work: float32 in, float32 out, the batch's own mean
    and variance; interleaved rounds, so a slow moment of a shared machine
    hits all three alike.
    """
    used = set_threads(threads)
    rng = np.random.default_rng(seed)
    X = rng.normal(3.0, 2.0, size=(rows, features)).astype(np.float32)
    named = _bench.cases(
        X, operations=("fit_transform",), peers=("skbn", "numpy", "StandardScaler")
    )
    named = {k: v for k, v in named.items() if k.endswith(" fit_transform")}
    results = _bench.run(named, repeats=repeats)
    labels = {
        "skbn fit_transform": "skbn BatchNormalizer().fit_transform(X)",
        "NumPy fit_transform": "NumPy (X - X.mean(0)) / np.sqrt(X.var(0) + eps)",
        "StandardScaler fit_transform": "StandardScaler().fit(X).transform(X)",
    }
    print(
        f"\nSpeed: {rows} x {features} float32 in, {repeats} interleaved "
        "rounds, JIT warm-up excluded\n  " + threads_line(used, threads)
    )
    print(_bench.timing_table(results, labels=labels, indent="  "))
    if used != 1:
        print(
            f"  skbn's {used} threads against the others' one: "
            "--threads 1 times one thread each."
        )
