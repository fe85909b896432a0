"""What the backends other than NumPy share: the operations they refuse.

Each backend module offers the same operations (see :mod:`skbn._backends`);
one that cannot run an operation offers a function that raises, built here,
so that every refusal is a ``ValueError`` whatever the call's arguments.
"""

__all__ = ["never_small", "refused"]


def refused(name, message):
    """A backend operation that raises ``ValueError(message)`` when called.

    Parameters
    ----------
    name : str
        The operation's name, for tracebacks.
    message : str
        What the user reads: what was refused, what came, what to do.

    Returns
    -------
    callable
        Takes any arguments.
    """

    def refuse(*args, **kwargs):
        raise ValueError(message)

    refuse.__name__ = refuse.__qualname__ = name
    refuse.__doc__ = f"Refused: {message}"
    return refuse


def never_small(X):
    """False: only NumPy input takes the CPU's one-call path for small
    batches (:func:`skbn._backends.numpy.small_input`)."""
    return False
