"""Regenerate the examples' plots in docs/images/, which the docs pages show.

Run from anywhere, with an skbn and matplotlib installed::

    python docs/make_images.py            # the examples' full runs, ~2 min
    python docs/make_images.py --quick    # their smoke tests, to try it
    python docs/make_images.py --benchmarks-only   # the benchmark chart alone

Each example in ``examples/`` that saves a plot runs with ``--out
docs/images``; its printed table is echoed.  Then the benchmark chart,
``benchmark_ratios.png``, is drawn from the recorded run that
``benchmarks/README.md`` describes (``RESULTS`` below), so the chart shows
the numbers of that file and no others.  The PNGs are committed, so rerun
this after changing an example or recording a new run (point ``RESULTS`` at
it) and commit what it rewrites.
"""

import argparse
import pathlib
import re
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

# The recorded run that benchmarks/README.md's tables come from.
RESULTS = ROOT / "benchmarks" / "results-2026-12-02-xeon.txt"
# Peers as `skbn bench` names them, and as the chart labels them.
PEERS = {
    "StandardScaler": "StandardScaler",
    "torch": "torch (CPU)",
    "numpy": "plain NumPy class",
}

_SHAPE = re.compile(r"^(\d+(?: x \d+)+) (float\d+), axis=(\S+?),")
_ROW = re.compile(r"^(\w+) +[\d.]+ +[\d.]+ +[\d.]+  (.*)$")


def parse_bench(text):
    """The peer ratios of each ``skbn bench`` run in a results file.

    Returns ``[(title, [(operation, {peer: time / skbn}), ...]), ...]`` from
    the "operation ... peers (time / skbn)" table that ends each run.
    """
    runs = []
    rows = None
    for line in text.splitlines():
        if m := _SHAPE.match(line):
            shape, dtype, axis = m.groups()
            shape = " \u00d7 ".join(f"{int(d):,}" for d in shape.split(" x "))
            title = f"{shape} {dtype}" + (f", axis={axis}" if axis != "-1" else "")
            rows = []
            runs.append((title, rows))
        elif line.startswith("operation ") and "peers (time / skbn)" in line:
            continue
        elif rows is not None and (m := _ROW.match(line)):
            op, peers = m.groups()
            ratios = {}
            for item in peers.split(", "):
                name, ratio = item.rsplit(" ", 1)
                ratios[name] = float(ratio.rstrip("x"))
            rows.append((op, ratios))
        elif line.startswith("$ "):
            rows = None
    return [run for run in runs if run[1]]


def benchmark_chart(results=RESULTS, out=IMAGES / "benchmark_ratios.png"):
    """Draw skbn's speedup over each peer, per operation and shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs = parse_bench(results.read_text(encoding="utf-8"))
    heights = [len(rows) for _, rows in runs]
    fig, axes = plt.subplots(
        len(runs),
        1,
        figsize=(8, 1.1 + 0.42 * sum(heights)),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
    )
    colors = dict(zip(PEERS, ["#1f77b4", "#ff7f0e", "#7f7f7f"], strict=True))
    width = 0.8 / len(PEERS)
    for ax, (title, rows) in zip(axes, runs, strict=True):
        for k, peer in enumerate(PEERS):
            ys, xs = [], []
            for i, (_, ratios) in enumerate(rows):
                if peer in ratios:
                    ys.append(i + (k - 1) * width)
                    xs.append(ratios[peer])
            bars = ax.barh(ys, xs, height=width, color=colors[peer], label=PEERS[peer])
            ax.bar_label(bars, fmt="%.1f\u00d7", padding=2, fontsize=7)
        ax.set_yticks(range(len(rows)), [op for op, _ in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9, loc="left")
        # 1x: as fast as skbn; a bar past it is a peer slower than skbn.
        ax.axvline(1.0, color="black", linewidth=0.8)
    ax = axes[-1]
    ax.set_xscale("log")
    ax.set_xlim(0.8, 600)
    ax.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}\u00d7")
    )
    ax.set_xlabel("peer time / skbn time (median of 7 interleaved runs; log scale)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"skbn's speedup over its peers ({results.name})",
        fontsize=10,
        x=0.02,
        ha="left",
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the examples' smoke-test runs"
    )
    parser.add_argument(
        "--benchmarks-only",
        action="store_true",
        help="draw the benchmark chart alone, without running the examples",
    )
    args = parser.parse_args(argv)
    IMAGES.mkdir(parents=True, exist_ok=True)
    too_big = []
    for script, pngs in {} if args.benchmarks_only else EXAMPLES.items():
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
    chart = benchmark_chart()
    size = chart.stat().st_size
    print(f"{chart}: {size / 1000:.0f} kB, from {RESULTS.name}")
    if size > MAX_BYTES:
        too_big.append(chart.name)
    if too_big:
        sys.exit(f"over {MAX_BYTES / 1000:.0f} kB: {', '.join(too_big)}")


if __name__ == "__main__":
    main()
