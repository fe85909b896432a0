"""Batch statistics monitoring: the bounded history and its plot."""

import numpy as np
import pytest

from skbn import BatchNormalizer


def _stream(bn, rng, n_batches, d=3):
    batches = [rng.normal(i / 10, 1.0, size=(32, d)) for i in range(n_batches)]
    for b in batches:
        bn.partial_fit(b)
    return batches


def test_history_matches_batches(rng):
    bn = BatchNormalizer(track_batch_stats=True)
    batches = _stream(bn, rng, 4)
    stats = bn.batch_stats_
    np.testing.assert_array_equal(stats.batch, [1, 2, 3, 4])
    np.testing.assert_array_equal(stats.n_samples, [32] * 4)
    np.testing.assert_allclose(stats.mean, [b.mean(axis=0) for b in batches])
    np.testing.assert_allclose(stats.var, [b.var(axis=0) for b in batches])
    np.testing.assert_array_equal(stats.running_mean[-1], bn.running_mean_)
    np.testing.assert_array_equal(stats.running_var[-1], bn.running_var_)


def test_ring_buffer_is_bounded(rng):
    bn = BatchNormalizer(track_batch_stats=True, max_batch_stats=5)
    _stream(bn, rng, 20)
    assert len(bn._batch_stats) == 5
    np.testing.assert_array_equal(bn.batch_stats_.batch, [16, 17, 18, 19, 20])
    bn.set_params(max_batch_stats=2)  # lowering the bound applies at once
    np.testing.assert_array_equal(bn.batch_stats_.batch, [19, 20])


def test_fit_resets_and_failure_keeps_history(rng):
    bn = BatchNormalizer(track_batch_stats=True)
    _stream(bn, rng, 3)
    bad = rng.normal(size=(5, 3))
    bad[2, 0] = np.inf
    with pytest.raises(ValueError):
        bn.partial_fit(bad)
    assert len(bn.batch_stats_.batch) == 3
    bn.fit(rng.normal(size=(10, 3)))
    np.testing.assert_array_equal(bn.batch_stats_.batch, [1])


def test_not_tracked_has_no_batch_stats(rng):
    bn = BatchNormalizer().fit(rng.normal(size=(10, 2)))
    assert not hasattr(bn, "batch_stats_")
    with pytest.raises(AttributeError, match="track_batch_stats=True"):
        bn.batch_stats_  # noqa: B018


def test_history_survives_save_and_load(tmp_path, rng):
    bn = BatchNormalizer(track_batch_stats=True, max_batch_stats=4)
    _stream(bn, rng, 6)
    bn.save(tmp_path / "s.npz")
    loaded = BatchNormalizer.load(tmp_path / "s.npz")
    for got, want in zip(loaded.batch_stats_, bn.batch_stats_, strict=True):
        np.testing.assert_array_equal(got, want)


# -- the plot ---------------------------------------------------------------------

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


@pytest.fixture
def close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_plot_batch_stats(rng, close_figures):
    from skbn.plotting import plot_batch_stats

    bn = BatchNormalizer(track_batch_stats=True)
    _stream(bn, rng, 12, d=6)
    fig = plot_batch_stats(bn)
    mean_ax, var_ax = fig.axes
    assert mean_ax.get_ylabel() == "mean" and var_ax.get_ylabel() == "variance"
    # Default: 4 features, a dotted batch series and a running line for each.
    assert len(mean_ax.lines) == 8 and len(var_ax.lines) == 8
    batch_line, running_line = mean_ax.lines[:2]
    np.testing.assert_array_equal(batch_line.get_xdata(), np.arange(1, 13))
    np.testing.assert_array_equal(batch_line.get_ydata(), bn.batch_stats_.mean[:, 0])
    np.testing.assert_array_equal(
        running_line.get_ydata(), bn.batch_stats_.running_mean[:, 0]
    )
    fig.canvas.draw()


def test_plot_selected_features_by_name_into_given_axes(rng, close_figures):
    pd = pytest.importorskip("pandas")
    import matplotlib.pyplot as plt

    from skbn.plotting import plot_batch_stats

    bn = BatchNormalizer(track_batch_stats=True)
    for i in range(5):
        bn.partial_fit(
            pd.DataFrame(rng.normal(i, 1, size=(20, 3)), columns=list("abc"))
        )
    fig, axes = plt.subplots(1, 2)
    assert plot_batch_stats(bn, ["c", 0], axes=axes) is fig
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["c", "a"]


def test_plot_errors(rng, close_figures):
    from skbn.plotting import plot_batch_stats

    with pytest.raises(ValueError, match="track_batch_stats=True"):
        plot_batch_stats(BatchNormalizer().fit(rng.normal(size=(5, 2))))
    bn = BatchNormalizer(track_batch_stats=True).fit(rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="feature indices"):
        plot_batch_stats(bn, [2])
    with pytest.raises(ValueError, match="not a feature name"):
        plot_batch_stats(bn, ["x"])
    with pytest.raises(ValueError, match="two Axes"):
        plot_batch_stats(bn, axes=[None])
