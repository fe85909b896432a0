"""``skbn fit`` and ``skbn transform``: out of core over ``.npy`` files.

Both stream a file in mini-batches of rows through memory maps of one batch
at a time (:mod:`skbn._npy`), so files larger than memory work, with a
progress bar on a terminal.  A failure a user can cause (a bad file, state or
argument) is one line on stderr and status 1; anything else is a bug and
keeps its traceback.
"""

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _npy
from .._core.views import normalize_axis
from .._state import StateMixin
from ..batch_norm import BatchNormalizer
from .common import Command, axis, fail, momentum, positive_int

# What a bad file, state or argument raises; anything else is a bug and keeps
# its traceback.
_USER_ERRORS = (OSError, ValueError, TypeError, MemoryError)


def _add_streaming_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="rows per mini-batch (default: about 16 MiB of data)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar or summary"
    )


def _add_fit_arguments(fit: argparse.ArgumentParser) -> None:
    fit.add_argument("data", metavar="DATA.npy", help="input array, rows first")
    fit.add_argument(
        "-o", "--output", metavar="STATE", required=True, help="state file to write"
    )
    fit.add_argument(
        "--momentum",
        type=momentum,
        default=None,
        metavar="M|none",
        help="weight of the old running value per batch, or 'none' for exact "
        "statistics of all rows (default: none)",
    )
    fit.add_argument(
        "--axis",
        type=axis,
        default=-1,
        metavar="A",
        help="feature axis, or axes joined by ',' (default: -1); not 0",
    )
    _add_streaming_options(fit)


def _add_transform_arguments(transform: argparse.ArgumentParser) -> None:
    transform.add_argument("data", metavar="DATA.npy", help="input array, rows first")
    transform.add_argument(
        "--state", required=True, metavar="STATE", help="state file to apply"
    )
    transform.add_argument(
        "-o", "--output", metavar="OUT.npy", required=True, help="array to write"
    )
    _add_streaming_options(transform)


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
    return fail(command, message, 1)


def _open_rows(
    path: str, axes_of: Callable[[_npy.NpyReader], tuple[int, ...]]
) -> _npy.NpyReader:
    """Open ``path`` for streaming, refused unless its rows are samples.

    ``axes_of(reader)`` gives the feature axes, which may depend on the
    file's number of dimensions.
    """
    reader = _npy.NpyReader(path)
    axes = axes_of(reader)  # an --axis out of range is reported first
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
    return reader


def _plural(n: int, one: str, many: str) -> str:
    """``"1 batch"``, ``"3 batches"``."""
    return f"{n} {one if n == 1 else many}"


def _stream(
    reader: _npy.NpyReader,
    args: argparse.Namespace,
    desc: str,
    step: Callable[[int, np.ndarray], object],
) -> None:
    """``step(start, rows)`` on each batch of rows, with a progress bar."""
    bar = _progress(reader.shape[0], desc, args.quiet)
    try:
        for start, stop in reader.windows(args.batch_size):
            step(start, reader.rows(start, stop))
            bar.update(stop - start)
    finally:
        bar.close()


def _run_fit(args: argparse.Namespace) -> int:
    try:
        _npy.check_output(args.output)
        # A 1-D file gets 2 dimensions here, to be refused by _open_rows.
        reader = _open_rows(
            args.data, lambda r: normalize_axis(args.axis, max(len(r.shape), 2))
        )
        bn = BatchNormalizer(momentum=args.momentum, axis=args.axis)
        _stream(reader, args, "fit", lambda start, rows: bn.partial_fit(rows))
        bn.save(args.output)
    except _USER_ERRORS as exc:
        return _error("fit", exc)
    if not args.quiet:
        print(
            f"fitted {bn.n_features_in_} features on {reader.shape[0]} rows in "
            f"{_plural(bn.n_batches_seen_, 'batch', 'batches')}; state written "
            f"to {args.output}"
        )
    return 0


def _run_transform(args: argparse.Namespace) -> int:
    try:
        _npy.check_output(args.output, ".npy")
        est = StateMixin.load(args.state)
        reader = _open_rows(args.data, lambda r: getattr(est, "_axes", ()))
        # One row checks the feature count and gives the output dtype before
        # any output is created.
        dtype = est.transform(reader.rows(0, min(1, reader.shape[0]))).dtype
        with _npy.NpyWriter(args.output, reader.shape, dtype) as writer:
            _stream(
                reader,
                args,
                "transform",
                lambda start, rows: writer.write(start, est.transform(rows)),
            )
    except _USER_ERRORS as exc:
        return _error("transform", exc)
    if not args.quiet:
        print(f"wrote {os.fspath(args.output)} ({' x '.join(map(str, reader.shape))})")
    return 0


FIT = Command(
    name="fit",
    help="fit BatchNormalizer on a .npy file, batch by batch",
    description="Stream DATA.npy through BatchNormalizer.partial_fit in "
    "mini-batches of rows, mapping one batch of the file into memory at a "
    "time (files larger than memory work), and save the fitted state. "
    "With the default --momentum none the statistics are exactly those of "
    "the whole file.",
    add_arguments=_add_fit_arguments,
    run=_run_fit,
)

TRANSFORM = Command(
    name="transform",
    help="normalize a .npy file with a saved state, batch by batch",
    description="Normalize DATA.npy with the estimator saved in STATE "
    "(by 'skbn fit' or its save method) and write OUT.npy, one mini-batch "
    "of rows at a time through memory maps (files larger than memory "
    "work). OUT.npy appears only when complete.",
    add_arguments=_add_transform_arguments,
    run=_run_transform,
)
