"""A griffe extension: the reST bits of skbn's numpydoc docstrings, as Markdown.

The docstrings are written for numpydoc (Sphinx roles, ``::`` literal blocks,
simple tables); mkdocstrings renders Markdown.  This rewrites, in every
docstring, before rendering:

* a docstring that names shared pieces (``{{eps}}``) as the imported object
  has it, the pieces filled in;
* ``:meth:`fit```, ``:class:`~sklearn.pipeline.Pipeline```, ... as code;
* a paragraph ending in ``::`` as one ending in ``:`` (the indented block
  after it is already a Markdown code block);
* simple reST tables (``===`` borders) as Markdown tables;
* reST literals in double backticks as Markdown code in single ones in the
  text; in the ``name : type`` lines of Parameters, Returns and the like,
  where mkdocstrings renders the whole type as code already, as plain text
  (a type such as ``ndarray of the memory order of ``X```` showed its
  backticks);
* each ``See Also`` entry as a link: skbn names to their API pages (autorefs
  identifiers), scikit-learn names to scikit-learn's reference.
"""

from __future__ import annotations

import inspect
import pathlib
import re
import sys
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:meth|func|class|attr|mod|obj|data|exc|const):`(~?)([^`]+)`"
)
_ROOT = pathlib.Path(__file__).resolve().parents[1]
# griffe imports with exactly these paths: this checkout first, then the rest.
_PATHS = [str(_ROOT), *sys.path]
_BORDER = re.compile(r"^( *)(=+)( +=+)+ *$")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    if tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _columns(border: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", border)]


def _cells(line: str, cols: list[tuple[int, int]]) -> list[str]:
    starts: list[int | None] = [c[0] for c in cols]
    starts.append(None)
    return [
        line[starts[k] : starts[k + 1]].strip().replace("|", "\\|")
        for k in range(len(cols))
    ]


def _tables(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        cols = _columns(lines[i])
        borders = [i]
        j = i + 1
        while j < len(lines) and len(borders) < 3:
            if _BORDER.match(lines[j]):
                borders.append(j)
            elif not lines[j].strip():
                break
            j += 1
        if len(borders) < 3:
            out.append(lines[i])
            i += 1
            continue
        header = [_cells(line, cols) for line in lines[borders[0] + 1 : borders[1]]]
        body = [_cells(line, cols) for line in lines[borders[1] + 1 : borders[2]]]
        head = [" ".join(parts).strip() for parts in zip(*header, strict=True)]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + " --- |" * len(cols))
        out.extend("| " + " | ".join(row) + " |" for row in body)
        i = borders[2] + 1
    return "\n".join(out)


# ``x`` but not inside a longer run of backticks; a literal may wrap onto the
# next line (``pip install\n'skbn[cuda]'``) but not across a blank line.
_LITERAL = re.compile(r"(?<!`)``(?!`)((?:[^`\n]|\n(?![ \t]*\n))+?)``(?!`)")
_SEE_ALSO = re.compile(r"^( *)See Also\n\1-{3,}\n((?:\1\S.*\n?)+)", re.M)
_SKLEARN_API = "https://scikit-learn.org/stable/modules/generated/{}.html"


# Sections whose entries are ``name : type`` lines at the header's indentation,
# each followed by its more indented description.
_TYPED = re.compile(
    r"^( *)(Parameters|Other Parameters|Returns|Yields|Receives|Raises|Warns"
    r"|Attributes)\n\1-{3,}\n((?:\1.*\n?|\n)+?)(?=^\1\S.*\n\1-{3,}\n|\Z)",
    re.M,
)


def _plain_type(line: str) -> str:
    # No backticks; "array-like" with a non-breaking hyphen (U+2011): griffe
    # reads a type that happens to parse as Python ("float, array-like or
    # None") as an expression and prints it back as "array - like", and a
    # plain hyphen is a place to break the narrow Type column.
    return line.replace("`", "").replace("array-like", "array\u2011like")


def _plain_types(text: str) -> str:
    """Drop the backticks from the entry lines of the typed sections."""

    def section(match: re.Match[str]) -> str:
        indent, _, body = match.groups()
        lines = [
            _plain_type(line)
            if line.startswith(indent) and line[len(indent) : len(indent) + 1] != " "
            else line
            for line in body.split("\n")
        ]
        return match.group(0)[: match.start(3) - match.start(0)] + "\n".join(lines)

    return _TYPED.sub(section, text)


def _see_also_target(name: str, module: str) -> str:
    """A Markdown link for a numpydoc ``See Also`` name."""
    if name.startswith("sklearn."):
        return f"[`{name}`]({_SKLEARN_API.format(name)})"
    if name.startswith("skbn."):
        # autorefs knows the path where the object is documented: skbn's
        # public classes are rendered as ``skbn.X``, functions by module.
        return f"[`{name}`][{name}]"
    # A bare name: a sibling in the docstring's own module.
    return f"[`{name}`][{module}.{name}]" if module else f"`{name}`"


def _see_also(text: str, module: str) -> str:
    def entry(line: str) -> str:
        name, sep, desc = line.strip().partition(" : ")
        names = [n.strip() for n in name.split(",")]
        if not all(re.fullmatch(r"[\w.]+", n) for n in names):
            return line.strip()
        links = ", ".join(_see_also_target(n, module) for n in names)
        return f"- {links}" + (f": {desc.strip()}" if sep else "")

    def section(match: re.Match[str]) -> str:
        indent, body = match.groups()
        items = [entry(line) for line in body.rstrip("\n").split("\n")]
        # One list item per line (an entry's own continuation lines would
        # start with more indentation, which numpydoc here never uses).
        return (
            f"{indent}See Also\n{indent}--------\n"
            + "".join(f"{indent}{item}\n" for item in items)
        )

    return _SEE_ALSO.sub(section, text)


def rst_to_markdown(text: str, module: str = "") -> str:
    """The docstring ``text`` with the reST constructs above rewritten.

    ``module`` is the path of the module the docstring belongs to, for the
    bare names of a ``See Also`` section.
    """
    text = _ROLE.sub(_role, text)
    text = _LITERAL.sub(r"`\1`", text)
    text = _plain_types(text)
    text = _see_also(text, module)
    text = re.sub(r"(\S)::\n", r"\1:\n", text)
    text = re.sub(r"^( *)::\n", "", text, flags=re.M)
    return _tables(text)


def _as_imported(obj: griffe.Object) -> str:
    """The docstring of ``obj`` as Python reads it once the module is imported.

    A docstring that names a shared piece (``{{eps}}``, see
    ``skbn._docstrings``) is completed by a decorator at import; griffe reads
    the source, so the text comes from the imported object instead.
    """
    assert obj.docstring is not None
    if "{{" not in obj.docstring.value:
        return obj.docstring.value
    # The skbn of this checkout, not another one installed.
    runtime = griffe.dynamic_import(obj.path, import_paths=_PATHS)
    module = griffe.dynamic_import(obj.module.path, import_paths=_PATHS)
    source = pathlib.Path(inspect.getfile(module)).resolve()
    if not source.is_relative_to(_ROOT):
        raise RuntimeError(f"{obj.path} was imported from {source}, not {_ROOT}")
    return inspect.cleandoc(runtime.__doc__)


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring once, when griffe has loaded its object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(_as_imported(obj), obj.module.path)
