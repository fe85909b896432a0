"""mkdocs hooks: the version in the header; the saved benchmark results.

The header shows ``skbn <version>``, read from ``skbn/__init__.py`` at build
time so it cannot go stale (this hook imports nothing of the package; the
API pages do, through ``docs/griffe_rst.py``, for the docstrings that name
shared pieces).

``docs/benchmarks.md`` includes ``benchmarks/README.md``, whose links to
``results-*.txt`` are relative to ``benchmarks/``.  Copying those files into
``docs/`` would leave two copies to keep in step, so the build adds them as
documentation files at the site root, where the included links resolve and
``mkdocs build --strict`` can check them.
"""

import re
from pathlib import Path

from mkdocs.structure.files import File

_ROOT = Path(__file__).resolve().parent.parent
_RESULTS = _ROOT / "benchmarks"


def on_config(config):
    """Append skbn's ``__version__`` to the site name (header, page titles)."""
    text = (_ROOT / "skbn" / "__init__.py").read_text(encoding="utf-8")
    version = re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)
    config.site_name = f"{config.site_name} {version}"
    return config


def on_files(files, config):
    """Add ``benchmarks/results-*.txt`` to the site as ``results-*.txt``."""
    for path in sorted(_RESULTS.glob("results-*.txt")):
        files.append(
            File.generated(config, path.name, abs_src_path=str(path))
        )
    return files
