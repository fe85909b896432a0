"""The rules that keep the package readable (docs/architecture.md).

* no module longer than 600 lines;
* a module uses only the public names of another skbn module (no leading
  underscore across modules; dunders such as ``__version__`` are public);
* an estimator chooses a backend in one place.

They read the installed package's source, so they hold for what users get.
"""

import ast
import pathlib
import re

import pytest

import skbn

ROOT = pathlib.Path(skbn.__file__).resolve().parent
MODULES = sorted(ROOT.rglob("*.py"))


def _name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


NAMES = {_name(p): p for p in MODULES}


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _imported_from(module, node):
    """The absolute module a relative ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if NAMES[module].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_uses(module):
    """``(other module, private name)`` pairs that ``module`` uses."""
    tree = ast.parse(NAMES[module].read_text())
    aliases, uses = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _imported_from(module, node)
            if not source.startswith("skbn"):
                continue
            for a in node.names:
                full = f"{source}.{a.name}"
                if full in NAMES:
                    aliases[a.asname or a.name] = full
                elif _private(a.name):
                    uses.add((source, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("skbn"):
                    aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            other = aliases.get(node.value.id)
            if other and other != module and _private(node.attr):
                uses.add((other, node.attr))
    return uses


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_is_at_most_600_lines(path):
    assert len(path.read_text().splitlines()) <= 600


@pytest.mark.parametrize("module", sorted(NAMES))
def test_module_uses_only_public_names_of_others(module):
    assert private_uses(module) == set()


def test_the_checker_sees_a_private_use(tmp_path, monkeypatch):
    # The rule above can fail: a module that reaches into another is caught.
    fake = ROOT / "_core" / "plan.py"
    source = fake.read_text() + "\nfrom .moments import _first_bad\n"
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self: source)
    assert ("skbn._core.moments", "_first_bad") in private_uses("skbn._core.plan")


@pytest.mark.parametrize("module", ["skbn._running", "skbn.per_sample"])
def test_an_estimator_chooses_a_backend_in_one_place(module):
    source = NAMES[module].read_text()
    choices = re.findall(r"\bfor_input\(|\bis_dask\(|\bon_cuda\(|\bis_cuda\(", source)
    assert len(choices) == 1, choices
