"""Batch norm's small-batch limitation, and its remedies, at batch sizes 2 to 128.

Batch norm normalizes with the statistics of the mini-batch while training and
with running averages at inference.  With a handful of samples per batch the
batch statistics are noisy (with two samples every normalized value is
exactly -1 or +1) and the two modes drift apart.  The remedies compared here:

* Batch Renormalization (``renorm=(r_max, d_max)``, Ioffe 2017) corrects the
  batch statistics towards the running ones, so that training sees what
  inference will do; ``r_max`` and ``d_max`` are ramped up from (1, 0) over
  the first half of training as in the paper;
* group norm and layer norm do not depend on the batch at all.

The same NumPy MLP as ``train_mlp.py`` (its :class:`MLP`, same folder) learns
scikit-learn's ``digits`` for a fixed number of epochs at each batch size,
with SGD and a learning rate proportional to the batch size (the linear
scaling rule).  The running statistics use ``momentum = 1 - batch_size /
256``, an average over about 256 samples at every batch size.  It prints the
final validation accuracy (inference mode; a run that diverged counts as 0,
and ``diverged`` marks a cell where every run did) and saves
``small_batches.png``.

Run it with ``python examples/small_batches.py`` (about 50 s on two cores;
``--quick`` for a smoke test; ``--out DIR`` for the plot's folder, by default
``skbn-output/``).
"""

import argparse
import pathlib
import time

import numpy as np
from train_mlp import MLP, load_data, train


def ramp_renorm(model, step, total):
    """Ioffe's schedule: plain batch norm first, then r_max -> 3, d_max -> 5."""
    t = min(1.0, step / max(1.0, 0.5 * total))
    model.renorm = (1.0 + 2.0 * t, 5.0 * t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds' run")
    parser.add_argument(
        "--out",
        default="skbn-output",
        help="folder for small_batches.png, made if missing (default: %(default)s)",
    )
    args = parser.parse_args()
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)

    # inits: the random generator's starting points, one per initialization
    if args.quick:
        batch_sizes, epochs, inits = [4, 64], 1, [0]
    else:
        batch_sizes, epochs, inits = [2, 4, 8, 16, 32, 64, 128], 6, [0, 1]
    methods = {
        "batch norm": "batch",
        "batch renorm": "renorm",
        "group norm (8 groups)": "group",
        "layer norm": "layer",
    }
    sizes = [64, 64, 64, 10]
    base_lr, base_batch = 0.2, 64
    data = load_data()
    t0 = time.perf_counter()
    acc, all_diverged = {}, set()
    for name, norm in methods.items():
        for bs in batch_sizes:
            finals = []
            for init in inits:
                rng = np.random.default_rng(init)
                model = MLP(sizes, norm, rng, momentum=1.0 - bs / 256)
                _, _, diverged = train(
                    model,
                    data,
                    lr=base_lr * bs / base_batch,
                    epochs=epochs,
                    batch_size=bs,
                    rng=rng,
                    eval_every=10**9,  # the final accuracy only
                    schedule=ramp_renorm if norm == "renorm" else None,
                )
                finals.append(None if diverged else model.accuracy(data[1], data[3]))
            if all(f is None for f in finals):
                all_diverged.add((name, bs))
            acc[name, bs] = float(np.mean([f or 0.0 for f in finals]))

    print(
        f"digits, MLP {sizes}, SGD, lr = {base_lr} * batch / {base_batch}, "
        f"{epochs} epochs, mean of {len(inits)} random initialization(s)"
    )
    print("final validation accuracy (inference mode):")
    print()
    head = f"{'method':24s}" + "".join(f" {f'batch {bs}':>9s}" for bs in batch_sizes)
    print(head)
    print("-" * len(head))
    for name in methods:
        cells = (
            "diverged" if (name, bs) in all_diverged else f"{acc[name, bs]:.3f}"
            for bs in batch_sizes
        )
        print(f"{name:24s}" + "".join(f" {c:>9s}" for c in cells))
    print(f"\n{time.perf_counter() - t0:.1f} s")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in methods:
        ax.plot(batch_sizes, [acc[name, bs] for bs in batch_sizes], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("final validation accuracy")
    ax.set_title("digits MLP: normalization vs batch size")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = pathlib.Path(args.out) / "small_batches.png"
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
