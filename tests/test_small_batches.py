"""The small-batch path (the NumPy backend's one-call path) against the
general path.

Both must give the same bits: the small-batch path composes the same kernels
into one compiled call.  The general path is forced by setting the size limit
of the small-batch path to 0.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from test_errors import snapshot

import skbn._backends.numpy as bn_module
from skbn import BatchNormalizer

SHAPES = [(1, 64), (2, 64), (7, 65), (256, 64), (300, 100), (1, 300), (1000, 128)]


def _stream(est, batches, method):
    outs = []
    for b in batches:
        out = getattr(est, method)(b)
        outs.append(out if method != "partial_fit" else None)
    outs.append(est.transform(batches[-1]))
    return outs


def _small(est, X):
    """Whether a call of a fitted ``est`` on ``X`` takes the small-batch path."""
    return est._backend(X).small_input(X) and est._plain_rows(X, fitted=True)


def _state(est):
    # Attribute by attribute: the two paths create them in different orders,
    # so the pickle of the whole estimator differs while every value agrees.
    return snapshot(est)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["partial_fit", "partial_fit_transform"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"momentum": None},
        {"momentum": 0.0},
        {"momentum": 1.0, "gamma": 2.0, "beta": -1.0},
        {"center": False, "scale": False},
    ],
)
def test_small_path_is_bit_identical_to_the_general_path(
    rng, monkeypatch, dtype, shape, method, params
):
    batches = [
        (rng.normal(3.0, 2.0, size=shape) * (1 + i)).astype(dtype) for i in range(4)
    ]
    batches[2][:, 0] = 5.0  # a constant column within a batch
    fast = BatchNormalizer(**params).fit(batches[0])
    got = _stream(fast, batches, method)
    monkeypatch.setattr(bn_module, "SMALL_ELEMENTS", 0)
    general = BatchNormalizer(**params).fit(batches[0])
    want = _stream(general, batches, method)
    for g, w in zip(got, want, strict=True):
        if w is not None:
            assert g.dtype == w.dtype == dtype
            assert_array_equal(g, w)
    assert _state(fast) == _state(general)


def test_small_path_is_taken_for_a_small_batch(rng, monkeypatch):
    # The check that the tests above compare two different paths.
    X = rng.normal(size=(256, 64))
    est = BatchNormalizer().fit(X)
    assert _small(est, X)
    calls = []
    original = bn_module.cpu.small_train
    monkeypatch.setattr(
        bn_module.cpu,
        "small_train",
        lambda *a: calls.append(1) or original(*a),
    )
    est.partial_fit(X)
    est.partial_fit_transform(X)
    BatchNormalizer().fit_transform(X)
    assert len(calls) == 3
    assert not _small(est, np.asfortranarray(X))
    assert not _small(est, X[:, :10])
    assert not _small(est, rng.normal(size=(10_000, 64)))


def test_nan_and_inf_batches_fall_back_to_the_general_path(rng):
    X = rng.normal(size=(64, 64))
    est = BatchNormalizer().fit(X)
    nan = X.copy()
    nan[3, 5] = np.nan
    y = est.transform(nan)
    assert np.isnan(y[3, 5]) and np.isfinite(np.delete(y.ravel(), 3 * 64 + 5)).all()
    est.partial_fit(nan)  # NaN is ignored in fit
    assert np.isfinite(est.running_mean_).all()
    y = est.partial_fit_transform(nan)
    assert np.isnan(y[3, 5])
    before = _state(est)
    inf = X.copy()
    inf[0, 7] = np.inf
    for method in ("partial_fit", "partial_fit_transform", "transform"):
        with pytest.raises(ValueError, match="infinity in feature 7"):
            getattr(est, method)(inf)
        assert _state(est) == before


def test_small_path_still_validates_parameters(rng):
    X = rng.normal(size=(32, 64))
    est = BatchNormalizer().fit(X)
    est.set_params(momentum=2.0)
    before = _state(est)
    for method in ("partial_fit", "partial_fit_transform", "transform"):
        with pytest.raises(ValueError, match="momentum"):
            getattr(est, method)(X)
        assert _state(est) == before


def test_transform_copy_false_still_writes_in_place(rng):
    X = rng.normal(size=(32, 64))
    est = BatchNormalizer().fit(X)
    want = est.transform(X)
    Y = est.transform(X, copy=False)
    assert Y is X or np.shares_memory(Y, X)
    assert_array_equal(Y, want)


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_big_endian_input_works_on_every_path(rng, dtype):
    # Found while writing the small-batch path: non-native byte order reached
    # the kernels and ended in a Numba TypingError.  Expected: the numbers of
    # the native array, in the same precision.
    from skbn import GroupNormalizer, LayerNormalizer
    from skbn import functional as F

    native = rng.normal(3.0, 2.0, size=(50, 64)).astype(
        np.dtype(dtype).newbyteorder("=")
    )
    X = native.astype(dtype)
    big = rng.normal(size=(3000, 64)).astype(dtype)  # the general path
    for a, b in [
        (BatchNormalizer().fit(X), BatchNormalizer().fit(native)),
        (BatchNormalizer().fit(big), BatchNormalizer().fit(big.astype(native.dtype))),
    ]:
        assert_array_equal(a.running_var_, b.running_var_)
        for method in ("transform", "partial_fit_transform", "inverse_transform"):
            got, want = getattr(a, method)(X), getattr(b, method)(native)
            assert got.dtype == native.dtype
            assert_array_equal(got, want)
        a.partial_fit(X, sample_weight=np.ones(50, ">f8"))
        b.partial_fit(native, sample_weight=np.ones(50))
        assert_array_equal(a.running_mean_, b.running_mean_)
    y, _ = F.batch_norm_forward(X, np.ones(64), np.zeros(64))
    assert_array_equal(y, F.batch_norm_forward(native, np.ones(64), np.zeros(64))[0])
    assert_array_equal(
        LayerNormalizer().fit_transform(X), LayerNormalizer().fit_transform(native)
    )
    assert_array_equal(
        GroupNormalizer(4).fit_transform(X), GroupNormalizer(4).fit_transform(native)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"momentum": None, "gamma": 2.0, "beta": 0.5},
        {"center": False, "scale": False, "gamma": 3.0},
        {"axis": 1, "eps": 1e-2},
    ],
)
@pytest.mark.parametrize("before", ["unfitted", "fitted", "other width", "named"])
def test_small_fit_transform_is_bit_identical_to_the_general_path(
    rng, monkeypatch, dtype, shape, params, before
):
    pd = pytest.importorskip("pandas") if before == "named" else None
    X = (rng.normal(3.0, 2.0, size=shape) * 7).astype(dtype)
    X[:, -1] = 1e3  # a constant column far from zero

    def prepared():
        est = BatchNormalizer(**params)
        if before == "fitted":
            est.partial_fit(rng.normal(size=shape)).partial_fit(X)
        elif before == "other width":
            est.fit(np.ones((3, shape[1] + 1)))
        elif before == "named":
            cols = [f"c{j}" for j in range(shape[1])]
            est.fit(pd.DataFrame(X.astype(np.float64), columns=cols))
        return est

    state = rng.bit_generator.state
    fast = prepared()
    got = fast.fit_transform(X)
    rng.bit_generator.state = state
    monkeypatch.setattr(bn_module, "SMALL_ELEMENTS", 0)
    general = prepared()
    want = general.fit_transform(X)
    assert got.dtype == want.dtype == dtype
    assert_array_equal(got, want)
    assert _state(fast) == _state(general)
    assert_array_equal(got[:, -1], fast.beta_[-1])


def test_small_fit_transform_errors_leave_the_state(rng):
    X = rng.normal(size=(32, 8 * 8))
    est = BatchNormalizer().fit(X)
    est.set_params(gamma=np.ones(3))  # wrong length: fit raises
    before = _state(est)
    with pytest.raises(ValueError, match="gamma"):
        est.fit_transform(X)
    assert _state(est) == before
    est.set_params(gamma=1.0, center=False, beta=[1.0, 2.0])
    before = _state(est)
    with pytest.raises(ValueError, match="beta"):
        est.fit_transform(X)  # checked even when center=False drops it
    assert _state(est) == before
    bad = X.copy()
    bad[1, 2] = np.inf
    est.set_params(beta=0.0)
    before = _state(est)
    with pytest.raises(ValueError, match="infinity in feature 2"):
        est.fit_transform(bad)
    assert _state(est) == before
