"""Docstrings that share pieces (``skbn._docstrings``) read whole.

A public docstring names a shared piece as ``{{name}}`` and a decorator fills
it in at import; these tests look at what ``help()`` shows.
"""

import inspect

import pytest

import skbn
import skbn.functional
from skbn._docstrings import PIECES, expand, shared_docs


def _public_objects():
    """Every public class and function, and their methods and properties."""
    for module in (skbn, skbn.functional):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    target = member.fget if isinstance(member, property) else member
                    if inspect.isfunction(target) and not attr.startswith("_"):
                        yield f"{module.__name__}.{name}.{attr}", target


PUBLIC = dict(_public_objects())


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_no_public_docstring_shows_a_placeholder(name):
    doc = PUBLIC[name].__doc__ or ""
    assert "{{" not in doc and "}}" not in doc, name
    assert "{backward}" not in doc, name


def test_the_pieces_are_used_where_they_are_named():
    # The estimators' shared parameters read the same in each of them.
    eps = "eps : float > 0, default=1e-5\n        Added to the variance"
    for cls in (
        skbn.BatchNormalizer,
        skbn.LayerNormalizer,
        skbn.GroupNormalizer,
        skbn.InstanceNormalizer,
    ):
        assert eps in cls.__doc__, cls
    for cls in (skbn.GroupNormalizer, skbn.InstanceNormalizer):
        assert "Per-channel scale." in cls.__doc__
        assert "n_features_in_ : int\n        Number of channels." in cls.__doc__
    doc = skbn.functional.group_norm_forward.__doc__
    assert "For :func:`group_norm_backward`." in doc
    doc = skbn.functional.instance_norm_forward.__doc__
    assert "For :func:`instance_norm_backward`." in doc


def test_expand_indents_nested_pieces_and_fills_fields():
    doc = "Title.\n\n    Returns\n    -------\n    {{per_sample_returns}}\n"
    out = expand(doc.replace("Returns\n    -------\n    ", ""), {"backward": "f"})
    assert "    y : ndarray" in out
    assert "    cache : PerSampleCache\n        For :func:`f`." in out
    nested = expand("  {{channel_affine_and_attributes}}")
    assert "  gamma : float" in nested
    assert "  feature_names_in_ : ndarray" in nested  # a piece inside a piece
    assert "{{" not in nested


def test_a_placeholder_must_stand_alone_on_its_line():
    # Text that merely mentions braces is left as it is.
    assert expand("a {{eps}} b") == "a {{eps}} b"
    assert expand("{0, 1} and {x}") == "{0, 1} and {x}"


def test_an_unknown_piece_or_a_missing_value_fails_at_import():
    with pytest.raises(KeyError, match="nope"):
        expand("    {{nope}}")
    with pytest.raises(KeyError, match="backward"):
        expand("    {{per_sample_returns}}")  # the piece needs {backward}


def test_shared_docs_fills_a_class_and_its_members_and_returns_them():
    class Example:
        """Doc.

        Parameters
        ----------
        {{eps}}
        """

        def method(self):
            """Method.

            {{y_and_sample_weight}}
            """

        @property
        def prop(self):
            """Property.

            {{feature_names_in_}}
            """

    assert shared_docs(Example) is Example
    assert "Added to the variance" in Example.__doc__
    assert "sample_weight : array-like" in Example.method.__doc__
    assert "feature_names_in_ : ndarray" in Example.prop.__doc__

    def f():
        """Forward.

        {{per_sample_returns}}
        """

    assert shared_docs(backward="g")(f) is f
    assert "        cache : PerSampleCache\n            For :func:`g`." in f.__doc__


def test_every_piece_expands():
    for name in PIECES:
        out = expand("{{" + name + "}}", {"backward": "b"})
        assert "{{" not in out and "{backward}" not in out, name
