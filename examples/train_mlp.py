"""Train a small NumPy MLP with and without batch norm, at several learning rates.

The network is written in plain NumPy; its normalization layers are
``skbn.functional``'s forward and backward passes.  It learns scikit-learn's
``digits`` (8x8 images of handwritten digits, 10 classes) with plain SGD, and
this script measures the two claims the batch-norm literature makes about
training speed:

* batch norm reaches a target accuracy in fewer steps;
* batch norm trains at higher learning rates.

Each network trains from a few random initializations.  For each learning
rate and each network it prints the SGD steps to the target validation
accuracy of 95 % (median over the initializations; ``-`` when none reaches
it, ``diverged`` when every one diverged), the final validation accuracy,
and the highest learning rate at which every initialization ends at the
target or above.  The curves go to ``train_mlp.png``.

Run it with ``python examples/train_mlp.py`` (about 40 s on two cores;
``--quick`` for a smoke test; ``--out DIR`` for the plot's folder, by default
``skbn-output/``).  ``small_batches.py`` reuses :class:`MLP`.
"""

import argparse
import pathlib
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skbn.functional import (
    batch_norm_backward,
    batch_norm_forward,
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)


def load_data(split=0):
    """Digits, standardized with the training split's statistics.

    ``split`` picks one of scikit-learn's reproducible random splits.
    """
    X, y = load_digits(return_X_y=True)
    X_tr, X_va, y_tr, y_va = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=split
    )
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_va), y_tr, y_va


class MLP:
    """ReLU network ``Linear -> [norm] -> ReLU -> ... -> Linear -> softmax``.

    Parameters
    ----------
    sizes : list of int
        Input width, hidden widths, number of classes.
    norm : {None, "batch", "renorm", "group", "layer"}
        Normalization after each hidden linear layer.  With a normalization
        the linear layer has no bias (``beta`` takes its place).
    rng : numpy.random.Generator
    n_groups : int
        Groups of group norm.
    momentum : float
        skbn's convention: weight of the old running value (PyTorch's 0.1).
    """

    def __init__(self, sizes, norm, rng, n_groups=8, momentum=0.9):
        self.norm = norm
        self.n_groups = n_groups
        self.momentum = momentum
        self.renorm = None  # (r_max, d_max) while training with "renorm"
        self.W = [
            rng.normal(0.0, np.sqrt(2.0 / m), size=(m, n))  # He initialization
            for m, n in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        hidden = sizes[1:-1]
        self.b = [np.zeros(n) for n in sizes[1:]]
        self.gamma = [np.ones(n) for n in hidden]
        self.beta = [np.zeros(n) for n in hidden]
        self.running = [(np.zeros(n), np.ones(n)) for n in hidden]

    def _normalize(self, i, z, training):
        g, b = self.gamma[i], self.beta[i]
        if self.norm in ("batch", "renorm"):
            rm, rv = self.running[i]
            return batch_norm_forward(
                z,
                g,
                b,
                running_mean=rm,
                running_var=rv,
                momentum=self.momentum,
                training=training,
                renorm=self.renorm if self.norm == "renorm" else None,
            )
        if self.norm == "group":
            return group_norm_forward(z, g, b, n_groups=self.n_groups)
        return layer_norm_forward(z, g, b)

    def _normalize_backward(self, dz, cache):
        if self.norm in ("batch", "renorm"):
            return batch_norm_backward(dz, cache)
        if self.norm == "group":
            return group_norm_backward(dz, cache)
        return layer_norm_backward(dz, cache)

    def forward(self, x, training=False):
        """Logits, and what :meth:`backward` needs."""
        tape = []
        h = x
        for i, W in enumerate(self.W[:-1]):
            z = h @ W
            cache = None
            if self.norm is None:
                z = z + self.b[i]
            else:
                z, cache = self._normalize(i, z, training)
            tape.append((h, cache, z > 0))
            h = np.maximum(z, 0.0)
        return h @ self.W[-1] + self.b[-1], (tape, h)

    def backward(self, dlogits, saved):
        """Gradients of every parameter, in the order :meth:`step` takes."""
        tape, h = saved
        dW = [None] * len(self.W)
        db = [None] * len(self.b)
        dgamma = [None] * len(self.gamma)
        dbeta = [None] * len(self.beta)
        dW[-1] = h.T @ dlogits
        db[-1] = dlogits.sum(axis=0)
        dh = dlogits @ self.W[-1].T
        for i in reversed(range(len(tape))):
            h_in, cache, active = tape[i]
            dz = dh * active
            if self.norm is None:
                db[i] = dz.sum(axis=0)
            else:
                dz, dgamma[i], dbeta[i] = self._normalize_backward(dz, cache)
            dW[i] = h_in.T @ dz
            dh = dz @ self.W[i].T
        return dW, db, dgamma, dbeta

    def step(self, grads, lr):
        """Plain SGD."""
        for params, dparams in zip(
            (self.W, self.b, self.gamma, self.beta), grads, strict=True
        ):
            for p, dp in zip(params, dparams, strict=True):
                if dp is not None:
                    p -= lr * dp

    def accuracy(self, X, y):
        logits, _ = self.forward(X, training=False)
        return float(np.mean(logits.argmax(axis=1) == y))


def cross_entropy_grad(logits, y):
    """Mean cross-entropy of softmax(logits) and its gradient."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.mean(np.log(p[np.arange(n), y] + 1e-300))
    p[np.arange(n), y] -= 1.0
    return loss, p / n


def train(model, data, *, lr, epochs, batch_size, rng, eval_every=5, schedule=None):
    """SGD over shuffled mini-batches.

    Returns ``(steps, validation accuracies, diverged)``.  A run that
    diverges (a non-finite loss, or an infinite or NaN activation that skbn
    refuses with a ValueError) stops there, its last accuracy 0 and
    ``diverged`` True.  ``schedule(step, total)`` may adjust the model before
    each step.
    """
    X_tr, X_va, y_tr, y_va = data
    n = len(X_tr)
    steps, accs = [0], [model.accuracy(X_va, y_va)]
    total = epochs * (n // batch_size)
    step = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n - batch_size + 1, batch_size):
                rows = order[start : start + batch_size]
                if schedule is not None:
                    schedule(model, step, total)
                try:
                    logits, saved = model.forward(X_tr[rows], training=True)
                    loss, dlogits = cross_entropy_grad(logits, y_tr[rows])
                    if not np.isfinite(loss):
                        raise FloatingPointError("loss is not finite")
                    model.step(model.backward(dlogits, saved), lr)
                except (ValueError, FloatingPointError):
                    steps.append(step + 1)
                    accs.append(0.0)
                    return np.array(steps), np.array(accs), True
                step += 1
                if step % eval_every == 0:
                    steps.append(step)
                    try:
                        accs.append(model.accuracy(X_va, y_va))
                    except ValueError:
                        # skbn refuses the non-finite activations of a model
                        # gone wrong at inference: counted as diverged.
                        accs.append(0.0)
                        return np.array(steps), np.array(accs), True
    return np.array(steps), np.array(accs), False


def steps_to(steps, accs, target):
    hit = np.flatnonzero(accs >= target)
    return int(steps[hit[0]]) if hit.size else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds' run")
    parser.add_argument(
        "--out",
        default="skbn-output",
        help="folder for train_mlp.png, made if missing (default: %(default)s)",
    )
    args = parser.parse_args()
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)

    # inits: the random generator's starting points, one per initialization
    if args.quick:
        lrs, inits, epochs = [0.1, 1.0], [0], 2
    else:
        lrs, inits, epochs = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], [0, 1, 2], 12
    # One target for both claims: steps to reach it, and the learning rates
    # at which training still ends at it.
    target = 0.95
    sizes = [64, 128, 128, 128, 10]
    data = load_data()
    networks = {"plain": None, "batch norm": "batch"}
    t0 = time.perf_counter()
    curves = {}
    for name, norm in networks.items():
        for lr in lrs:
            runs = []
            for init in inits:
                rng = np.random.default_rng(init)
                model = MLP(sizes, norm, rng)
                runs.append(
                    train(model, data, lr=lr, epochs=epochs, batch_size=64, rng=rng)
                )
            curves[name, lr] = runs

    print(
        f"digits, MLP {sizes}, SGD, batch 64, {epochs} epochs, "
        f"{len(inits)} random initialization(s); "
        f"target {target:.0%} validation accuracy"
    )
    print()
    head = f"{'lr':>6s}"
    for name in networks:
        head += f" | {name + ': steps to target':>26s} {'final acc':>9s}"
    print(head)
    print("-" * len(head))
    best = {}
    for lr in lrs:
        row = f"{lr:6g}"
        for name in networks:
            runs = curves[name, lr]
            hits = [steps_to(s, a, target) for s, a, _ in runs]
            finals = [a[-1] for _, a, _ in runs]
            n_diverged = sum(d for _, _, d in runs)
            reached = [h for h in hits if h is not None]
            median = f"{int(np.median(reached))}" if len(reached) == len(hits) else "-"
            if len(reached) not in (0, len(hits)):
                median = f"{int(np.median(reached))} ({len(reached)}/{len(hits)})"
            if n_diverged == len(runs):
                final = "diverged"
            else:
                final = f"{np.median(finals):.3f}"
                if n_diverged:
                    final += f" ({n_diverged} diverged)"
            row += f" | {median:>26s} {final:>9s}"
            if min(finals) >= target:
                best[name] = lr
        print(row)
    print()
    for name in networks:
        lr = best.get(name)
        shown = "none" if lr is None else f"{lr:g}"
        print(
            f"highest learning rate at which every initialization ends at "
            f"{target:.0%} or above ({name}): {shown}"
        )
    print(f"\n{time.perf_counter() - t0:.1f} s")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes, networks, strict=True):
        for k, lr in enumerate(lrs):
            s, a, diverged = curves[name, lr][0]
            label = f"lr={lr:g}" + (" (diverged)" if diverged else "")
            ax.plot(s, a, color=cmap(k / max(1, len(lrs) - 1)), label=label)
        ax.axhline(target, color="grey", lw=0.8, ls="--", label=f"target {target:.0%}")
        ax.set_title(name)
        ax.set_xlabel("SGD step")
        # Each panel its own legend: a run that diverges in one does not in
        # the other.
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("validation accuracy (first initialization)")
    fig.tight_layout()
    path = pathlib.Path(args.out) / "train_mlp.png"
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
