"""Issue 13, classes 2, 3, 4 and the NaN scalar weight of class 8.

* Class 2: on every layout the statistics of one call are within a small
  constant of the error of a two-pass float64 computation, at any offset
  (the kernels merge means relative to a per-call reference, see
  ``skbn._kernels.cpu.shift_reference``).
* Class 3: the momentum update keeps a constant feature exactly constant.
* Class 4: streaming raises where ``fit`` raises, with the state unchanged,
  and is right where the answer is representable; weights that differ by a
  common factor give the same statistics.
* Class 8 (part): a NaN or infinite scalar ``sample_weight`` is blamed on
  ``sample_weight``.

The ground truth is :func:`naive.exact_moments` (rational arithmetic); the
yardstick is :func:`naive.moments` (two-pass float64 with ``math.fsum``).
"""

import naive
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skbn import BatchNormalizer
from skbn import functional as F
from skbn._kernels import cpu

SETTINGS = settings(max_examples=25, deadline=None)
EPS = np.finfo(np.float64).eps

# -- class 2: exactness on every layout ----------------------------------------------

# (name, shape builder from (n, d), feature axis, memory order).  Between them
# they reach every CPU moments kernel: rows (narrow, folded, and wide),
# segments, channels (Fortran-ordered columns), and their masked twins once a
# NaN or a weight is present.
LAYOUTS = {
    "narrow C": (lambda n, d: (n, d), -1, "C"),
    "wide C": (lambda n, d: (max(2, n // 8), 70), -1, "C"),
    "narrow F": (lambda n, d: (n, d), -1, "F"),
    "wide F": (lambda n, d: (max(2, n // 8), 70), -1, "F"),
    "3-D rows": (lambda n, d: (max(1, n // 4), 4, d), -1, "C"),
    "NCHW axis=1": (lambda n, d: (max(1, n // 12), d, 3, 4), 1, "C"),
    "axis=(1, 2)": (lambda n, d: (max(1, n // 2), d, 2), (1, 2), "C"),
    "axis=0": (lambda n, d: (d, n), 0, "C"),
}


def within_two_pass(got, X, axis, weights=None, factor=4.0, ulps=128.0):
    """``|got - exact| <= factor * |two-pass - exact| + ulps * eps * exact``.

    The two-pass float64 error can be 0 by luck, hence the floor of a few
    dozen ulps of the variance (the kernels sum a block's values in order,
    not pairwise as ``math.fsum`` does).
    """
    exact_mean, exact = naive.exact_moments(X, axis, weights)
    _, _, two_pass, _ = naive.moments(X, axis, weights)
    tol = factor * np.abs(two_pass - exact) + ulps * EPS * exact
    err = np.abs(np.asarray(got, dtype=np.float64) - exact)
    assert (err <= tol).all(), (err / np.maximum(exact, 1e-300), tol - err)
    return exact_mean


@st.composite
def offset_data(draw, layout):
    make, axis, order = LAYOUTS[layout]
    n = draw(st.integers(2, 400))
    d = draw(st.integers(1, 5))
    shape = make(n, d)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    offset = draw(st.sampled_from([1.0, -1.0])) * 10.0 ** draw(st.integers(0, 8))
    spread = 10.0 ** draw(st.integers(-3, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "two values", "constant run"]))
    if kind == "normal":
        noise = rng.normal(size=shape)
    elif kind == "two values":  # the docs' example, at any offset and shape
        noise = rng.integers(0, 2, size=shape).astype(np.float64)
    else:
        noise = np.zeros(shape)
        noise.flat[rng.integers(0, noise.size)] = 1.0
    X = np.asarray((offset + spread * noise).astype(dtype), order=order)
    weighted = draw(st.booleans())
    w = None
    if weighted and axis != 0 and 0 not in np.atleast_1d(axis):
        w = rng.uniform(0.0, 3.0, size=shape[0])
        w[rng.random(shape[0]) < 0.1] = 0.0
        if not w.any():
            w[0] = 1.0
    if draw(st.booleans()):
        X = X.copy(order=order)
        X[rng.random(shape) < 0.05] = np.nan
    return X, axis, w


def test_docs_example_is_exactly_a_quarter():
    x = np.full((1000, 2), 1e6, np.float32)
    x[:, 1] += np.arange(1000) % 2
    bn = BatchNormalizer().fit(x)
    assert bn.running_var_.tolist() == [0.0, 0.25]
    assert bn.running_mean_.tolist() == [1e6, 1e6 + 0.5]


@SETTINGS
@given(
    value=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    outlier=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    shape=st.sampled_from([(7, 3), (7, 1, 3, 4), (2, 3, 5, 8)]),
    axis=st.sampled_from([1, -1]),
    data=st.data(),
)
@example(  # found by the test above: a weight-0 outlier among the first values
    value=1.0, outlier=11.0, shape=(7, 1, 3, 4), axis=1, data=None
)
def test_weighted_constant_is_exact_whatever_its_weight_0_values(
    value, outlier, shape, axis, data
):
    # Values of weight 0 are not in the statistics: the weighted values of a
    # feature all equal give exactly that mean and a variance of exactly 0,
    # wherever the weight-0 values lie and whatever they hold.
    X = np.full(shape, value, np.float32)
    n = shape[0]
    zero = 0 if data is None else data.draw(st.integers(0, n - 1))
    X[zero] = outlier
    w = np.linspace(0.5, 3.0, n)
    w[zero] = 0.0
    bn = BatchNormalizer(axis=axis, momentum=None).fit(X, sample_weight=w)
    assert (bn.running_var_ == 0.0).all()
    assert (bn.running_mean_ == np.float64(np.float32(value))).all()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@SETTINGS
@given(data=st.data())
def test_fit_within_two_pass_on_every_layout(layout, data):
    X, axis, w = data.draw(offset_data(layout))
    bn = BatchNormalizer(axis=axis).fit(X, sample_weight=w)
    weights = None if w is None else naive.sample_weight_grid(w, X.shape)
    exact_mean, exact_var = naive.exact_moments(X, axis, weights)
    # A feature without weighted values keeps the initial statistics.
    has = naive.moments(X, axis, weights)[0] > 0
    got_var = bn.running_var_.reshape(-1)
    within_two_pass(np.where(has, got_var, exact_var), X, axis, weights)
    # The mean is within a few ulps of its own magnitude plus a few of the
    # spread: no leak of the offset's rounding into the variance, above.  The
    # spread is that of all the feature's values, weighted or not: a bound
    # whichever of them set the reference the deviations are summed around.
    got_mean = bn.running_mean_.reshape(-1)
    sel = has
    spread = np.sqrt(np.maximum(exact_var, naive.exact_moments(X, axis)[1]))
    tol = 4 * EPS * np.abs(exact_mean) + 64 * EPS * spread
    assert (np.abs(got_mean - exact_mean)[sel] <= tol[sel]).all()


KERNELS = [
    ("rows_moments", lambda x2, w: (x2,)),
    ("rows_moments_masked", lambda x2, w: (x2, w[:, None])),
]


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("n_tasks", [1, 3])
@SETTINGS
@given(data=st.data())
def test_kernels_within_two_pass_for_any_block_and_task_count(serial, n_tasks, data):
    # The kernels as skbn's small-batch path calls them (serial, one task)
    # and cut into several tasks and tiny blocks, where every merge counts.
    X, _, _ = data.draw(offset_data("narrow C"))
    X = np.nan_to_num(X, nan=float(X.flat[0]) if np.isfinite(X.flat[0]) else 0.0)
    X = np.ascontiguousarray(X)
    block = data.draw(st.sampled_from([1, 4, 7, 1000]))

    def kernel(name):
        k = getattr(cpu, name)
        return k.serial if serial else k

    w = np.ones(X.shape[0])
    for name, args in KERNELS:
        count, mean, m2 = kernel(name)(*args(X, w), block, n_tasks)
        within_two_pass(m2 / count, X, -1)
    x3 = np.ascontiguousarray(X.T)[None]  # (1, d, n): segments and channels
    seg = data.draw(st.sampled_from([1, 5, 8192]))
    for got in (
        kernel("segments_moments")(x3, seg, n_tasks),
        kernel("segments_moments_masked")(x3, np.ones((1, x3.shape[2])), seg, n_tasks),
        kernel("channels_moments")(x3[0], seg),
    ):
        within_two_pass(got[2] / got[0], X, -1)


@SETTINGS
@given(data=st.data())
def test_functional_forward_within_two_pass(data):
    X, axis, _ = data.draw(
        offset_data(
            data.draw(
                st.sampled_from(["narrow C", "wide C", "narrow F", "NCHW axis=1"])
            )
        )
    )
    X = np.where(np.isnan(X), np.asarray(1.0, X.dtype) * np.nanmax(X), X)
    _, cache = F.batch_norm_forward(X, None, None, axis=axis)
    d = naive.n_features(X.shape, axis)
    _, exact_var = naive.exact_moments(X, axis)
    # The cache's inverse standard deviation is 1 / sqrt(var + eps): invert.
    inv = np.asarray(cache.inv_std).reshape(-1)[:d]
    got = 1.0 / inv**2 - 1e-5
    tol = 1e-12 * (exact_var + 1e-5) + 4 * EPS * 1e-5
    assert (np.abs(got - exact_var) <= tol).all()


# -- class 3: constants stay exact under the EMA -------------------------------------


def test_docs_constant_under_momentum():
    c = 459310.89285988803
    bn = BatchNormalizer(momentum=0.3)
    bn.partial_fit(np.full((4, 1), c)).partial_fit(np.full((4, 1), c))
    assert bn.transform([[c]]).tolist() == [[0.0]]


@SETTINGS
@given(
    c=st.floats(-1e150, 1e150, allow_nan=False, allow_infinity=False),
    momentum=st.one_of(st.none(), st.floats(0.0, 1.0)),
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
    dtype=st.sampled_from([np.float32, np.float64]),
    beta=st.floats(-10, 10),
)
@example(c=459310.89285988803, momentum=0.3, sizes=[4, 4], dtype=np.float64, beta=0.0)
def test_constant_feature_stays_exactly_constant(c, momentum, sizes, dtype, beta):
    if dtype is np.float32:
        c = float(np.float32(c / 1e120))  # inside float32's range
    bn = BatchNormalizer(momentum=momentum, beta=beta)
    for n in sizes:  # small batches take the one-dispatch path after the first
        bn.partial_fit(np.full((n, 2), c, dtype))
    assert bn.running_mean_.tolist() == [c, c]
    assert bn.running_var_.tolist() == [0.0, 0.0]
    assert bn.transform(np.full((1, 2), c, dtype)).tolist() == [[dtype(beta)] * 2]


@given(c=st.floats(-1e100, 1e100), momentum=st.floats(0.0, 1.0))
@settings(max_examples=25, deadline=None)
def test_functional_running_update_keeps_a_constant(c, momentum):
    x = np.full((5, 3), c)
    rm = np.full(3, c)
    rv = np.zeros(3)
    F.batch_norm_forward(
        x, None, None, running_mean=rm, running_var=rv, momentum=momentum
    )
    assert rm.tolist() == [c] * 3
    assert rv.tolist() == [0.0] * 3


# -- class 4: overflow while streaming, weight scaling ------------------------------


def _state(bn):
    return (
        bn.running_mean_.tobytes(),
        bn.running_var_.tobytes(),
        bn.n_samples_seen_,
        bn.n_batches_seen_,
    )


@pytest.mark.parametrize("big", [1e154, 3e200, 1e308])
def test_streaming_overflow_raises_like_fit_with_state_unchanged(big):
    with pytest.raises(ValueError, match="overflows float64") as fit_error:
        BatchNormalizer().fit([[big], [-big]])
    bn = BatchNormalizer(momentum=None).partial_fit([[big]])
    before = _state(bn)
    with pytest.raises(ValueError, match="overflows float64") as stream_error:
        bn.partial_fit([[-big]])
    assert str(stream_error.value) == str(fit_error.value)
    assert _state(bn) == before
    # Not a half-broken estimator either: it goes on from the old state.
    bn.partial_fit([[big]])
    assert bn.running_var_.tolist() == [0.0]


@SETTINGS
@given(
    e=st.integers(0, 160),
    sign=st.sampled_from([1.0, -1.0]),
    n=st.integers(1, 6),
)
def test_streaming_raises_exactly_where_fit_does(e, sign, n):
    # Values of magnitude 10**e: below 10**153 nothing overflows, above
    # 10**155 the sum of squares does; the two paths must agree on both.
    big = sign * 10.0**e
    X = np.array([[big]] * n + [[-big]] * n)
    try:
        expected = BatchNormalizer().fit(X).running_var_
    except ValueError:
        expected = None
    bn = BatchNormalizer(momentum=None)
    try:
        for row in X:
            bn.partial_fit(row[None])
        got = bn.running_var_
    except ValueError:
        got = None
    if e < 153 or e > 155:
        assert (expected is None) == (got is None)
    if expected is not None and got is not None:
        np.testing.assert_allclose(got, expected, rtol=1e-14)


@SETTINGS
@given(
    log_w=st.integers(-300, 300),
    values=st.lists(st.floats(-1e100, 1e100), min_size=2, max_size=6),
)
@example(log_w=300, values=[0.0, 1e5])
def test_one_row_batches_with_huge_or_tiny_weights_are_finite(log_w, values):
    w = 10.0**log_w
    bn = BatchNormalizer(momentum=None)
    for v in values:
        bn.partial_fit([[v]], sample_weight=[w])
    ref = BatchNormalizer(momentum=None)
    for v in values:
        ref.partial_fit([[v]])
    assert np.isfinite(bn.running_var_).all()
    np.testing.assert_allclose(
        bn.running_mean_,
        ref.running_mean_,
        rtol=1e-12,
        atol=1e-12 * max(map(abs, values)),
    )
    np.testing.assert_allclose(
        bn.running_var_, ref.running_var_, rtol=1e-12, atol=1e-300
    )


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(-900, 900),
    n=st.integers(1, 300),
    momentum=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_weights_scaled_by_a_power_of_two_give_identical_statistics(
    seed, k, n, momentum
):
    rng = np.random.default_rng(seed)
    X = rng.normal(5.0, 3.0, size=(n, 3))
    w = rng.uniform(0.5, 2.0, size=n)
    scaled = w * 2.0**k  # exact: stays in the normal range
    a = BatchNormalizer(momentum=momentum).fit(X, sample_weight=w)
    b = BatchNormalizer(momentum=momentum).fit(X, sample_weight=scaled)
    assert a.running_mean_.tobytes() == b.running_mean_.tobytes()
    assert a.running_var_.tobytes() == b.running_var_.tobytes()


# Not 2e-323: a sum of squares in such units is subnormal and keeps only a
# few digits (Moments carry M2 in the weights' units; see RELIABILITY.md).
@pytest.mark.parametrize("factor", [1e-300, 1e-10, 3.0, 1e300])
def test_constant_weights_of_any_scale_match_unweighted(rng, factor):
    X = rng.normal(1e3, 7.0, size=(200, 3))
    a = BatchNormalizer().fit(X)
    b = BatchNormalizer().fit(X, sample_weight=np.full(200, factor))
    np.testing.assert_allclose(b.running_mean_, a.running_mean_, rtol=1e-15)
    np.testing.assert_allclose(b.running_var_, a.running_var_, rtol=1e-13)


# -- class 8 (part): a non-finite scalar weight ---------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, float("nan"), np.float32("nan")])
@pytest.mark.parametrize("method", ["fit", "partial_fit", "fit_transform"])
def test_non_finite_scalar_weight_is_blamed_on_sample_weight(bad, method):
    bn = BatchNormalizer()
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        getattr(bn, method)(np.ones((4, 2)), sample_weight=bad)
    assert not hasattr(bn, "running_mean_")
