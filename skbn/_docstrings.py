"""Docstring text that several public names share, written once.

A docstring names a shared piece on a line of its own, ``{{name}}``, indented
like the text around it; a piece may leave a value to the docstring that
uses it (``{backward}``).  :func:`shared_docs` replaces each such line by the
piece (indented the same) when the module is imported, so ``help()``, the
doctests and the docs site read the whole text, and a parameter described
for three estimators cannot drift apart in one of them.
"""

import re
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar, overload

__all__ = ["PIECES", "expand", "shared_docs"]

PIECES = {
    # -- parameters ---------------------------------------------------------
    "eps": """\
eps : float > 0, default=1e-5
    Added to the variance before the square root.""",
    "channel_affine": """\
gamma : float, array-like of shape (n_channels,) or None, default=None
    Per-channel scale.
beta : float, array-like of shape (n_channels,) or None, default=None
    Per-channel shift.""",
    "y_and_sample_weight": """\
y : None
    Ignored.
sample_weight : array-like of shape (n_samples,), default=None
    Non-negative weight of each sample (entry along axis 0).""",
    "per_sample_x": """\
x : array-like of shape (N, C, ...) or (N, ..., C)
    Input, at least 2-D, finite.
gamma, beta : float, array-like of shape (C,) or None
    Per-channel scale and shift.""",
    # -- returns ------------------------------------------------------------
    "per_sample_returns": """\
Returns
-------
y : ndarray of the shape, dtype and memory order of ``x``
cache : PerSampleCache
    For :func:`{backward}`.""",
    # -- attributes ---------------------------------------------------------
    "feature_names_in_": """\
feature_names_in_ : ndarray of shape (n_features_in_,)
    Names of features seen during :meth:`fit`, when ``X`` has string
    column names.""",
    # The end of the channel normalizers' parameters, and their attributes.
    "channel_affine_and_attributes": """\
{{channel_affine}}

Attributes
----------
n_features_in_ : int
    Number of channels.
{{feature_names_in_}}""",
    # -- notes --------------------------------------------------------------
    "per_sample_output": """\
The output has the dtype (float16, float32 or float64) and the memory
order of the input (see :mod:`skbn.per_sample`).""",
}

_PLACEHOLDER = re.compile(r"^([ \t]*)\{\{(\w+)\}\}[ \t]*$", re.MULTILINE)
# A value that a piece leaves to the docstring using it: ``{name}``.
_FIELD = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")

T = TypeVar("T")


def expand(doc: str, values: dict[str, str] | None = None) -> str:
    """``doc`` with each ``{{name}}`` line replaced by ``PIECES[name]``.

    Parameters
    ----------
    doc : str
        A docstring as written.
    values : dict of str, optional
        What the pieces' ``{field}`` stand for, for this docstring.

    Returns
    -------
    str
        The docstring as a reader sees it.

    Raises
    ------
    KeyError
        For a name that is not a piece, or a field without a value (at
        import, not in a user's call).
    """
    values = values or {}

    def piece(match: re.Match[str]) -> str:
        indent, name = match.groups()
        # A piece may name pieces of its own, and fields.
        text = _FIELD.sub(lambda m: values[m.group(1)], expand(PIECES[name], values))
        return textwrap.indent(text, indent)

    return _PLACEHOLDER.sub(piece, doc)


def _fill(obj: T, values: dict[str, str]) -> T:
    targets: list[Any] = [obj]
    if isinstance(obj, type):
        for member in vars(obj).values():
            targets.append(member)
            if isinstance(member, property):
                # A property keeps a copy of its getter's docstring.
                targets.append(member.fget)
    for target in targets:
        doc = getattr(target, "__doc__", None)
        if isinstance(doc, str) and "{{" in doc:
            target.__doc__ = expand(doc, values)
    return obj


@overload
def shared_docs(obj: T, /) -> T: ...


@overload
def shared_docs(obj: None = None, /, **values: str) -> Callable[[T], T]: ...


def shared_docs(obj: Any = None, /, **values: str) -> Any:
    """Expand the pieces in the docstring of a function or a class (and in
    those of the functions and properties defined in its body).

    Used bare (``@shared_docs``) or with the values of the pieces' fields
    (``@shared_docs(backward="layer_norm_backward")``).

    Parameters
    ----------
    obj : function or class, optional
        What the bare decorator decorates.
    **values : str
        What the pieces' ``{field}`` stand for.

    Returns
    -------
    obj or decorator
        The same object, or the decorator that fills it.
    """
    if obj is None:

        def fill(target: T) -> T:
            return _fill(target, values)

        return fill
    return _fill(obj, values)
