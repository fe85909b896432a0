"""Issue 13, class 6: a call that raises leaves everything it was given as it was.

Every public method of every estimator, and the functional API's in-place
buffers, are checked everything-before-writing-anything.  Each case pickles
the estimator's ``__dict__`` and copies each array argument before the call,
then asserts that the call raised and that both are bit-identical after.
"""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skbn import (
    BatchNormalizer,
    GroupNormalizer,
    InstanceNormalizer,
    LayerNormalizer,
    functional,
)

pd = pytest.importorskip("pandas")


def _frame(shape=(6, 4)):
    cols = [f"c{i}" for i in range(shape[1])]
    return pd.DataFrame(
        np.arange(np.prod(shape), dtype=float).reshape(shape), columns=cols
    )


def _estimators():
    return {
        "bn": lambda: BatchNormalizer(),
        "bn_momentum_none": lambda: BatchNormalizer(momentum=None),
        "layer": lambda: LayerNormalizer(),
        "group": lambda: GroupNormalizer(n_groups=2),
        "instance": lambda: InstanceNormalizer(),
    }


def _with_inf_last(shape=(6, 4)):
    X = np.random.default_rng(0).normal(size=shape)
    X[-1, -1] = np.inf
    return X


BAD_CALLS = {
    "inf_last_row": lambda: ((_with_inf_last(),), {}),
    "strings": lambda: ((np.full((6, 4), "1.5"),), {}),
    "object_strings": lambda: ((np.full((6, 4), "1.5", dtype=object),), {}),
    "datetimes": lambda: ((np.zeros((6, 4), dtype="datetime64[s]"),), {}),
    "wrong_width": lambda: ((np.ones((6, 3)),), {}),
    "one_d": lambda: ((np.ones(6),), {}),
    "empty": lambda: ((np.ones((0, 4)),), {}),
}
METHODS = [
    "fit",
    "partial_fit",
    "fit_transform",
    "partial_fit_transform",
    "transform",
    "inverse_transform",
]


def _snapshot(est, args):
    return pickle.dumps(est.__dict__), [
        a.copy() if isinstance(a, np.ndarray) else pickle.dumps(a) for a in args
    ]


def _same(before, after):
    assert before[0] == after[0]
    for a, b in zip(before[1], after[1], strict=True):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()
        else:
            assert a == b


def _raises_and_keeps(est, method, args, kwargs):
    before = _snapshot(est, args)
    with pytest.raises((ValueError, TypeError)):
        getattr(est, method)(*args, **kwargs)
    _same(before, _snapshot(est, args))


@pytest.mark.parametrize("fitted", [False, True], ids=["fresh", "fitted"])
@pytest.mark.parametrize("bad", list(BAD_CALLS))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(_estimators()))
@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_failed_call_changes_nothing(name, method, bad, fitted):
    est = _estimators()[name]()
    if not hasattr(est, method):
        pytest.skip(f"{name} has no {method}")
    if fitted:
        est.fit(_frame())
    elif method in ("transform", "inverse_transform") and name.startswith("bn"):
        pytest.skip("unfitted: NotFittedError, tested elsewhere")
    if bad == "wrong_width" and (not fitted or method.startswith("fit")):
        pytest.skip("a fresh fit accepts any width")
    args, kwargs = BAD_CALLS[bad]()
    if bad == "inf_last_row" and method in ("transform", "inverse_transform"):
        kwargs = {"copy": False}
    if bad == "inf_last_row" and not name.startswith("bn"):
        if method == "fit":
            pytest.skip("a per-sample fit reads only the first sample's values")
        kwargs = {}  # per-sample transform has no in-place mode
    _raises_and_keeps(est, method, args, kwargs)


@pytest.mark.parametrize("output", ["pandas", "polars"])
@pytest.mark.parametrize("method", ["fit_transform", "partial_fit_transform"])
def test_set_output_that_cannot_hold_the_result_rolls_back(output, method):
    pytest.importorskip(output)
    est = BatchNormalizer(axis=1).set_output(transform=output)
    _raises_and_keeps(est, method, (np.ones((4, 3, 5)),), {})
    assert not hasattr(est, "running_mean_")
    fitted = BatchNormalizer(axis=1).fit(np.ones((4, 3, 5)))
    fitted.set_output(transform=output)
    _raises_and_keeps(fitted, "transform", (np.ones((4, 3, 5)),), {})
    _raises_and_keeps(fitted, method, (np.ones((4, 3, 5)),), {})


@pytest.mark.parametrize("cls", [LayerNormalizer, InstanceNormalizer])
def test_per_sample_failed_fit_keeps_feature_names(cls):
    est = cls().fit(_frame())
    # One sample with an infinity: fit normalizes the first sample and raises.
    _raises_and_keeps(est, "fit", (_with_inf_last((1, 4)),), {})
    assert list(est.feature_names_in_) == list(_frame().columns)


def test_failed_set_params_changes_nothing():
    est = BatchNormalizer().fit(np.ones((4, 2)))
    _raises_and_keeps(est, "set_params", (), {"momentum": 0.5, "no_such": 1})
    assert est.momentum == 0.9


@settings(max_examples=40, deadline=None)
@given(
    n_rows=st.integers(1, 300),
    n_cols=st.integers(1, 9),
    where=st.floats(0, 1),
    sign=st.sampled_from([1.0, -1.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    nan=st.booleans(),
    inverse=st.booleans(),
)
def test_in_place_transform_with_inf_writes_nothing(
    n_rows, n_cols, where, sign, dtype, nan, inverse
):
    rng = np.random.default_rng(n_rows * 31 + n_cols)
    est = BatchNormalizer().fit(rng.normal(size=(20, n_cols)))
    Y = rng.normal(size=(n_rows, n_cols)).astype(dtype)
    flat = Y.reshape(-1)
    pos = int(where * (flat.size - 1))
    flat[pos] = sign * np.inf
    if nan and flat.size > 1:
        flat[(pos + 1) % flat.size] = np.nan  # NaN is allowed, infinity not
    method = "inverse_transform" if inverse else "transform"
    _raises_and_keeps(est, method, (Y,), {"copy": False})


def test_in_place_transform_without_inf_still_writes_in_place():
    # The guard must not turn copy=False into a copy.
    X = np.random.default_rng(1).normal(size=(50, 3))
    est = BatchNormalizer().fit(X)
    Y = X.copy()
    Y[0, 0] = np.nan
    out = est.transform(Y, copy=False)
    assert np.shares_memory(out, Y)
    assert np.isnan(out[0, 0])


def _forward_buffers():
    rm, rv = np.zeros(3), np.ones(3)
    return rm, rv


@pytest.mark.parametrize(
    "spoil",
    [
        "read_only_var",
        "read_only_mean",
        "same_array",
        "var_is_view_of_mean",
        "inf_in_x",
        "shares_x",
    ],
)
def test_batch_norm_forward_writes_no_buffer_when_it_raises(spoil):
    x = np.random.default_rng(2).normal(size=(8, 3))
    rm, rv = _forward_buffers()
    if spoil == "read_only_var":
        rv.flags.writeable = False
    elif spoil == "read_only_mean":
        rm.flags.writeable = False
    elif spoil == "same_array":
        rv = rm
        rm[:] = 1.0
    elif spoil == "var_is_view_of_mean":
        both = np.ones(3)
        rm, rv = both, both[::-1]
    elif spoil == "inf_in_x":
        x[-1, -1] = np.inf
    elif spoil == "shares_x":
        x = np.ones((8, 3))
        x[:, 0] = np.arange(8)
        rm = x[0]
        rv = np.ones(3)
    before = (rm.copy(), rv.copy(), x.copy())
    with pytest.raises(ValueError):
        functional.batch_norm_forward(x, 1.0, 0.0, running_mean=rm, running_var=rv)
    for a, b in zip(before, (rm, rv, x), strict=True):
        assert a.tobytes() == b.tobytes()


def test_batch_norm_forward_eval_accepts_read_only_buffers():
    # Inference mode writes nothing, so read-only statistics are fine there.
    x = np.random.default_rng(3).normal(size=(8, 3))
    rm, rv = np.zeros(3), np.ones(3)
    rm.flags.writeable = rv.flags.writeable = False
    y, _ = functional.batch_norm_forward(
        x, 1.0, 0.0, running_mean=rm, running_var=rv, training=False
    )
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-5))
