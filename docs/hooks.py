"""mkdocs hooks: publish the saved benchmark results with the site.

``docs/benchmarks.md`` includes ``benchmarks/README.md``, whose links to
``results-*.txt`` are relative to ``benchmarks/``.  Copying those files into
``docs/`` would leave two copies to keep in step, so the build adds them as
documentation files at the site root, where the included links resolve and
``mkdocs build --strict`` can check them.
"""

from pathlib import Path

from mkdocs.structure.files import File

_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks"


def on_files(files, config):
    """Add ``benchmarks/results-*.txt`` to the site as ``results-*.txt``."""
    for path in sorted(_RESULTS.glob("results-*.txt")):
        files.append(
            File.generated(config, path.name, abs_src_path=str(path))
        )
    return files
