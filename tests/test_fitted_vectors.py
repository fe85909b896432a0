"""Fitted vectors that a user assigns are checked before any kernel reads them.

The docs invite a training loop to update ``gamma_`` and ``beta_``; any of
``running_mean_``, ``running_var_``, ``gamma_``, ``beta_`` may be assigned
anything.  Every method that reaches a kernel must either use a value that
converts to a float64 vector of shape ``(n_features_in_,)`` (a scalar is
broadcast; a list, another float dtype, a CPU tensor is converted) and give
what the NumPy reference gives with that vector, or raise ``ValueError`` /
``TypeError`` naming the attribute and leave the estimator as it was.
Results are compared with ``tests/naive.py``, so an out-of-bounds read
(garbage in the output) fails the test.
"""

import pickle

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from skbn import BatchNormalizer
from skbn import functional as F

VECTORS = ("running_mean_", "running_var_", "gamma_", "beta_")
METHODS = ("transform", "inverse_transform", "partial_fit", "partial_fit_transform")


def _data(layout, n_features, dtype, rng):
    """Data of one of the layouts that take different kernel paths."""
    if layout == "small":  # the small-batch path: C-ordered, few rows
        X = rng.normal(3.0, 2.0, size=(16, n_features))
    elif layout == "large":  # the general (parallel) path
        X = rng.normal(3.0, 2.0, size=(40_000 // n_features + 1, n_features))
    elif layout == "fortran":  # segments kernels through the transpose
        X = np.asfortranarray(rng.normal(3.0, 2.0, size=(64, n_features)))
    elif layout == "nan":  # the masked kernels
        X = rng.normal(3.0, 2.0, size=(32, n_features))
        X[::5, 0] = np.nan
    else:
        raise AssertionError(layout)
    return X.astype(dtype)


# Values that must be refused, with the words the message must contain.
def _bad_values(name, n):
    yield np.ones(n - 1), "shape"
    yield np.ones(n + 1), "shape"
    yield np.ones(n + 1000), "shape"
    yield np.ones((1, n)), "shape"
    yield np.ones((n, 1)), "shape"
    yield np.array([]), "shape"
    yield [1.0] * (n + 1), "shape"
    yield "abc", "float"
    yield ["a"] * n, "float"
    yield [1.0, None] + [1.0] * (n - 2), "float"
    yield np.full(n, 1 + 1j), "float"
    yield np.array(["2020-01-01"] * n, dtype="datetime64[D]"), "float"
    yield {"a": 1}, "float"
    yield None, "float"
    yield np.full(n, np.nan), "finite"
    yield np.r_[np.ones(n - 1), np.inf], "finite"
    yield np.inf, "finite"
    if name == "running_var_":
        yield -np.ones(n), "non-negative"
        yield np.r_[np.ones(n - 1), -1e-300], "non-negative"
        yield -1.0, "non-negative"


# Values that are converted: what each becomes.
def _good_values(n, rng):
    v = rng.uniform(0.5, 2.0, size=n)
    yield 2.0, np.full(n, 2.0)
    yield 3, np.full(n, 3.0)
    yield np.float32(1.5), np.full(n, 1.5)
    yield np.array(0.75), np.full(n, 0.75)
    yield list(v), v
    yield v.astype(np.float32), v.astype(np.float32).astype(np.float64)
    yield v.astype(">f8"), v
    yield np.r_[v, v][::2].copy(), np.r_[v, v][::2]
    yield np.r_[v, v][::2], np.r_[v, v][::2]  # a strided view
    yield np.arange(1, n + 1), np.arange(1.0, n + 1)


def _snapshot(est):
    return pickle.dumps(est.__dict__)


def _expected(method, bn, X, name, vec):
    """What ``method`` must return with ``name`` set to the float64 ``vec``."""
    ref = BatchNormalizer(momentum=bn.momentum).fit(X[:1] * 0 + 1)  # shape only
    ref.__dict__.update(
        {k: np.array(v, dtype=np.float64) for k, v in vars(bn).items() if k in VECTORS}
    )
    setattr(ref, name, vec)
    m, v, g, b = (getattr(ref, k) for k in VECTORS)
    if method == "transform":
        return naive.normalize(X, m, v, g, b, eps=bn.eps)
    if method == "inverse_transform":
        return naive.denormalize(X, m, v, g, b, eps=bn.eps)
    return None


@pytest.mark.parametrize("layout", ["small", "large", "fortran", "nan"])
@pytest.mark.parametrize("name", VECTORS)
@pytest.mark.parametrize("method", METHODS)
def test_bad_fitted_vector_is_refused_and_nothing_changes(layout, name, method):
    rng = np.random.default_rng(0)
    n = 3
    X = _data(layout, n, np.float64, rng)
    for value, words in _bad_values(name, n):
        bn = BatchNormalizer(momentum=0.9).fit(X)
        bn.__dict__[name] = value
        before = _snapshot(bn)
        with pytest.raises((ValueError, TypeError)) as info:
            getattr(bn, method)(X)
        msg = str(info.value)
        assert name in msg and words in msg, (value, msg)
        assert "Numba" not in msg and "TypingError" not in type(info.value).__name__
        assert _snapshot(bn) == before, (name, value)


@pytest.mark.parametrize("layout", ["small", "large", "fortran", "nan"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", VECTORS)
def test_convertible_fitted_vector_is_used_as_converted(layout, dtype, name):
    rng = np.random.default_rng(1)
    n = 4
    X = _data(layout, n, dtype, rng)
    for value, vec in _good_values(n, rng):
        for method in ("transform", "inverse_transform"):
            bn = BatchNormalizer().fit(X)
            expected = _expected(method, bn, X, name, vec)
            bn.__dict__[name] = value
            out = getattr(bn, method)(X)
            assert out.dtype == dtype
            tol = 1e-5 if dtype == np.float32 else 1e-10
            assert_allclose(out, expected, rtol=tol, atol=tol, equal_nan=True)
            got = getattr(bn, name)
            assert type(got) is np.ndarray and got.dtype == np.float64
            assert got.shape == (n,) and got.flags.c_contiguous
        # A streaming update folds into the converted vector.
        bn = BatchNormalizer(momentum=0.5).fit(X)
        bn.__dict__[name] = value
        bn.partial_fit(X)
        assert bn.running_mean_.shape == (n,) and bn.running_var_.shape == (n,)
        if name in ("gamma_", "beta_"):
            assert_allclose(getattr(bn, name), vec)


def test_cpu_tensor_is_converted():
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(2).normal(size=(20, 3))
    bn = BatchNormalizer().fit(X)
    expected = naive.normalize(X, bn.running_mean_, bn.running_var_, [1.0, 2.0, 3.0])
    bn.gamma_ = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32)
    assert_allclose(bn.transform(X), expected, rtol=1e-10)
    # A tensor that requires grad cannot be read without detaching it.
    bn.beta_ = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="beta_"):
        bn.transform(X)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 70),
    delta=st.integers(-70, 70).filter(lambda k: k != 0),
    name=st.sampled_from(VECTORS),
    method=st.sampled_from(METHODS),
    rows=st.sampled_from([1, 7, 300, 5000]),
    dtype=st.sampled_from([np.float32, np.float64]),
    order=st.sampled_from("CF"),
)
def test_no_length_reaches_a_kernel(n, delta, name, method, rows, dtype, order):
    """Any wrong length, on any width, path and layout, is refused."""
    if n + delta < 0:
        delta = -n
    X = np.asarray(
        np.random.default_rng(n).normal(size=(rows, n)), dtype=dtype, order=order
    )
    bn = BatchNormalizer().fit(X)
    bn.__dict__[name] = np.ones(n + delta)
    before = _snapshot(bn)
    with pytest.raises(ValueError, match=f"{name} must have shape \\({n},\\)"):
        getattr(bn, method)(X)
    assert _snapshot(bn) == before


def test_missing_vector_and_bad_width():
    X = np.ones((4, 3)) + np.arange(4)[:, None]
    bn = BatchNormalizer().fit(X)
    del bn.gamma_
    with pytest.raises(ValueError, match="gamma_"):
        bn.transform(X)
    bn = BatchNormalizer().fit(X)
    bn.n_features_in_ = 2.5
    with pytest.raises(ValueError, match="n_features_in_"):
        bn.transform(X)


def test_partial_fit_does_not_shrink_running_mean():
    X = np.arange(12.0).reshape(4, 3)
    bn = BatchNormalizer().fit(X)
    bn.running_mean_ = np.zeros(2)
    with pytest.raises(ValueError, match="running_mean_"):
        bn.partial_fit(X)
    assert bn.running_mean_.shape == (2,)  # as assigned: nothing changed


# -- class 8: parameters ---------------------------------------------------------


@pytest.mark.parametrize(
    "value", [["a", "b", "c"], "abc", [1.0, None, 2.0], [1 + 2j] * 3, [[1.0], "x"]]
)
@pytest.mark.parametrize("param", ["gamma", "beta"])
def test_non_numeric_gamma_beta_name_the_parameter(param, value):
    X = np.arange(12.0).reshape(4, 3)
    with pytest.raises((TypeError, ValueError)) as info:
        BatchNormalizer(**{param: value}).fit(X)
    assert param in str(info.value)
    assert "could not convert" not in str(info.value)
    args = {"gamma": 1.0, "beta": 0.0, param: value}
    with pytest.raises(TypeError, match=param):
        F.batch_norm_forward(X, **args)


@pytest.mark.parametrize(
    "param, good, bad",
    [
        ("axis", 1, 1.0),
        ("axis", -1, np.float64(-1.0)),
        ("axis", (1,), (1.0,)),
        ("center", True, 1),
        ("scale", False, 0),
        ("max_batch_stats", 3, 3.0),
        ("virtual_batch_size", 2, 2.0),
        ("renorm", (2.0, 1.0), [2.0, 1.0]),
        ("copy", True, 1),
        ("track_batch_stats", False, 0),
    ],
)
def test_parameter_cache_sees_the_type(param, good, bad):
    """A value equal to the validated one but of another type is validated."""
    X = np.random.default_rng(3).normal(size=(8, 3))
    bn = BatchNormalizer(**{param: good}).fit(X)
    bn.set_params(**{param: bad})
    before = _snapshot(bn)
    with pytest.raises((ValueError, TypeError), match=param):
        bn.partial_fit(X)
    assert _snapshot(bn) == before


@pytest.mark.parametrize("axis", [0, (0, 1)])
def test_virtual_batch_size_along_a_feature_axis(axis):
    X = np.random.default_rng(4).normal(size=(4, 3, 2))
    bn = BatchNormalizer(axis=axis, virtual_batch_size=2)
    with pytest.raises(ValueError, match="virtual_batch_size.*axis 0"):
        bn.partial_fit_transform(X)
    assert not hasattr(bn, "running_mean_")
    with pytest.raises(ValueError, match="virtual_batch_size.*axis 0"):
        F.batch_norm_forward(X, 1.0, 0.0, axis=axis, virtual_batch_size=2)


def test_functional_running_var_must_be_non_negative():
    X = np.random.default_rng(5).normal(size=(8, 3))
    rm, rv = np.zeros(3), np.array([1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="running_var"):
        F.batch_norm_forward(
            X, 1.0, 0.0, running_mean=rm, running_var=rv, training=False
        )
    assert (rm == 0).all() and rv[1] == -1.0


@pytest.mark.parametrize("method", METHODS[::2] + METHODS[3:])
@pytest.mark.parametrize("name", VECTORS)
def test_dask_path_checks_the_same(name, method):
    da = pytest.importorskip("dask.array")
    X = np.random.default_rng(6).normal(size=(50, 3))
    bn = BatchNormalizer().fit(X)
    bn.__dict__[name] = np.ones(2)
    before = _snapshot(bn)
    with pytest.raises(ValueError, match=f"{name} must have shape"):
        getattr(bn, method)(da.from_array(X, chunks=10))
    assert _snapshot(bn) == before
