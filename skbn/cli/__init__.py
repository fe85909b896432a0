"""The ``skbn`` command line.

Each subcommand is a :class:`~skbn.cli.common.Command` in a module of its own
(:mod:`~skbn.cli.demo`, :mod:`~skbn.cli.bench`, :mod:`~skbn.cli.files` for
``fit`` and ``transform``); :func:`main` registers every one the same way, so
a new subcommand is one more entry in ``COMMANDS``.
"""

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence

from .. import __version__, _npy
from . import bench, demo, files
from .common import Command

# In the order of `skbn --help`.
COMMANDS: tuple[Command, ...] = (
    demo.COMMAND,
    bench.COMMAND,
    files.FIT,
    files.TRANSFORM,
)


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
        # Exit here rather than raise SystemExit: the signal may arrive while
        # a compiled kernel's dispatcher is calling back into Python, which
        # would turn the exception into a SystemError and exit status 1.
        os._exit(128 + signum)

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
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.description
        )
        command.add_arguments(sub)
        sub.set_defaults(func=command.run)
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
