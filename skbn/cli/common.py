"""What the ``skbn`` subcommands share: their record, argument types, errors.

A subcommand is a :class:`Command`; :mod:`skbn.cli` registers each one with
argparse the same way.  The argument types raise
:class:`argparse.ArgumentTypeError`, which argparse turns into a usage error
naming the option, and every failure a user can cause is one line on stderr.
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One subcommand: its parser's texts, its options, and what runs it.

    Attributes
    ----------
    name : str
        The word after ``skbn``.
    help : str
        Its line in ``skbn --help``.
    description : str
        The text of ``skbn NAME --help``.
    add_arguments : callable
        Adds the subcommand's arguments to its parser.
    run : callable
        Runs it on the parsed arguments; returns the exit status.
    """

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def argument_type(
    convert: Callable[[str], T], valid: Callable[[T], bool], requirement: str
) -> Callable[[str], T]:
    """An argparse ``type``: ``convert(text)``, refused unless ``valid``.

    Parameters
    ----------
    convert : callable
        Parses the text; a ``ValueError`` from it refuses the text.
    valid : callable
        Whether the parsed value is acceptable.
    requirement : str
        What the value must be; the error reads ``"{requirement}, got
        {text!r}"``.

    Returns
    -------
    callable
    """

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            pass
        else:
            if valid(value):
                return value
        raise argparse.ArgumentTypeError(f"{requirement}, got {text!r}")

    return parse


def _float_or_none(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


# A count >= 1.
positive_int = argument_type(int, lambda n: n >= 1, "must be an integer >= 1")
# ``1000000x64`` or ``64x64x56x56``.
shape = argument_type(
    lambda text: tuple(int(p) for p in text.lower().split("x")),
    lambda dims: len(dims) >= 2 and min(dims) >= 1,
    "a shape is two or more positive integers joined by 'x'",
)
# ``none`` or a float in [0, 1].
momentum = argument_type(
    _float_or_none,
    lambda m: m is None or 0.0 <= m <= 1.0,
    "must be a number in [0, 1] or 'none'",
)
# ``-1``, or ``1,2`` for several feature axes.
_axes = argument_type(
    lambda text: tuple(int(p) for p in text.split(",")),
    lambda axes: True,
    "must be an integer or integers joined by ','",
)


def axis(text: str) -> int | tuple[int, ...]:
    """Parse ``-1`` or ``1,2`` (several feature axes) into an int or a tuple."""
    axes = _axes(text)
    return axes[0] if len(axes) == 1 else axes


def fail(command: str, message: str, status: int) -> int:
    """Print ``skbn COMMAND: error: MESSAGE`` on stderr; return ``status``."""
    print(f"skbn {command}: error: {message}", file=sys.stderr)
    return status


def set_threads(threads: int | None) -> int:
    """Set Numba's thread count to ``threads`` (at most its maximum, the
    cores it found); None keeps the default.  Returns the count in force."""
    import numba

    if threads:
        limit = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined, unused-ignore]
        numba.set_num_threads(min(threads, limit))
    return int(numba.get_num_threads())


def threads_line(
    threads: int, asked: int | None, peers: str = "NumPy and StandardScaler on 1"
) -> str:
    """The header's words on threads: skbn's count and where it came from,
    then ``peers``, e.g. ``"NumPy and StandardScaler on 1"``."""
    source = f"--threads {asked}" if asked else "Numba's default; set with --threads"
    return f"skbn on {threads} Numba thread{'s' * (threads != 1)} ({source}), {peers}"
