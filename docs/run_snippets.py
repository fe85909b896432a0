"""Run the Python code blocks of documentation pages, as a reader would.

Each page's ```python blocks run top to bottom in one namespace, so a page
that a new user follows step by step is checked the same way.  Usage::

    python docs/run_snippets.py docs/getting-started.md docs/guide/training.md

Blocks fenced as ```python are run; ```pycon, ```sh and others are not.
"""

import pathlib
import re
import sys
import time

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def main(paths: list[str]) -> int:
    for path in paths:
        text = pathlib.Path(path).read_text(encoding="utf-8")
        namespace: dict[str, object] = {"__name__": "__main__"}
        start = time.perf_counter()
        blocks = BLOCK.findall(text)
        for i, block in enumerate(blocks):
            try:
                exec(compile(block, f"{path}[block {i}]", "exec"), namespace)
            except Exception:
                print(f"{path}: block {i} failed:\n{block}", file=sys.stderr)
                raise
        print(
            f"{path}: {len(blocks)} blocks ran in {time.perf_counter() - start:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
