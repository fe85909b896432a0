"""``with_mean`` and ``with_std``: StandardScaler's parameters, one formula
(:func:`skbn._core.norm.normalize_coefficients`) on every path."""

import naive
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.preprocessing import StandardScaler

from skbn import BatchNormalizer

FLAGS = [(True, True), (True, False), (False, True), (False, False)]
# eps tiny: StandardScaler divides by the standard deviation alone.
EPS = 1e-300


def _expected(X, mean, var, with_mean, with_std, gamma=1.0, beta=0.0, eps=EPS):
    """The formula in float64, from the spec: (x - mean) / sqrt(var + eps)
    with either step left out, then gamma and beta."""
    y = np.asarray(X, dtype=np.float64)
    if with_mean:
        y = y - mean
    if with_std:
        y = y / np.sqrt(var + eps)
    return gamma * y + beta


@pytest.fixture
def X(rng):
    return rng.normal(3.0, 2.0, size=(300, 5))


@pytest.mark.parametrize("with_mean, with_std", FLAGS)
def test_matches_standard_scaler(X, with_mean, with_std):
    ss = StandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    bn = BatchNormalizer(with_mean=with_mean, with_std=with_std, momentum=None, eps=EPS)
    y = bn.fit_transform(X)
    assert_allclose(y, ss.transform(X), rtol=1e-12, atol=1e-13)
    assert_allclose(bn.transform(X), ss.transform(X), rtol=1e-12, atol=1e-13)
    assert_allclose(bn.inverse_transform(y), X, rtol=1e-12)
    # The statistics are kept whatever the flags (StandardScaler keeps None).
    assert_allclose(bn.running_mean_, X.mean(axis=0), rtol=1e-13)
    assert_allclose(bn.running_var_, X.var(axis=0), rtol=1e-12)


@pytest.mark.parametrize("with_mean, with_std", FLAGS)
def test_partial_fit_over_batches_matches_standard_scaler(X, with_mean, with_std):
    ss = StandardScaler(with_mean=with_mean, with_std=with_std)
    bn = BatchNormalizer(with_mean=with_mean, with_std=with_std, momentum=None, eps=EPS)
    for part in np.array_split(X, 4):
        ss.partial_fit(part)
        bn.partial_fit(part)
    assert_allclose(bn.transform(X), ss.transform(X), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("with_mean, with_std", FLAGS)
@pytest.mark.parametrize("rows", [7, 300], ids=["small", "large"])
def test_training_mode_normalizes_by_the_batch(rng, with_mean, with_std, rows):
    X = rng.normal(-4.0, 3.0, size=(rows, 4))
    gamma, beta, eps = np.array([1.0, 2.0, -0.5, 3.0]), 0.25, 1e-3
    bn = BatchNormalizer(
        with_mean=with_mean, with_std=with_std, gamma=gamma, beta=beta, eps=eps
    )
    bn.partial_fit(rng.normal(size=(rows, 4)))
    y = bn.partial_fit_transform(X)
    _, mean, var, _ = naive.moments(X)
    want = _expected(X, mean, var, with_mean, with_std, gamma, beta, eps)
    assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    # Inference mode by the running statistics, the small-batch path too.
    rm, rv = bn.running_mean_, bn.running_var_
    want = _expected(X, rm, rv, with_mean, with_std, gamma, beta, eps)
    assert_allclose(bn.transform(X), want, rtol=1e-12, atol=1e-12)
    assert_allclose(bn.inverse_transform(bn.transform(X)), X, rtol=1e-11)


@pytest.mark.parametrize("with_mean, with_std", FLAGS)
def test_float32_and_fit_transform(rng, with_mean, with_std):
    X = rng.normal(10.0, 2.0, size=(50, 3)).astype(np.float32)
    bn = BatchNormalizer(with_mean=with_mean, with_std=with_std)
    y = bn.fit_transform(X)
    assert y.dtype == np.float32
    _, mean, var, _ = naive.moments(X)
    want = _expected(X, mean, var, with_mean, with_std, eps=1e-5)
    assert_allclose(y, want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("with_mean, with_std", FLAGS)
def test_dask_matches_numpy(rng, with_mean, with_std):
    da = pytest.importorskip("dask.array")
    X = rng.normal(1.0, 5.0, size=(40, 3))
    dx = da.from_array(X, chunks=(13, 3))
    kw = dict(with_mean=with_mean, with_std=with_std, momentum=None)
    on_numpy = BatchNormalizer(**kw)
    on_dask = BatchNormalizer(**kw)
    want = on_numpy.partial_fit_transform(X)
    assert_allclose(on_dask.partial_fit_transform(dx).compute(), want, rtol=1e-12)
    assert_allclose(on_dask.transform(dx).compute(), on_numpy.transform(X))
    assert_allclose(on_dask.fit_transform(dx).compute(), on_numpy.fit_transform(X))


def test_constant_feature_without_std_is_beta_plus_nothing(rng):
    X = np.full((20, 2), 7.0)
    y = BatchNormalizer(with_std=False, beta=1.5).fit_transform(X)
    assert np.array_equal(y, np.full((20, 2), 1.5))
    y = BatchNormalizer(with_mean=False, with_std=False).fit_transform(X)
    assert np.array_equal(y, X)


@pytest.mark.parametrize("value", [1, "yes", None])
@pytest.mark.parametrize("name", ["with_mean", "with_std"])
def test_must_be_bool(name, value):
    with pytest.raises(ValueError, match=name):
        BatchNormalizer(**{name: value}).fit(np.ones((3, 2)))


@pytest.mark.parametrize("option", [{"renorm": (2.0, 1.0)}, {"virtual_batch_size": 2}])
def test_ghost_batches_need_the_defaults(option):
    bn = BatchNormalizer(with_std=False, **option)
    with pytest.raises(ValueError, match="with_std"):
        bn.partial_fit_transform(np.arange(8.0).reshape(4, 2))
    assert not hasattr(bn, "running_mean_")


def test_changing_the_flags_after_fit_takes_effect(X):
    bn = BatchNormalizer(momentum=None, eps=EPS).fit(X)
    y = bn.transform(X)
    bn.set_params(with_mean=False)
    assert_allclose(bn.transform(X), y + bn.running_mean_ / np.sqrt(bn.running_var_))


@pytest.mark.parametrize("with_mean, with_std", [(False, True), (True, False)])
def test_export_to_keras_refuses_what_keras_cannot_do(X, with_mean, with_std):
    bn = BatchNormalizer(with_mean=with_mean, with_std=with_std).fit(X)
    with pytest.raises(ValueError, match="with_mean=.*with_std="):
        bn.to_keras_weights()
    assert len(BatchNormalizer().fit(X).to_keras_weights()) == 4


def test_save_and_load_keep_the_flags(X, tmp_path):
    bn = BatchNormalizer(with_mean=False, with_std=False, beta=2.0).fit(X)
    path = tmp_path / "bn.npz"
    bn.save(path)
    back = BatchNormalizer.load(path)
    assert (back.with_mean, back.with_std) == (False, False)
    assert_allclose(back.transform(X), bn.transform(X), rtol=0)
