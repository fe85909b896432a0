"""LayerNormalizer, GroupNormalizer and InstanceNormalizer as transformers."""

import naive
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbn import GroupNormalizer, InstanceNormalizer, LayerNormalizer
from skbn import functional as F


@parametrize_with_checks(
    [
        LayerNormalizer(),
        LayerNormalizer(gamma=2.0, beta=-1.0),
        GroupNormalizer(n_groups=1),
        GroupNormalizer(1, gamma=0.5, beta=3.0),
        InstanceNormalizer(),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def reference(kind, X, axis, n_groups=None, gamma=1.0, beta=0.0, eps=1e-5):
    """tests/naive.py's forward, NaN entries left out of the statistics."""
    X = np.asarray(X, dtype=np.float64)
    stat, param = naive.norm_index(X.shape, kind, axis, n_groups)
    n_stat, n_param = stat.max() + 1, param.max() + 1
    mean = np.zeros(n_stat)
    var = np.zeros(n_stat)
    for s in range(n_stat):
        v = X[(stat == s) & ~np.isnan(X)]
        if v.size:
            mean[s], var[s] = v.mean(), v.var()
    g = np.broadcast_to(np.asarray(gamma, dtype=np.float64).ravel(), (n_param,))
    b = np.broadcast_to(np.asarray(beta, dtype=np.float64).ravel(), (n_param,))
    return g[param] * (X - mean[stat]) / np.sqrt(var[stat] + eps) + b[param]


CASES = [
    ("layer", LayerNormalizer(), (20, 7), -1, None),
    ("layer", LayerNormalizer(axis=(1, 2)), (5, 3, 4), (1, 2), None),
    ("layer", LayerNormalizer(axis=1), (5, 3, 4), 1, None),
    ("group", GroupNormalizer(3), (6, 9), 1, 3),
    ("group", GroupNormalizer(2), (4, 6, 5, 5), 1, 2),
    ("group", GroupNormalizer(2, axis=-1), (4, 5, 5, 6), -1, 2),
    ("instance", InstanceNormalizer(), (4, 3, 8), 1, None),
    ("instance", InstanceNormalizer(axis=-1), (4, 8, 3), -1, None),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}")
def test_transform_matches_reference(rng, blocks, case, dtype):
    kind, est, shape, axis, n_groups = case
    X = (rng.normal(size=shape) * 3 + 100).astype(dtype)
    Y = est.fit_transform(X)
    assert Y.dtype == dtype and Y.shape == X.shape
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    assert_allclose(Y, reference(kind, X, axis, n_groups), rtol=rtol, atol=rtol)


def test_elementwise_gamma_and_beta(rng):
    X = rng.normal(size=(10, 3, 4))
    gamma = rng.uniform(0.5, 2, size=(3, 4))
    beta = rng.normal(size=12)  # flat is accepted too
    Y = LayerNormalizer(axis=(1, 2), gamma=gamma, beta=beta).fit_transform(X)
    ref = reference("layer", X, (1, 2), gamma=gamma, beta=beta)
    assert_allclose(Y, ref, rtol=1e-12, atol=1e-12)
    g = rng.uniform(0.5, 2, size=6)
    Y = GroupNormalizer(3, gamma=g, beta=1.0).fit_transform(X.reshape(10, 6, 2))
    ref = reference("group", X.reshape(10, 6, 2), 1, 3, gamma=g, beta=1.0)
    assert_allclose(Y, ref, rtol=1e-12, atol=1e-12)


def test_same_as_functional_forward(rng):
    X = rng.normal(size=(8, 6, 5))
    g, b = rng.normal(size=6), rng.normal(size=6)
    assert_array_equal(
        GroupNormalizer(2, gamma=g, beta=b).fit_transform(X),
        F.group_norm_forward(X, g, b, n_groups=2)[0],
    )
    assert_array_equal(
        InstanceNormalizer().fit_transform(X),
        F.instance_norm_forward(X, None, None)[0],
    )


@pytest.mark.parametrize(
    "est", [LayerNormalizer(), GroupNormalizer(2)], ids=["layer", "group"]
)
def test_nan_is_left_out_and_stays_nan(rng, est):
    X = rng.normal(size=(12, 6))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[3] = np.nan  # a sample with nothing: all NaN, no warning
    Y = est.fit_transform(X)
    assert_array_equal(np.isnan(Y), np.isnan(X))
    kind = "layer" if isinstance(est, LayerNormalizer) else "group"
    n_groups = None if kind == "layer" else 2
    ref = reference(kind, X, -1 if kind == "layer" else 1, n_groups)
    assert_allclose(Y, ref, rtol=1e-12, atol=1e-12)


def test_infinity_is_rejected():
    X = np.ones((3, 4))
    X[1, 2] = np.inf
    with pytest.raises(ValueError, match="infinity in feature 1 \\('sample 1'\\)"):
        LayerNormalizer().fit_transform(X)


def test_constant_sample_gives_beta():
    X = np.array([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0]])
    Y = LayerNormalizer(beta=0.5).fit_transform(X)
    assert_array_equal(Y[0], 0.5)


def test_stateless_transform_before_fit(rng):
    X = rng.normal(size=(5, 4))
    est = LayerNormalizer()
    Y = est.transform(X)
    assert not hasattr(est, "n_features_in_")
    assert_array_equal(Y, LayerNormalizer().fit(X).transform(X))


def test_feature_count_is_checked_after_fit(rng):
    est = GroupNormalizer(2).fit(rng.normal(size=(5, 4)))
    with pytest.raises(ValueError, match="X has 6 features, but GroupNormalizer"):
        est.transform(rng.normal(size=(5, 6)))
    # Spatial size may change, the channels may not.
    img = GroupNormalizer(2).fit(rng.normal(size=(2, 4, 3, 3)))
    assert img.transform(rng.normal(size=(2, 4, 5, 7))).shape == (2, 4, 5, 7)


@pytest.mark.parametrize(
    "est, X, error, match",
    [
        (GroupNormalizer(4), np.ones((3, 6)), ValueError, "n_groups=4 must be"),
        (GroupNormalizer(0), np.ones((3, 6)), ValueError, "'n_groups' parameter"),
        (GroupNormalizer(2, axis=0), np.ones((3, 6)), ValueError, "axis=0 is the"),
        (LayerNormalizer(axis=0), np.ones((3, 6)), ValueError, "includes axis 0"),
        (LayerNormalizer(gamma=np.ones(5)), np.ones((3, 6)), ValueError, "gamma must"),
        (InstanceNormalizer(eps=0), np.ones((3, 6)), ValueError, "'eps' parameter"),
        (InstanceNormalizer(beta="a"), np.ones((3, 6)), ValueError, "'beta' param"),
        (LayerNormalizer(), np.array([["a", "b"]]), TypeError, "strings"),
    ],
)
def test_bad_parameters_raise_in_fit(est, X, error, match):
    with pytest.raises(error, match=match):
        est.fit(X)


def test_in_a_pipeline_with_pandas_output(rng):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(rng.normal(size=(10, 4)), columns=list("abcd"))
    pipe = make_pipeline(LayerNormalizer(), GroupNormalizer(2)).set_output(
        transform="pandas"
    )
    out = pipe.fit_transform(df)
    assert list(out.columns) == list("abcd")
    assert_allclose(out.to_numpy().mean(axis=1), 0.0, atol=1e-12)
