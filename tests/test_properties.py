"""Hypothesis properties: merging, streaming and round trips."""

import naive
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose

from skbn import BatchNormalizer
from skbn._core import moments as _moments
from skbn._core.views import Layout

# The first examples pay for JIT compilation: no deadline.
SETTINGS = settings(max_examples=50, deadline=None)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def tables(draw, min_rows=2, nan=True):
    """(X, sample_weight or None): 2-D float64 data, some NaN, an offset."""
    n = draw(st.integers(min_rows, 40))
    d = draw(st.integers(1, 6))
    X = draw(arrays(np.float64, (n, d), elements=finite))
    X = X + draw(finite)  # data far from zero as often as near it
    if nan and draw(st.booleans()):
        mask = draw(arrays(np.bool_, (n, d)))
        X[mask] = np.nan
    w = None
    if draw(st.booleans()):
        w = draw(arrays(np.float64, n, elements=st.floats(0.25, 10.0)))
    return X, w


def _tolerances(X):
    """Absolute tolerances for a mean and a variance, scaled by |X|.

    Never below the smallest subnormal: for subnormal data the scaled values
    underflow to 0, which would ask for more than the last bit that float64
    can hold (the mean of 5e-324 and 0 is 2.5e-324, which rounds to either).
    """
    mag = float(np.nanmax(np.abs(X))) if np.isfinite(X).any() else 1.0
    tiny = np.finfo(np.float64).smallest_subnormal
    return max(1e-12 * mag, tiny), max(1e-12 * mag**2, tiny)


@SETTINGS
@given(data=tables(), split=st.floats(0.0, 1.0), dtype=st.sampled_from(["f4", "f8"]))
def test_merge_of_halves_equals_moments_of_whole(data, split, dtype):
    X, w = data
    X = X.astype(dtype)
    n = X.shape[0]
    k = min(max(1, round(split * n)), n - 1)  # both halves non-empty
    whole = _moments.moments(Layout(X, (1,)), w)
    a = _moments.moments(Layout(X[:k], (1,)), None if w is None else w[:k])
    b = _moments.moments(Layout(X[k:], (1,)), None if w is None else w[k:])
    merged = _moments.merge(a, b)
    atol_mean, atol_var = _tolerances(X)
    assert_allclose(merged.count, whole.count, rtol=1e-12)
    assert_allclose(merged.mean, whole.mean, rtol=1e-12, atol=atol_mean)
    assert_allclose(merged.var, whole.var, rtol=1e-12, atol=atol_var)
    # Both equal the slow reference.
    grid = None if w is None else naive.sample_weight_grid(w, X.shape)
    count, mean, var, _ = naive.moments(X, -1, grid)
    assert_allclose(whole.count, count, rtol=1e-12)
    assert_allclose(whole.mean, mean, rtol=1e-12, atol=atol_mean)
    assert_allclose(whole.var, var, rtol=1e-12, atol=atol_var)


@SETTINGS
@given(data=tables(nan=True), cuts=st.lists(st.floats(0.0, 1.0), max_size=4))
# Found by Hypothesis in CI: a subnormal mean one last bit apart.
@example(data=(np.array([[5e-324], [0.0]]), np.array([1.0, 1.0])), cuts=[0.0])
def test_partial_fit_over_any_split_equals_fit(data, cuts):
    X, w = data
    n = X.shape[0]
    bounds = sorted({0, n, *(min(max(1, round(c * n)), n - 1) for c in cuts)})
    bn = BatchNormalizer(momentum=None)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        bn.partial_fit(X[lo:hi], sample_weight=None if w is None else w[lo:hi])
    full = BatchNormalizer().fit(X, sample_weight=w)
    atol_mean, atol_var = _tolerances(X)
    assert_allclose(bn.running_mean_, full.running_mean_, rtol=1e-12, atol=atol_mean)
    assert_allclose(bn.running_var_, full.running_var_, rtol=1e-12, atol=atol_var)
    # scikit-learn's count: per feature, the weights (or number) of the
    # non-missing values; one number when all features agree.
    expect = np.where(np.isnan(X), 0.0, 1.0 if w is None else w[:, None]).sum(0)
    assert_allclose(bn.n_samples_seen_, full.n_samples_seen_, rtol=1e-12)
    assert_allclose(
        np.broadcast_to(full.n_samples_seen_, expect.shape), expect, rtol=1e-12
    )
    assert np.ndim(full.n_samples_seen_) == (0 if np.all(expect == expect[0]) else 1)
    assert bn.n_batches_seen_ == len(bounds) - 1


@SETTINGS
@given(
    data=tables(min_rows=1),
    dtype=st.sampled_from(["f4", "f8"]),
    gamma=st.floats(0.5, 2.0),
    beta=st.floats(-2.0, 2.0),
    eps=st.sampled_from([1e-5, 1e-3, 1.0]),
)
def test_inverse_transform_undoes_transform(data, dtype, gamma, beta, eps):
    X, w = data
    X = X.astype(dtype)
    bn = BatchNormalizer(gamma=gamma, beta=beta, eps=eps).fit(X, sample_weight=w)
    Y = bn.transform(X)
    back = bn.inverse_transform(Y)
    assert back.dtype == X.dtype
    assert np.array_equal(np.isnan(back), np.isnan(X))
    # Rounding of y (relative to |y|, at most ~|x - mean| / sqrt(var + eps)
    # plus |beta|) comes back multiplied by sqrt(var + eps) / gamma.
    eps_t = np.finfo(X.dtype).eps
    spread = np.sqrt(bn.running_var_ + eps)
    bound = (
        8 * eps_t * (np.abs(X) + np.abs(bn.running_mean_) + (abs(beta) + 1) * spread)
    )
    ok = ~np.isnan(X)
    err = np.abs(back.astype(np.float64) - X.astype(np.float64))
    assert (err[ok] <= bound[ok]).all()
    assert_allclose(
        Y[ok],
        naive.normalize(X, bn.running_mean_, bn.running_var_, gamma, beta, eps)[ok],
        rtol=1e-5 if dtype == "f4" else 1e-9,
        atol=1e-5 if dtype == "f4" else 1e-9,
    )
