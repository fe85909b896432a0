"""Plots for monitoring batch statistics (needs matplotlib: ``skbn[plot]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # Names for the annotations only: matplotlib is imported when drawing.
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from .batch_norm import BatchNormalizer


def plot_batch_stats(
    bn: BatchNormalizer,
    features: Sequence[int | str] | None = None,
    *,
    max_features: int = 4,
    axes: Sequence[Axes] | None = None,
) -> Figure | SubFigure:
    """Draw each batch's mean and variance against the running statistics.

    One panel for the mean and one for the variance; per feature, the batch
    statistics are dots and the running statistics a line, over the batch
    number.  Batch statistics that wander away from the running ones show
    drift in the stream; running statistics that lag behind show that
    ``momentum`` is too high for it.

    Parameters
    ----------
    bn : BatchNormalizer
        Fitted with ``track_batch_stats=True``.
    features : sequence of int or str, default=None
        Features to draw, by index or by name (``feature_names_in_``).  By
        default the first ``max_features``.
    max_features : int, default=4
        How many features to draw when ``features`` is None.
    axes : sequence of two matplotlib Axes, default=None
        Where to draw the mean and the variance; a new figure by default.

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The new figure, or the one that holds ``axes`` (a ``SubFigure`` when
        they were drawn in one).

    Examples
    --------
    >>> import numpy as np
    >>> from skbn import BatchNormalizer
    >>> from skbn.plotting import plot_batch_stats
    >>> rng = np.random.default_rng(0)
    >>> bn = BatchNormalizer(track_batch_stats=True)
    >>> for shift in np.linspace(0.0, 2.0, 30):
    ...     _ = bn.partial_fit(rng.normal(shift, 1.0, size=(64, 3)))
    >>> bn.batch_stats_.mean.shape
    (30, 3)
    >>> fig = plot_batch_stats(bn)  # doctest: +SKIP
    >>> [ax.get_ylabel() for ax in fig.axes]  # doctest: +SKIP
    ['mean', 'variance']
    """
    import matplotlib.pyplot as plt

    try:
        stats = bn.batch_stats_
    except AttributeError:
        raise ValueError(
            "plot_batch_stats needs a BatchNormalizer fitted with "
            "track_batch_stats=True; it has no batch_stats_."
        ) from None
    columns = _feature_indices(bn, features, max_features)
    names = getattr(bn, "feature_names_in_", None)
    fig: Figure | SubFigure  # given axes may sit in a subfigure
    if axes is None:
        fig, axes = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
    else:
        if len(axes) != 2:
            raise ValueError(
                f"axes must be two Axes (mean, variance); got {len(axes)}."
            )
        fig = axes[0].figure
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, j in enumerate(columns):
        color = colors[k % len(colors)]
        label = str(names[j]) if names is not None else f"feature {j}"
        for ax, batch, running in (
            (axes[0], stats.mean, stats.running_mean),
            (axes[1], stats.var, stats.running_var),
        ):
            ax.plot(stats.batch, batch[:, j], ".", color=color, alpha=0.5)
            ax.plot(stats.batch, running[:, j], "-", color=color, label=label)
    axes[0].set_ylabel("mean")
    axes[1].set_ylabel("variance")
    axes[1].set_xlabel("batch")
    axes[0].set_title("batch (dots) vs running (lines) statistics")
    axes[0].legend(loc="best", fontsize="small")
    return fig


def _feature_indices(
    bn: BatchNormalizer, features: Sequence[int | str] | None, max_features: int
) -> list[int]:
    n = bn.n_features_in_
    if features is None:
        return list(range(min(n, max_features)))
    names = getattr(bn, "feature_names_in_", None)
    out: list[int] = []
    for f in features:
        if isinstance(f, str):
            if names is None or f not in names:
                raise ValueError(
                    f"features names {f!r}, which is not a feature name of bn."
                )
            out.append(int(np.flatnonzero(names == f)[0]))
        elif isinstance(f, (int, np.integer)) and -n <= f < n:
            out.append(int(f) % n)
        else:
            raise ValueError(
                f"features must hold feature indices in [0, {n}) or names; got {f!r}."
            )
    return out
