"""A drifting stream: momentum statistics follow it, cumulative ones do not.

Mini-batches of three features arrive one after another while their
distribution moves: feature 0 drifts linearly, feature 1 oscillates, feature
2 jumps (mean and spread) half-way through.  Two estimators see the same
batches through ``partial_fit``:

* ``skbn.BatchNormalizer(momentum=0.9)``: an exponential moving average that
  weighs the last ~10 batches (PyTorch's ``momentum=0.1``);
* ``sklearn.preprocessing.StandardScaler``: exact statistics of *everything*
  seen so far, the right answer for a stationary stream and a lagging one
  for a drifting stream.

It prints, at a few points of the stream, the true mean of each feature and
both estimates, then the error of each over the whole stream: of the mean,
and of the standardized next batch (its mean should be 0 and its standard
deviation 1 when the statistics are current).  The curves go to
``drift.png``; each batch's own statistics against the running ones, as
``skbn.plotting.plot_batch_stats`` draws them, to ``drift_batch_stats.png``.

Run it with ``python examples/drift.py`` (a few seconds; ``--quick`` for a
smoke test).
"""

import argparse
import pathlib

import numpy as np
from sklearn.preprocessing import StandardScaler

from skbn import BatchNormalizer


def true_stats(t, n_batches):
    """Mean and standard deviation of the three features at batch ``t``."""
    mean = np.array(
        [
            10.0 * t / n_batches,  # linear drift
            3.0 * np.sin(3 * np.pi * t / n_batches),  # one and a half cycles
            0.0 if t < n_batches // 2 else 5.0,  # a jump half-way
        ]
    )
    std = np.array([1.0, 1.0, 1.0 if t < n_batches // 2 else 3.0])
    return mean, std


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter stream")
    parser.add_argument(
        "--out",
        default="skbn-output",
        help="folder for the two PNGs, made if missing (default: %(default)s)",
    )
    args = parser.parse_args()
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)

    n_batches = 60 if args.quick else 300
    batch_size = 64
    rng = np.random.default_rng(0)
    # track_batch_stats keeps the latest batches' statistics for the plot.
    bn = BatchNormalizer(momentum=0.9, track_batch_stats=True)
    scaler = StandardScaler()
    truth, est_bn, est_ss = [], [], []
    z_bn, z_ss = [], []  # (mean, std) of the next batch, standardized
    for t in range(n_batches):
        mean, std = true_stats(t, n_batches)
        batch = rng.normal(mean, std, size=(batch_size, 3))
        if t > 0:
            # Standardize the new batch with what was learned before it.
            for est, out in ((bn, z_bn), (scaler, z_ss)):
                z = est.transform(batch)
                out.append((z.mean(axis=0), z.std(axis=0)))
        bn.partial_fit(batch)
        scaler.partial_fit(batch)
        truth.append(mean)
        est_bn.append(bn.running_mean_.copy())
        est_ss.append(scaler.mean_.copy())
    truth, est_bn, est_ss = map(np.array, (truth, est_bn, est_ss))

    print(
        f"{n_batches} batches of {batch_size}; feature 0 drifts, 1 oscillates, "
        "2 jumps at the middle"
    )
    print()
    head = f"{'batch':>6s}" + "".join(
        f" | {f'f{j} true':>8s} {'skbn':>7s} {'scaler':>7s}" for j in range(3)
    )
    print(head)
    print("-" * len(head))
    for t in np.linspace(n_batches // 10, n_batches, 10).astype(int) - 1:
        row = f"{t:6d}"
        for j in range(3):
            row += f" | {truth[t, j]:8.2f} {est_bn[t, j]:7.2f} {est_ss[t, j]:7.2f}"
        print(row)
    print()
    print("over the whole stream, per feature:")
    err_bn = np.abs(est_bn - truth).mean(axis=0)
    err_ss = np.abs(est_ss - truth).mean(axis=0)
    zb, zs = np.array(z_bn), np.array(z_ss)
    rows = [
        ("mean abs error of the mean", err_bn, err_ss),
        (
            "next batch standardized: |mean|",
            *(np.abs(z[:, 0]).mean(0) for z in (zb, zs)),
        ),
        (
            "next batch standardized: |std - 1|",
            *(np.abs(z[:, 1] - 1).mean(0) for z in (zb, zs)),
        ),
    ]
    print(f"{'':36s} {'skbn BatchNormalizer':>24s} {'StandardScaler':>24s}")
    for name, a, b in rows:
        fmt = " ".join(f"{v:7.3f}" for v in a), " ".join(f"{v:7.3f}" for v in b)
        print(f"{name:36s} {fmt[0]:>24s} {fmt[1]:>24s}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    titles = ["feature 0: linear drift", "feature 1: oscillation", "feature 2: jump"]
    for j, ax in enumerate(axes):
        ax.plot(truth[:, j], "k-", lw=2, label="true mean")
        ax.plot(est_bn[:, j], label="BatchNormalizer(momentum=0.9).running_mean_")
        ax.plot(est_ss[:, j], label="StandardScaler.partial_fit mean_")
        ax.set_title(titles[j], fontsize=10)
    axes[0].legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("batch")
    fig.tight_layout()
    path = pathlib.Path(args.out) / "drift.png"
    fig.savefig(path, dpi=100)
    print(f"\nplot: {path}")

    # Batch (dots) vs running (lines) statistics per feature: the dots move
    # away from the lines where the stream drifts or jumps.
    try:
        from skbn.plotting import plot_batch_stats
    except ImportError:  # an skbn without the monitoring plot
        return
    fig = plot_batch_stats(bn)
    fig.tight_layout()
    stats_path = pathlib.Path(args.out) / "drift_batch_stats.png"
    fig.savefig(stats_path, dpi=100)
    print(f"plot: {stats_path}")


if __name__ == "__main__":
    main()
