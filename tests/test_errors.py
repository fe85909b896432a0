"""Bad input gets a clear error and the estimator is left exactly as it was.

SPEC section 5: ``ValueError``/``TypeError`` naming the problem, never a
Numba typing traceback, never a silent wrong answer; and a call that raises
leaves the estimator as it was before the call (checked byte for byte).
"""

import pickle
import re

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError

from skbn import BatchNormalizer

N_FEATURES = 5

# Arrays sent to an estimator fitted on a DataFrame: sklearn's warning is expected.
pytestmark = pytest.mark.filterwarnings(
    "ignore:X does not have valid feature names:UserWarning"
)


# -- snapshots -------------------------------------------------------------------------


def snapshot(est):
    """Every attribute of ``est`` as bytes, and the whole pickle."""
    state = {}
    for name, value in vars(est).items():
        if isinstance(value, np.ndarray):
            state[name] = (value.dtype.str, value.shape, value.tobytes())
        else:
            state[name] = pickle.dumps(value)
    return state, pickle.dumps(est)


def assert_unchanged(est, before):
    state, blob = snapshot(est)
    old_state, old_blob = before
    changed = sorted(
        k
        for k in set(state) | set(old_state)
        if state.get(k, "<missing>") != old_state.get(k, "<missing>")
    )
    assert not changed, f"attributes changed by a failed call: {changed}"
    assert blob == old_blob


def raises_and_keeps(est, method, args, kwargs, error, match):
    """Call ``est.method`` expecting ``error`` and no change of state."""
    before = snapshot(est)
    with pytest.raises(error, match=match):
        getattr(est, method)(*args, **kwargs)
    assert_unchanged(est, before)


# -- estimators ------------------------------------------------------------------------


def data(rng, shape=(20, N_FEATURES), offset=3.0):
    return offset + rng.normal(size=shape)


@pytest.fixture(params=["array", "dataframe"])
def fitted(request, rng):
    """A BatchNormalizer after two batches, fitted on an array or a DataFrame."""
    bn = BatchNormalizer(momentum=0.7)
    X1, X2 = data(rng), data(rng, offset=-1.0)
    if request.param == "dataframe":
        pd = pytest.importorskip("pandas")
        columns = list("abcde")
        X1, X2 = pd.DataFrame(X1, columns=columns), pd.DataFrame(X2, columns=columns)
    bn.partial_fit(X1).partial_fit_transform(X2)
    return bn


def as_input(est, X):
    """``X`` as a DataFrame when ``est`` was fitted on one."""
    if hasattr(est, "feature_names_in_") and X.ndim == 2 and X.shape[1] == N_FEATURES:
        import pandas as pd

        return pd.DataFrame(X, columns=est.feature_names_in_)
    return X


# -- the matrix: bad X for every method of a fitted estimator --------------------------


def _with_value(value, col=3):
    def make(rng):
        X = data(rng, (6, N_FEATURES))
        X[2, col] = value
        return X

    return make


def _object(values):
    def make(rng):
        X = np.empty((3, N_FEATURES), dtype=object)
        X[:] = 1.0
        X[1, 2] = values
        return X

    return make


# name -> (builder(rng), error, message regex); every one is bad for every method.
BAD_X = {
    "zero_rows": (
        lambda rng: np.empty((0, N_FEATURES)),
        ValueError,
        r"0 sample\(s\)",
    ),
    "zero_features": (lambda rng: np.empty((4, 0)), ValueError, r"0 feature\(s\)"),
    "complex": (
        lambda rng: data(rng, (4, N_FEATURES)) + 1j,
        ValueError,
        r"[Cc]omplex data not supported",
    ),
    "object_strings": (
        _object("spam"),
        TypeError,
        r"X must hold real numbers; got str values in an array of dtype object",
    ),
    "object_dicts": (_object({"a": 1}), TypeError, r"float\(\) argument.*dict"),
    "strings": (
        lambda rng: np.full((4, N_FEATURES), "spam"),
        TypeError,
        r"X must hold real numbers; got dtype <U4",
    ),
    "plus_inf": (
        _with_value(np.inf),
        ValueError,
        r"Input X contains infinity in feature 3\b",
    ),
    "minus_inf": (
        _with_value(-np.inf, col=0),
        ValueError,
        r"Input X contains infinity in feature 0\b",
    ),
    "one_d": (
        lambda rng: data(rng, (N_FEATURES,)),
        ValueError,
        r"Expected 2D array, got 1D array",
    ),
}
# Bad for an estimator fitted on 5 features of 2-D data (fit would refit).
MISMATCHED_X = {
    "3_features": (
        lambda rng: data(rng, (7, 3)),
        r"X has 3 features, but BatchNormalizer is expecting 5 features as input",
    ),
    "3_features_list": (
        lambda rng: data(rng, (7, 3)).tolist(),
        r"X has 3 features, but BatchNormalizer is expecting 5 features as input",
    ),
    "7_features_int": (
        lambda rng: np.ones((2, 7), dtype=np.int64),
        r"X has 7 features, but BatchNormalizer is expecting 5 features as input",
    ),
    "3_features_float32_F": (
        lambda rng: np.asfortranarray(data(rng, (7, 3)), dtype=np.float32),
        r"X has 3 features, but BatchNormalizer is expecting 5 features as input",
    ),
    "3_dimensions": (
        lambda rng: data(rng, (4, N_FEATURES, 2)),
        r"X has 3 dimensions, but BatchNormalizer was fitted on 2-dimensional data",
    ),
}
METHODS = ["partial_fit", "transform", "inverse_transform", "partial_fit_transform"]


@pytest.mark.parametrize("method", METHODS + ["fit"])
@pytest.mark.parametrize("bad", list(BAD_X))
def test_bad_X(fitted, rng, method, bad):
    build, error, match = BAD_X[bad]
    X = build(rng)
    if bad in ("plus_inf", "minus_inf"):
        X = as_input(fitted, X)
        if hasattr(fitted, "feature_names_in_"):
            # With a DataFrame the message also names the column.
            name = "d" if bad == "plus_inf" else "a"
            match = match + rf" \({name!r}\)"
    raises_and_keeps(fitted, method, (X,), {}, error, match)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", list(MISMATCHED_X))
def test_wrong_shape(fitted, rng, method, bad):
    build, match = MISMATCHED_X[bad]
    if hasattr(fitted, "feature_names_in_"):
        # Fitted with names, sklearn warns about an array without them first.
        with pytest.warns(UserWarning, match="does not have valid feature names"):
            raises_and_keeps(fitted, method, (build(rng),), {}, ValueError, match)
    else:
        raises_and_keeps(fitted, method, (build(rng),), {}, ValueError, match)


@pytest.mark.parametrize("method", METHODS)
def test_wrong_feature_names(rng, method):
    pd = pytest.importorskip("pandas")
    X = data(rng)
    bn = BatchNormalizer().fit(pd.DataFrame(X, columns=list("abcde")))
    other = pd.DataFrame(X, columns=list("abcdz"))
    raises_and_keeps(bn, method, (other,), {}, ValueError, "feature names should match")


@pytest.mark.parametrize("method", METHODS)
def test_wrong_feature_axis(rng, method):
    # Fitted as BatchNorm2d (N, C, H, W) with C=3, then given channels-last data.
    bn = BatchNormalizer(axis=1).fit(data(rng, (4, 3, 2, 2)))
    X = data(rng, (4, 2, 2, 3))
    match = r"X has 2 features, but BatchNormalizer is expecting 3 features as input"
    raises_and_keeps(bn, method, (X,), {}, ValueError, match)


@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_not_fitted(rng, method):
    bn = BatchNormalizer()
    raises_and_keeps(bn, method, (data(rng),), {}, NotFittedError, "not fitted")


def test_variance_overflow_is_an_error(fitted, rng):
    X = data(rng, (6, N_FEATURES))
    X[:, 1] = [1e200, -1e200, 3e199, 0.0, 1e200, -5e199]
    X = as_input(fitted, X)
    for method in ("partial_fit", "partial_fit_transform", "fit"):
        raises_and_keeps(
            fitted, method, (X,), {}, ValueError, r"variance of feature 1 overflows"
        )


def test_inverse_transform_with_zero_gamma(rng):
    bn = BatchNormalizer(gamma=[1.0, 2.0, 0.0, 1.0, 1.0]).fit(data(rng))
    raises_and_keeps(
        bn,
        "inverse_transform",
        (data(rng),),
        {},
        ValueError,
        r"undefined where gamma_ is 0 \(feature 2\)",
    )


def test_failed_first_fit_leaves_estimator_unfitted(rng):
    pd = pytest.importorskip("pandas")
    X = data(rng)
    X[4, 2] = np.inf
    df = pd.DataFrame(X, columns=list("abcde"))
    for method in ("fit", "partial_fit", "partial_fit_transform"):
        bn = BatchNormalizer()
        raises_and_keeps(bn, method, (df,), {}, ValueError, r"feature 2 \('c'\)")
        assert not hasattr(bn, "feature_names_in_")
        assert not hasattr(bn, "n_features_in_")
        with pytest.raises(NotFittedError):
            bn.transform(data(rng))


# -- numeric strings (SPEC 5 lists string dtypes as bad input) -------------------------


@pytest.mark.parametrize("kind", ["unicode", "bytes"])
def test_string_dtype_is_rejected_even_when_numeric(rng, kind):
    # scikit-learn's own dtype="numeric" check refuses arrays of strings
    # ("dtype='numeric' is not compatible with arrays of bytes/strings"); the
    # spec lists string dtypes as bad input.  Silently parsing "1.5" as 1.5
    # hides a data-loading bug.
    X = data(rng).astype("U32" if kind == "unicode" else "S32")
    bn = BatchNormalizer()
    raises_and_keeps(bn, "fit", (X,), {}, (ValueError, TypeError), r"string|bytes")
    fitted = BatchNormalizer().fit(data(rng))
    for method in METHODS:
        raises_and_keeps(
            fitted, method, (X,), {}, (ValueError, TypeError), r"string|bytes"
        )


# -- sample_weight ---------------------------------------------------------------------

BAD_WEIGHTS = {
    "negative": (
        lambda n: np.r_[-1.0, np.ones(n - 1)],
        r"Negative values.*sample_weight",
    ),
    "all_zero": (np.zeros, r"at least one non-zero"),
    "wrong_length": (lambda n: np.ones(n - 1), r"sample_weight.shape == \(19,\)"),
    "nan": (lambda n: np.r_[np.nan, np.ones(n - 1)], r"sample_weight contains NaN"),
    "inf": (lambda n: np.r_[np.inf, np.ones(n - 1)], r"sample_weight contains inf"),
    "two_d": (lambda n: np.ones((n, 2)), r"Sample weights must be 1D"),
}


@pytest.mark.parametrize("method", ["fit", "partial_fit", "partial_fit_transform"])
@pytest.mark.parametrize("bad", list(BAD_WEIGHTS))
def test_bad_sample_weight(fitted, rng, method, bad):
    build, match = BAD_WEIGHTS[bad]
    X = as_input(fitted, data(rng))
    raises_and_keeps(
        fitted, method, (X,), {"sample_weight": build(len(X))}, ValueError, match
    )


@pytest.mark.parametrize(
    "shape, axis", [((20, 5), 0), ((20, 3, 4), (0, 2)), ((20, 3, 4), -3)]
)
@pytest.mark.parametrize("method", ["fit", "partial_fit", "partial_fit_transform"])
def test_sample_weight_with_feature_axis_0(rng, shape, axis, method):
    bn = BatchNormalizer(axis=axis)
    raises_and_keeps(
        bn,
        method,
        (data(rng, shape),),
        {"sample_weight": np.ones(shape[0])},
        ValueError,
        r"sample_weight weighs samples along axis 0, but axis 0 is a feature axis",
    )


# -- parameters ------------------------------------------------------------------------

BAD_PARAMS = [
    ({"momentum": 1.5}, ValueError, r"'momentum' parameter .* range \[0.0, 1.0\]"),
    ({"momentum": -0.1}, ValueError, r"'momentum' parameter .* range \[0.0, 1.0\]"),
    ({"momentum": "fast"}, ValueError, r"'momentum' parameter"),
    ({"eps": 0.0}, ValueError, r"'eps' parameter .* range \(0.0, inf\)"),
    ({"eps": -1e-5}, ValueError, r"'eps' parameter .* range \(0.0, inf\)"),
    ({"device": "cuda"}, ValueError, r"device='cuda' is not available"),
    ({"device": "tpu"}, ValueError, r"'device' parameter"),
    ({"axis": 2}, ValueError, r"axis=2 is out of bounds for X with 2 dimensions"),
    ({"axis": -3}, ValueError, r"axis=-3 is out of bounds for X with 2 dimensions"),
    ({"axis": (1, 1)}, ValueError, r"names the same dimension twice"),
    ({"axis": (-1, 1)}, ValueError, r"names the same dimension twice"),
    ({"axis": (0, 1)}, ValueError, r"leaves no dimension to reduce over"),
    ({"axis": ()}, ValueError, r"at least one feature axis"),
    ({"axis": 1.5}, ValueError, r"'axis' parameter"),
    ({"axis": (1, 1.5)}, TypeError, r"axis must be an int or a tuple of ints"),
    ({"axis": True}, TypeError, r"axis must be an int or a tuple of ints"),
    ({"gamma": [1.0, 2.0]}, ValueError, r"gamma must be a scalar or have one value"),
    ({"beta": np.ones(6)}, ValueError, r"beta must be .* per feature \(5\); got 6"),
    ({"gamma": np.nan}, ValueError, r"gamma must be finite"),
    ({"beta": [0, 0, np.inf, 0, 0]}, ValueError, r"beta must be finite"),
]


@pytest.mark.parametrize("params, error, match", BAD_PARAMS, ids=str)
@pytest.mark.parametrize("method", ["fit", "partial_fit", "partial_fit_transform"])
def test_bad_parameter_on_fresh_estimator(rng, params, error, match, method):
    bn = BatchNormalizer(**params)
    raises_and_keeps(bn, method, (data(rng),), {}, error, match)


RUNTIME_PARAMS = [p for p in BAD_PARAMS if not {"axis", "gamma", "beta"} & set(p[0])]


@pytest.mark.parametrize("params, error, match", RUNTIME_PARAMS, ids=str)
@pytest.mark.parametrize("method", METHODS + ["fit"])
def test_bad_parameter_set_after_fit(fitted, rng, params, error, match, method):
    fitted.set_params(**params)
    X = as_input(fitted, data(rng))
    raises_and_keeps(fitted, method, (X,), {}, error, match)


@pytest.mark.parametrize("params", [{"gamma": [1.0, 2.0]}, {"axis": 3}], ids=str)
def test_failed_refit_keeps_previous_fit(fitted, rng, params):
    # fit forgets everything first; when it then fails, the old fit is back.
    fitted.set_params(**params)
    X = as_input(fitted, data(rng))
    raises_and_keeps(fitted, "fit", (X,), {}, ValueError, "gamma|axis")
    fitted.set_params(gamma=1.0, axis=-1)
    assert fitted.transform(X).shape == (20, N_FEATURES)


@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_failed_transform_after_set_params_leaves_state_unchanged(rng, method):
    # SPEC 2: "A call that raises leaves the estimator exactly as it was before
    # the call" -- also when a (valid) parameter changed since the last call.
    bn = BatchNormalizer().fit(data(rng))
    bn.set_params(eps=1e-3)
    raises_and_keeps(
        bn, method, (data(rng, (4, 3)),), {}, ValueError, "X has 3 features"
    )


# -- awkward but valid input works -----------------------------------------------------


def _variants(X):
    ro = X.copy()
    ro.setflags(write=False)
    wide = np.repeat(X, 3, axis=1)
    tall = np.repeat(X, 2, axis=0)
    return {
        "C": X,
        "F": np.asfortranarray(X),
        "rows[::2]": tall[::2],
        "cols[::3]": wide[:, ::3],
        "reversed": X[::-1][::-1],
        "read_only": ro,
    }


@pytest.mark.parametrize(
    "variant", ["F", "rows[::2]", "cols[::3]", "reversed", "read_only"]
)
def test_non_contiguous_and_read_only_input_work(rng, variant):
    X = data(rng, (30, 4))
    X[3, 1] = np.nan
    X0 = X.copy()

    def V():
        # A fresh view each time: copy=False may legitimately write into it.
        return _variants(X.copy())[variant]

    assert_array_equal(V(), X)
    ref = BatchNormalizer(momentum=0.5)
    bn = BatchNormalizer(momentum=0.5)
    w = rng.uniform(0.5, 2.0, 30)
    assert_allclose(
        bn.partial_fit_transform(V(), sample_weight=w),
        ref.partial_fit_transform(X, sample_weight=w),
        rtol=1e-12,
        atol=1e-12,
    )
    bn.partial_fit(V())
    ref.partial_fit(X)
    assert_allclose(bn.running_mean_, ref.running_mean_, rtol=1e-13)
    assert_allclose(bn.running_var_, ref.running_var_, rtol=1e-12)
    expected = ref.transform(X)
    for copy in (True, False):
        v = V()
        out = bn.transform(v, copy=copy)
        assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        if copy or not v.flags.writeable:
            assert_array_equal(v, X)  # the input is untouched
    Y = _variants(expected)[variant]
    assert_allclose(bn.inverse_transform(Y), X, rtol=1e-12)
    assert_allclose(
        BatchNormalizer().fit(V()).running_var_,
        BatchNormalizer().fit(X).running_var_,
        rtol=1e-12,
    )
    assert_array_equal(X, X0)


def test_read_only_nd_input_works(rng):
    X = data(rng, (4, 3, 5, 2))
    X.setflags(write=False)
    bn = BatchNormalizer(axis=1, copy=False)
    Y = bn.partial_fit_transform(X)
    assert Y.flags.writeable and not np.shares_memory(Y, X)
    assert_allclose(bn.inverse_transform(bn.transform(X)), X, rtol=1e-12)
    ref = BatchNormalizer(axis=1).fit(X.copy())
    assert_allclose(bn.running_var_, ref.running_var_, rtol=1e-13)


def test_error_messages_are_not_numba_tracebacks(fitted, rng):
    # Every message in the matrix above is ours or scikit-learn's; spot-check
    # that none of them leaks a Numba typing error.
    for build, error, _ in BAD_X.values():
        X = build(rng)
        with pytest.raises(error) as info:
            fitted.partial_fit(X)
        text = str(info.value)
        assert not re.search(r"numba|TypingError|No implementation", text, re.I)


# -- axis changed after fit ----------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["partial_fit", "transform", "partial_fit_transform"]
)
def test_axis_changed_after_fit_is_refused(rng, method):
    X = rng.standard_normal((6, 3, 4))
    bn = BatchNormalizer(axis=1).fit(X)
    bn.set_params(axis=-1)
    raises_and_keeps(
        bn, method, (X,), {}, ValueError, r"axis was changed from 1 to -1 after fitting"
    )
    # fit adopts the new axis.
    assert bn.fit(X).n_features_in_ == 4
