"""Running statistics for streams: ``ema="mixture"`` and ``n_samples_seen_``.

``ema="mixture"`` is tested against river's exponentially weighted variance
(numbers printed by river 0.26.1, ``stats.EWVar`` / ``stats.EWMean`` and
``preprocessing.AdaptiveStandardScaler``, whose ``fading_factor`` is
``1 - momentum``) and against the slow reference of ``tests/naive.py``;
``n_samples_seen_`` against ``sklearn.preprocessing.StandardScaler``.
"""

import pickle
import random

import dask.array as da
import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.preprocessing import StandardScaler

from skbn import BatchNormalizer
from skbn import functional as F

# -- river's numbers ----------------------------------------------------------------

# stats.EWVar(fading_factor=0.3), updated with each value in turn.
RIVER_03_X = [3.0, -1.0, 4.5, 2.0, 2.0, 10.0, -7.25, 0.5]
RIVER_03_VAR = [
    0.0,
    3.360000000000001,
    3.882900000000003,
    2.796171000000001,
    1.9956087900000004,
    13.851383807099996,
    39.230649265478995,
    27.525317425084705,
]
# The example of river's EWVar docstring (fading_factor=0.5).
RIVER_05_X = [1, 3, 5, 4, 6, 8, 7, 9, 11]
RIVER_05_VAR = [
    0.0,
    1.0,
    2.75,
    1.4375,
    1.984375,
    3.43359375,
    1.7958984375,
    2.198974609375,
    3.56536865234375,
]
# Three features at once, fading_factor=0.1: the final EWVar and EWMean.
RIVER_01_X = np.array(
    [
        [58.164, 39.777, 51.672],
        [47.729, 48.189, 49.138],
        [41.92, 49.072, 46.539],
        [63.292, 50.903, 48.589],
        [48.875, 47.328, 45.779],
        [48.437, 51.928, 49.046],
        [53.831, 49.201, 50.097],
        [56.183, 52.18, 47.979],
        [49.269, 52.162, 57.74],
        [48.922, 49.026, 54.009],
        [46.454, 48.833, 53.53],
        [52.321, 50.366, 52.68],
    ]
)
RIVER_01_VAR = [27.543287780292303, 24.260913709942542, 8.184769193225748]
RIVER_01_MEAN = [53.00926891260206, 46.81248352047362, 51.39502643066197]
# preprocessing.AdaptiveStandardScaler(fading_factor=0.6): learn_one, then
# transform_one, for each x of its docstring's example.
RIVER_SCALER_OUT = [
    0.0,
    -0.8164965809279195,
    0.8122201697091203,
    0.6959734337843425,
    0.7541563302633238,
    0.5982770978841577,
    0.651685089450348,
    0.1248528321065935,
]


def _one_row_stream(xs, momentum, method="partial_fit", **kw):
    bn = BatchNormalizer(momentum=momentum, ema="mixture", **kw)
    out = []
    for row in np.asarray(xs, dtype=np.float64).reshape(len(xs), -1):
        getattr(bn, method)(row[None, :])
        out.append(bn.running_var_.copy())
    return bn, np.array(out)


@pytest.mark.parametrize("method", ["partial_fit", "partial_fit_transform"])
@pytest.mark.parametrize(
    "xs, fading, want",
    [(RIVER_03_X, 0.3, RIVER_03_VAR), (RIVER_05_X, 0.5, RIVER_05_VAR)],
)
def test_one_row_batches_are_rivers_ewvar(xs, fading, want, method):
    _, got = _one_row_stream(xs, 1.0 - fading, method)
    # river forms E[x**2] - E[x]**2, which loses a few bits; skbn merges.
    assert_allclose(got[:, 0], want, rtol=1e-13, atol=1e-13)


def test_one_row_batches_several_features():
    bn, _ = _one_row_stream(RIVER_01_X, 0.9)
    assert_allclose(bn.running_var_, RIVER_01_VAR, rtol=1e-11)
    assert_allclose(bn.running_mean_, RIVER_01_MEAN, rtol=1e-13)


def test_rivers_adaptive_standard_scaler_example():
    random.seed(42)
    xs = [random.uniform(4 + i, 6 + i) for i in range(8)]
    bn = BatchNormalizer(momentum=0.4, ema="mixture", eps=1e-300)
    got = []
    for x in xs:
        row = np.array([[x]])
        bn.partial_fit(row)
        got.append(bn.transform(row)[0, 0])
    assert_allclose(got, RIVER_SCALER_OUT, rtol=1e-12, atol=1e-15)


def test_batch_mode_forgets_the_spread_of_one_row_batches():
    bn = BatchNormalizer(momentum=0.7)
    for x in RIVER_03_X:
        bn.partial_fit(np.array([[x]]))
    assert bn.running_var_[0] == 0.0  # the problem "mixture" solves
    _, got = _one_row_stream(RIVER_03_X, 0.7)
    assert got[-1, 0] > 1.0


# -- against the reference, any batches ----------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    d=st.integers(1, 4),
    momentum=st.floats(0.0, 1.0),
    offset=st.floats(-1e4, 1e4),
    weighted=st.booleans(),
    nan=st.booleans(),
    data=st.data(),
)
def test_mixture_matches_reference(sizes, d, momentum, offset, weighted, nan, data):
    n = sum(sizes)
    X = data.draw(arrays(np.float64, (n, d), elements=st.floats(-100, 100))) + offset
    if nan:
        X[data.draw(arrays(np.bool_, (n, d)))] = np.nan
    w = (
        data.draw(arrays(np.float64, n, elements=st.floats(0.25, 4.0)))
        if weighted
        else None
    )
    edges = np.cumsum([0, *sizes])
    spans = list(zip(edges[:-1], edges[1:], strict=True))
    batches = [X[a:b] for a, b in spans]
    weights = None if w is None else [w[a:b] for a, b in spans]
    bn = BatchNormalizer(momentum=momentum, ema="mixture")
    for i, b in enumerate(batches):
        bn.partial_fit(b, sample_weight=None if w is None else weights[i])
    mean, var = naive.running_stats(batches, momentum, -1, weights, ema="mixture")
    scale = float(np.nanmax(np.abs(X))) if np.isfinite(X).any() else 1.0
    assert_allclose(bn.running_mean_, mean, rtol=1e-10, atol=1e-12 * scale)
    # The reference's E[x**2] - E[x]**2 cancels: its error grows with offset**2.
    assert_allclose(bn.running_var_, var, rtol=1e-8, atol=1e-12 * scale**2)
    assert np.all(bn.running_var_ >= 0.0)


@pytest.mark.parametrize("axis", [1, (1, 2), -1])
def test_mixture_nd_and_every_training_method_agree(rng, axis):
    batches = [rng.normal(3.0, 2.0, size=(k, 3, 4)) for k in (1, 2, 5)]
    mean, var = naive.running_stats(batches, 0.8, axis, ema="mixture")
    for method in ("partial_fit", "partial_fit_transform"):
        bn = BatchNormalizer(momentum=0.8, ema="mixture", axis=axis)
        for b in batches:
            getattr(bn, method)(b)
        assert_allclose(bn.running_mean_, mean, rtol=1e-13)
        assert_allclose(bn.running_var_, var, rtol=1e-12)


def test_small_path_and_general_path_give_the_same_bits(rng):
    # Unit weights take the general (weighted) path, none the one-call path.
    a = BatchNormalizer(momentum=0.6, ema="mixture")
    b = BatchNormalizer(momentum=0.6, ema="mixture")
    for k in (1, 3, 2, 7):
        x = rng.normal(5.0, 1.0, size=(k, 4))
        a.partial_fit(x)
        b.partial_fit(x, sample_weight=np.ones(k))
    assert_array_equal(a.running_mean_, b.running_mean_)
    assert_allclose(a.running_var_, b.running_var_, rtol=1e-15)


def test_first_batch_sets_the_statistics_and_absent_features_keep_theirs(rng):
    x = rng.normal(size=(6, 3))
    bn = BatchNormalizer(momentum=0.5, ema="mixture").partial_fit(x)
    assert_allclose(bn.running_mean_, x.mean(0), rtol=1e-14)
    assert_allclose(bn.running_var_, x.var(0), rtol=1e-13)
    before = bn.running_mean_.copy(), bn.running_var_.copy()
    y = rng.normal(size=(4, 3))
    y[:, 1] = np.nan
    bn.partial_fit(y)
    assert bn.running_mean_[1] == before[0][1]
    assert bn.running_var_[1] == before[1][1]
    assert bn.running_var_[0] != before[1][0]


@pytest.mark.parametrize("weighted", [False, True])
def test_ema_changes_nothing_when_pooling(rng, weighted):
    batches = [rng.normal(size=(k, 3)) for k in (1, 4, 2)]
    fits = []
    for ema in ("batch", "mixture"):
        bn = BatchNormalizer(momentum=None, ema=ema)
        for b in batches:
            bn.partial_fit(b, sample_weight=np.full(len(b), 2.0) if weighted else None)
        fits.append(bn)
    assert_array_equal(fits[0].running_mean_, fits[1].running_mean_)
    assert_array_equal(fits[0].running_var_, fits[1].running_var_)


def test_mixture_is_unbiased_for_small_batches():
    # Stationary N(3, 2**2) in batches of 4: batch norm's update converges to
    # E[var_b] = 3/4 * 4 = 3; the mixture update to the stream's variance, 4.
    rng = np.random.default_rng(7)
    got = {}
    for ema in ("batch", "mixture"):
        bn = BatchNormalizer(momentum=0.99, ema=ema)
        trace = []
        for _ in range(6000):
            bn.partial_fit(rng.normal(3.0, 2.0, size=(4, 1)))
            trace.append(bn.running_var_[0])
        got[ema] = np.mean(trace[1000:])
    assert abs(got["mixture"] - 4.0) < 0.2
    assert abs(got["batch"] - 3.0) < 0.2


def test_dask_input_same_as_numpy(rng):
    batches = [rng.normal(2.0, 1.5, size=(k, 3)) for k in (1, 5, 9)]
    a = BatchNormalizer(momentum=0.7, ema="mixture")
    b = BatchNormalizer(momentum=0.7, ema="mixture")
    for x in batches:
        a.partial_fit(x)
        b.partial_fit(da.from_array(x, chunks=(2, 3)))
    assert_allclose(b.running_mean_, a.running_mean_, rtol=1e-13)
    assert_allclose(b.running_var_, a.running_var_, rtol=1e-12)


def test_functional_running_update(rng):
    x = rng.normal(1.0, 2.0, size=(3, 4))
    rm, rv = np.full(4, 0.5), np.full(4, 2.0)
    F.batch_norm_forward(
        x, 1.0, 0.0, running_mean=rm, running_var=rv, momentum=0.75, ema="mixture"
    )
    _, bmean, bvar, _ = naive.moments(x)
    mean, var, _ = naive.ema_update(
        np.full(4, 0.5),
        np.full(4, 2.0),
        np.ones(4),
        np.full(4, 3),
        bmean,
        bvar,
        0.75,
        "mixture",
    )
    assert_allclose(rm, mean, rtol=1e-14)
    assert_allclose(rv, var, rtol=1e-13)


@pytest.mark.parametrize(
    "ema, error", [("Mixture", ValueError), ("", ValueError), (1, TypeError)]
)
def test_bad_ema_is_refused_and_changes_nothing(rng, ema, error):
    x = rng.normal(size=(5, 2))
    bn = BatchNormalizer().fit(x)
    bn.set_params(ema=ema)
    before = pickle.dumps(bn.__dict__)
    with pytest.raises((ValueError, TypeError), match="ema"):
        bn.partial_fit(x)
    assert pickle.dumps(bn.__dict__) == before
    rm, rv = np.zeros(2), np.ones(2)
    with pytest.raises(error, match="ema"):
        F.batch_norm_forward(x, 1.0, 0.0, running_mean=rm, running_var=rv, ema=ema)
    assert_array_equal(rm, 0.0)


def test_state_file_keeps_ema(tmp_path, rng):
    bn = BatchNormalizer(momentum=0.5, ema="mixture").partial_fit(
        rng.normal(size=(3, 2))
    )
    bn.save(tmp_path / "s.npz")
    back = BatchNormalizer.load(tmp_path / "s.npz")
    assert back.ema == "mixture"
    x = rng.normal(size=(1, 2))
    bn.partial_fit(x)
    back.partial_fit(x)
    assert_array_equal(back.running_var_, bn.running_var_)


# -- n_samples_seen_, as scikit-learn counts ---------------------------------------

_NAN_X = np.array(
    [[0, 1, 3], [np.nan, 6, 10], [5, 4, np.nan], [8, 0, np.nan]], dtype=np.float64
)


@pytest.mark.parametrize("weights", [None, np.array([1.0, 2.0, 0.5, 3.0])])
@pytest.mark.parametrize("cols", [[0, 1, 2], [1], [1, 2]])
def test_n_samples_seen_follows_standard_scaler(weights, cols):
    X = _NAN_X[:, cols]
    got = BatchNormalizer().fit(X, sample_weight=weights).n_samples_seen_
    want = StandardScaler().fit(X, sample_weight=weights).n_samples_seen_
    assert_array_equal(got, want)
    assert np.shape(got) == np.shape(want)
    if weights is None:
        assert np.asarray(got).dtype.kind == "i"


# StandardScaler warns dividing by the count of a feature not seen yet.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_n_samples_seen_over_partial_fits():
    bn, ss = BatchNormalizer(), StandardScaler()
    for part in (_NAN_X[:2], _NAN_X[2:], _NAN_X[:1]):
        bn.partial_fit(part)
        ss.partial_fit(part)
        assert_array_equal(bn.n_samples_seen_, ss.n_samples_seen_)
    # Back to one number when the counts agree again.
    bn = BatchNormalizer().partial_fit(np.array([[np.nan, 1.0]]))
    assert_array_equal(bn.n_samples_seen_, [0, 1])
    bn.partial_fit(np.array([[2.0, np.nan]]))
    assert bn.n_samples_seen_ == 1 and type(bn.n_samples_seen_) is int


def test_n_samples_seen_nd_counts_shares_of_samples(rng):
    X = rng.normal(size=(3, 2, 4))
    X[0, 1, :2] = np.nan  # half of sample 0's values of channel 1
    bn = BatchNormalizer(axis=1).fit(X)
    assert_array_equal(bn.n_samples_seen_, [3.0, 2.5])
    assert BatchNormalizer(axis=1).fit(X[1:]).n_samples_seen_ == 2


def test_n_samples_seen_array_survives_a_state_file(tmp_path):
    bn = BatchNormalizer().fit(_NAN_X)
    bn.save(tmp_path / "s.npz")
    back = BatchNormalizer.load(tmp_path / "s.npz")
    assert_array_equal(back.n_samples_seen_, [3, 4, 2])
    back.partial_fit(_NAN_X[:1])
    assert_array_equal(back.n_samples_seen_, [4, 5, 3])


@pytest.mark.parametrize(
    "seen", ["5", -1, np.array([1, 2]), np.array([1.0, np.nan, 2.0]), True, None]
)
@pytest.mark.parametrize("rows", [4, 400])  # the one-call path and the general one
def test_assigned_n_samples_seen_is_checked_before_anything_changes(rng, seen, rows):
    bn = BatchNormalizer().fit(rng.normal(size=(5, 3)))
    bn.n_samples_seen_ = seen
    before = pickle.dumps(bn.__dict__)
    with pytest.raises(ValueError, match="n_samples_seen_"):
        bn.partial_fit(rng.normal(size=(rows, 3)))
    assert pickle.dumps(bn.__dict__) == before


def test_assigned_n_samples_seen_of_any_kind_of_count_is_kept_counting(rng):
    bn = BatchNormalizer().fit(rng.normal(size=(5, 3)))
    for seen, want in [(np.int64(7), 11), (2.5, 6.5), (np.array([1, 2, 3]), [5, 6, 7])]:
        bn.n_samples_seen_ = seen
        bn.partial_fit(rng.normal(size=(4, 3)))
        assert_array_equal(bn.n_samples_seen_, want)
