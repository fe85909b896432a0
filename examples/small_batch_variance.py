"""Running variance from tiny batches: ``ema="batch"`` against ``ema="mixture"``.

A stream of one feature arrives one row at a time (online learning, an
observation normalizer, an event stream), then in batches of four rows.
Its true standard deviation is 1, then jumps to 3 a third of the way in,
while its mean drifts slowly.  Two ``BatchNormalizer(momentum=0.99)`` see the
same batches through ``partial_fit``:

* ``ema="batch"``, batch norm's update (PyTorch's, Keras'): the running
  variance averages each batch's own variance.  A one-row batch has variance
  0, so the running variance stays 0 and ``transform`` divides by
  ``sqrt(eps)``; batches of four rows have, on average, 3/4 of the variance.
* ``ema="mixture"``: the running statistics are those of the mixture of the
  running distribution (weight 0.99) and the batch (weight 0.01), which also
  counts how far the batch's mean is from the running one.  For one-row
  batches it is river's exponentially weighted variance.

It prints the mean ratio of each running variance to the true one, and plots
both against the truth to ``small_batch_variance.png``.

Run it with ``python examples/small_batch_variance.py`` (a few seconds;
``--quick`` for a smoke test; ``--out DIR`` for the plot's folder).
"""

import argparse
import pathlib

import numpy as np

from skbn import BatchNormalizer


def stream(n_rows, rng):
    """``(x, true variance)`` for each row of the stream."""
    t = np.arange(n_rows)
    std = np.where(t < n_rows // 3, 1.0, 3.0)
    mean = 2.0 * np.sin(2 * np.pi * t / n_rows)  # a slow drift
    return rng.normal(mean, std), std**2


def running_variances(x, batch_size, momentum):
    """The running variance of both modes after each batch."""
    out = {}
    for ema in ("batch", "mixture"):
        bn = BatchNormalizer(momentum=momentum, ema=ema)
        trace = []
        for start in range(0, len(x), batch_size):
            bn.partial_fit(x[start : start + batch_size, None])
            trace.append(bn.running_var_[0])
        out[ema] = np.array(trace)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter stream")
    parser.add_argument(
        "--out",
        default="skbn-output",
        help="folder for the PNG, made if missing (default: %(default)s)",
    )
    args = parser.parse_args()
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    n_rows = 6_000 if args.quick else 24_000
    momentum = 0.99
    rng = np.random.default_rng(0)
    x, true_var = stream(n_rows, rng)

    runs = {}
    print(
        f"{n_rows} rows, momentum={momentum}; true std 1, then 3 from row {n_rows // 3}"
    )
    print()
    print(f"{'batch size':>10s} | {'mean running var / true var':>28s}")
    print(f"{'':>10s} | {'ema=batch':>13s} {'ema=mixture':>14s}")
    print("-" * 42)
    for batch_size in (1, 4):
        traces = running_variances(x, batch_size, momentum)
        truth = true_var[batch_size - 1 :: batch_size][: len(traces["batch"])]
        # Past the warm-up of about 1 / (1 - momentum) batches after each
        # change of the true variance.
        steady = np.ones(len(truth), dtype=bool)
        steady[:300] = False
        jump = (n_rows // 3) // batch_size
        steady[jump : jump + 300] = False
        ratios = [np.mean(traces[e][steady] / truth[steady]) for e in traces]
        print(f"{batch_size:10d} | {ratios[0]:13.3f} {ratios[1]:14.3f}")
        runs[batch_size] = traces, truth

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 6))
    for ax, (batch_size, (traces, truth)) in zip(axes, runs.items(), strict=True):
        rows = np.arange(1, len(truth) + 1) * batch_size
        ax.plot(rows, truth, "k-", lw=2, label="true variance")
        ax.plot(rows, traces["batch"], label='ema="batch" (batch norm)')
        ax.plot(rows, traces["mixture"], label='ema="mixture"')
        ax.set_title(
            f"batches of {batch_size} row{'s' if batch_size > 1 else ''}, "
            f"momentum={momentum}",
            fontsize=10,
        )
        ax.set_ylabel("running_var_")
    axes[0].legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("rows seen")
    fig.tight_layout()
    path = out_dir / "small_batch_variance.png"
    fig.savefig(path, dpi=100)
    print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
