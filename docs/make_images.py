"""Regenerate the examples' plots in docs/images/, which the docs pages show.

Run from anywhere, with an skbn and matplotlib installed::

    python docs/make_images.py            # the examples' full runs, ~2 min
    python docs/make_images.py --quick    # their smoke tests, to try it

Each example in ``examples/`` that saves a plot runs with ``--out
docs/images``; its printed table is echoed.  The PNGs are committed, so
rerun this after changing an example and commit what it rewrites.
"""

import argparse
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"

# script: the PNGs it saves
EXAMPLES = {
    "drift.py": ["drift.png", "drift_batch_stats.png"],
    "small_batch_variance.py": ["small_batch_variance.png"],
    "train_mlp.py": ["train_mlp.png"],
    "small_batches.py": ["small_batches.png"],
}
# A picture of a docs page should not weigh on the site or the repository.
MAX_BYTES = 150_000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the examples' smoke-test runs"
    )
    args = parser.parse_args(argv)
    IMAGES.mkdir(parents=True, exist_ok=True)
    too_big = []
    for script, pngs in EXAMPLES.items():
        command = [sys.executable, str(ROOT / "examples" / script)]
        command += ["--out", str(IMAGES)] + (["--quick"] if args.quick else [])
        print(f"$ python examples/{script}", *command[2:], flush=True)
        subprocess.run(command, check=True)
        for png in pngs:
            size = (IMAGES / png).stat().st_size
            print(f"{IMAGES / png}: {size / 1000:.0f} kB")
            if size > MAX_BYTES:
                too_big.append(png)
        print()
    if too_big:
        sys.exit(f"over {MAX_BYTES / 1000:.0f} kB: {', '.join(too_big)}")


if __name__ == "__main__":
    main()
