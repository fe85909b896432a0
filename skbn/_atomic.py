"""Atomic estimator methods: a call that raises changes nothing, and calls
on one estimator from several threads do not interleave.
"""

import functools
import inspect
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

# One reentrant lock per estimator, kept outside the estimator: it is no
# attribute, so it is invisible to get_params, clone, pickle and deepcopy, and
# a copy or an unpickled estimator gets a lock of its own.
_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def lock_of(est):
    """The reentrant lock of ``est`` (made on first use)."""
    lock = _LOCKS.get(est)
    if lock is None:
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(est, threading.RLock())
    return lock


_Method = TypeVar("_Method", bound=Callable[..., Any])


def atomic(method: _Method) -> _Method:
    """Run ``method`` so that an exception leaves the estimator as it was.

    Every attribute is restored, including any that the method created or
    replaced before it raised.  skbn never modifies a fitted array in place,
    so a shallow copy of ``__dict__`` is a complete snapshot.  The snapshot
    is put back in one assignment of ``__dict__``, not by clearing and
    refilling the dictionary, so no reader ever sees a half-restored
    estimator.

    Each call is also atomic with respect to other threads: it holds the
    estimator's own reentrant lock, so concurrent ``partial_fit`` calls on one
    estimator are applied one after the other (none is lost; their order is
    the order in which they acquire the lock), and ``transform`` never reads
    statistics that a concurrent fit has half-updated.  Calls on different
    estimators run in parallel.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with lock_of(self):
            saved = self.__dict__.copy()
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                self.__dict__ = saved
                raise

    # The wrapper marks itself: functools.wraps copies a wrapped function's
    # __dict__, so a plain flag would also mark sklearn's set_output wrapper
    # around an atomic method, which runs partly outside the lock.
    wrapper.__skbn_atomic__ = wrapper  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


# Dunder methods that read or replace the whole state (pickle, deepcopy).
_ATOMIC_DUNDERS = ("__getstate__", "__setstate__")


class AtomicMixin:
    """Make every public method of a subclass :func:`atomic`.

    One rule for all of them, inherited ones included (``save``,
    ``to_keras_weights``, ``get_feature_names_out``, ``get_params``,
    ``set_params``, pickling, properties): each holds the estimator's lock
    for the whole call and rolls back if it raises, so every public method
    sees the state before or after any other call, never a mix, and a call
    that raises changes nothing.

    It must come first among the bases: its ``__init_subclass__`` then runs
    after scikit-learn's, and wraps the method that ``set_output`` wrapped,
    so that converting the output to a DataFrame is part of the atomic call
    (a conversion that fails rolls the fit back).  Class methods and static
    methods (``load``, ``from_torch``) make new estimators and are left as
    they are.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            if name.startswith("_") and name not in _ATOMIC_DUNDERS:
                continue
            raw = inspect.getattr_static(cls, name)
            if isinstance(raw, property) and raw.fget is not None:
                if getattr(raw.fget, "__skbn_atomic__", None) is not raw.fget:
                    setattr(cls, name, raw.getter(atomic(raw.fget)))
            elif isinstance(raw, types.FunctionType):
                if getattr(raw, "__skbn_atomic__", None) is not raw:
                    setattr(cls, name, atomic(raw))
