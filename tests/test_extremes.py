"""Numerical extremes, each with its expected result written down.

See tests/RELIABILITY.md for the table these cases feed.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skbn import BatchNormalizer

F32_MAX = float(np.finfo(np.float32).max)


def test_variance_past_float64_raises_clear_error():
    # Var of ±1e300 is 1e600: not representable.  Expected: ValueError, no NaN.
    for X in (
        np.array([[1e300], [-1e300]]),
        np.array([[1e300], [1.0000000001e300]]),  # spread 1e290: var 1e580
        np.array([[1e154], [-1e154]] * 2),  # n * var = 4e308 > float64 max
    ):
        est = BatchNormalizer()
        with pytest.raises(ValueError, match="overflows float64"):
            est.fit(X)
        assert not hasattr(est, "running_mean_")  # nothing half-fitted


def test_huge_values_with_representable_variance():
    # ±1e150: var 1e300, fine.  Expected: mean 0, var 1e300, output ±1.
    X = np.array([[1e150], [-1e150]])
    est = BatchNormalizer(eps=0.0 + 1e-300).fit(X)
    assert_allclose(est.running_var_, [1e300])
    assert_allclose(est.transform(X).ravel(), [1.0, -1.0])
    assert_allclose(est.inverse_transform(est.transform(X)), X)


@pytest.mark.parametrize("value", [1e155, 1e200, 1e300, -1e300])
def test_constant_column_of_huge_values(value):
    # Expected: mean = value, var = 0 exactly, transform gives 0 (not NaN).
    X = np.full((4, 2), value)
    est = BatchNormalizer().fit(X)
    assert_array_equal(est.running_mean_, [value, value])
    assert_array_equal(est.running_var_, [0.0, 0.0])
    assert_array_equal(est.transform(X), 0.0)


def test_constant_column_just_below_square_overflow():
    # 1e154**2 = 1e308 < float64 max: var 0 exactly, transform 0.
    X = np.full((4, 2), 1e154)
    est = BatchNormalizer().fit(X)
    assert_array_equal(est.running_var_, 0.0)
    assert_array_equal(est.transform(X), 0.0)


def test_float32_near_max():
    # ±3.4e38 in float32: the float64 statistics hold var ~1.03e77 exactly;
    # the float32 output is ±1/±sqrt(2)-scaled and round-trips.
    X = np.array([[3.4e38], [-3.4e38], [3.4e38]], dtype=np.float32)
    est = BatchNormalizer().fit(X)
    Y = est.transform(X)
    assert Y.dtype == np.float32 and np.isfinite(Y).all()
    assert_allclose(Y.ravel(), [2**-0.5, -(2**0.5), 2**-0.5], rtol=1e-6)
    assert_allclose(est.inverse_transform(Y), X, rtol=1e-6)
    # A constant column at float32 max: var 0, output 0.
    C = np.full((3, 1), F32_MAX, dtype=np.float32)
    assert_array_equal(BatchNormalizer().fit(C).transform(C), 0.0)


def test_float32_output_out_of_range_is_inf_not_nan():
    # Expected: a result beyond float32 max overflows to inf (IEEE, as NumPy),
    # with the sign kept; never NaN.
    est = BatchNormalizer().fit(np.array([[0.0], [1.0]], dtype=np.float32))
    Y = est.transform(np.array([[3.4e38], [-3.4e38]], dtype=np.float32))
    assert_array_equal(Y.ravel(), [np.inf, -np.inf])


def test_subnormals():
    # float64 subnormals: the variance (~1e-647) underflows to 0; expected
    # var 0, mean within one subnormal step, finite output, no NaN.
    X = np.array([[5e-324], [1e-323], [0.0]])
    est = BatchNormalizer().fit(X)
    assert est.running_var_[0] == 0.0
    assert abs(est.running_mean_[0] - 5e-324) <= 5e-324
    assert np.isfinite(est.transform(X)).all()
    # float32 subnormals with a tiny eps: finite and ordered like the input.
    X32 = np.array([[1e-45], [2e-45], [0.0]], dtype=np.float32)
    Y = BatchNormalizer(eps=1e-45).fit(X32).transform(X32)
    assert np.isfinite(Y).all()
    assert Y[1, 0] >= Y[0, 0] > Y[2, 0]


def test_constant_but_one_value():
    # n - 1 zeros and one 1: mean 1/n, var (n - 1) / n**2, to float64 rounding.
    n = 10**6
    X = np.zeros((n, 1))
    X[123] = 1.0
    est = BatchNormalizer().fit(X)
    assert_allclose(est.running_mean_, [1 / n], rtol=1e-12)
    assert_allclose(est.running_var_, [(n - 1) / n**2], rtol=1e-12)
    Y = est.transform(X)
    var = (n - 1) / n**2
    assert_allclose(Y[123, 0], (1 - 1 / n) / np.sqrt(var + 1e-5), rtol=1e-9)
    assert_allclose(Y[0, 0], (-1 / n) / np.sqrt(var + 1e-5), rtol=1e-9)


def test_offset_1e8_unit_variance(rng):
    # Expected: relative variance error <= 1e-6 (measured ~1e-10).
    X = 1e8 + rng.standard_normal((200_000, 3))
    est = BatchNormalizer().fit(X)
    exact = (X - X.mean(axis=0)).var(axis=0)
    assert np.max(np.abs(est.running_var_ / exact - 1)) <= 1e-6
    # Split into batches and pooled: the same bound.
    pooled = BatchNormalizer(momentum=None)
    for part in np.array_split(X, 7):
        pooled.partial_fit(part)
    assert np.max(np.abs(pooled.running_var_ / exact - 1)) <= 1e-6


def test_counts_beyond_2_pow_32_by_merging(rng):
    # 2**33 samples simulated: each of 4 batches of 4 rows weighs 2**29 per row
    # (total weight 2**33).  Expected: the weighted statistics are the plain
    # statistics of the 16 rows (equal weights), counts exact in float64.
    X = rng.normal(3.0, 2.0, size=(16, 2))
    w = np.full(4, 2.0**29)
    est = BatchNormalizer(momentum=None)
    for part in np.split(X, 4):
        est.partial_fit(part, sample_weight=w)
    assert est._seen[0] == 2.0**33
    assert_allclose(est.running_mean_, X.mean(axis=0), rtol=1e-13)
    assert_allclose(est.running_var_, X.var(axis=0), rtol=1e-12)


def test_weights_summing_past_1e15(rng):
    # Weights of 1e15 and 1e300 per sample: the weights cancel; expected the
    # unweighted statistics.  Weights whose sum times the variance exceeds
    # float64 raise the overflow error.
    X = np.array([[1.0], [2.0], [3.0]])
    for wv in (1e15, 1e300):
        est = BatchNormalizer(momentum=None).fit(X, sample_weight=np.full(3, wv))
        assert_allclose(est.running_mean_, [2.0])
        assert_allclose(est.running_var_, [2 / 3])
    big = BatchNormalizer(momentum=None).fit(X[:1], sample_weight=[1e15])
    big.partial_fit(X[1:], sample_weight=[1e15, 1e15])
    assert_allclose(big.running_var_, [2 / 3], rtol=1e-12)
    with pytest.raises(ValueError, match="overflows float64"):
        BatchNormalizer().fit(X, sample_weight=np.full(3, 1e308))


def test_non_finite_input_is_refused_not_propagated():
    # inf is an error in fit and in transform; NaN is missing (ignored in fit,
    # kept in transform); an all-NaN column keeps var 1 (no data).
    est = BatchNormalizer()
    with pytest.raises(ValueError, match="infinity"):
        est.fit(np.array([[1.0], [np.inf]]))
    est.fit(np.array([[1.0, np.nan], [2.0, np.nan]]))
    assert_array_equal(est.running_var_, [0.25, 1.0])
    with pytest.raises(ValueError, match="infinity"):
        est.transform(np.array([[np.inf, 0.0]]))
    Y = est.transform(np.array([[np.nan, 0.0]]))
    assert np.isnan(Y[0, 0]) and np.isfinite(Y[0, 1])
