"""The Numba kernels and the moment/affine wrappers against tests/naive.py."""

import naive
import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skbn import _config
from skbn._core import moments as _moments
from skbn._core import norm as _norm
from skbn._core.views import Layout, normalize_axis
from skbn._kernels import cpu

DTYPES = [np.float32, np.float64]


def twins(name):
    """A kernel and, where it has one, its serial twin (same code, no threads)."""
    kernel = getattr(cpu, name)
    kernels = [(name, kernel)]
    if hasattr(kernel, "serial"):
        kernels.append((f"{name}_serial", kernel.serial))
    return [pytest.param(k, id=n) for n, k in kernels]


# -- helpers ---------------------------------------------------------------------


def make_data(rng, shape, dtype, *, nan=False, offset=100.0):
    """Data far from zero (offset) with a different mean and spread per entry."""
    X = offset + rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape)
    X = X.astype(dtype)
    if nan:
        X[rng.random(shape) < 0.15] = np.nan
        X.flat[0] = np.nan  # at least one, even for a single element
    return X


def make_weights(rng, n):
    """Non-negative weights with some zeros (never all zero)."""
    w = rng.uniform(0.0, 3.0, size=n)
    w[rng.random(n) < 0.25] = 0.0
    w[-1] = 1.5
    return w


def magnitude(X):
    finite = np.abs(np.asarray(X, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size else 1.0


def assert_moments_match(got, ref, mag):
    """``got`` = (count, mean, m2) from skbn, ``ref`` = naive (count, mean, var, m2)."""
    count, mean, m2 = (np.asarray(a) for a in got)
    r_count, r_mean, r_var, _ = ref
    for a in (count, mean, m2):
        assert a.dtype == np.float64
        assert a.shape == r_count.shape
    assert_allclose(count, r_count, rtol=1e-13, atol=0)
    assert_allclose(mean, r_mean, rtol=1e-12, atol=1e-12 * mag)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(count > 0, m2 / count, 0.0)
    assert_allclose(var, r_var, rtol=1e-10, atol=1e-12 * mag**2)
    # An empty feature is (0, 0, 0) exactly, so that it merges as a no-op.
    empty = r_count == 0
    assert_array_equal(count[empty], 0.0)
    assert_array_equal(mean[empty], 0.0)
    assert_array_equal(m2[empty], 0.0)


def assert_affine_match(out, X, shift, scale, offset, axis):
    """``out`` equals ``(X - shift) * scale + offset`` to a few ulps of its dtype."""
    d = naive.n_features(np.shape(X), axis)
    ref = naive.affine(X, shift, scale, offset, axis)
    with np.errstate(invalid="ignore"):
        terms = np.abs(naive.affine(X, shift, scale, np.zeros(d), axis)) + np.abs(
            naive.affine(np.zeros(ref.shape), np.zeros(d), np.zeros(d), offset, axis)
        )
    tol = 4 * np.finfo(out.dtype).eps * terms
    assert out.shape == ref.shape
    ok = np.isfinite(ref)
    # NaN stays NaN, an infinity goes through as the formula says.
    assert_array_equal(out[~ok], ref[~ok].astype(out.dtype))
    err = np.abs(out[ok].astype(np.float64) - ref[ok])
    assert (err <= tol[ok]).all(), float(np.max(err - tol[ok]))


def random_moments(rng, d, empty_every=3):
    count = rng.integers(1, 50, size=d).astype(np.float64)
    if empty_every:
        count[::empty_every] = 0.0
    mean = np.where(count > 0, rng.normal(10.0, 5.0, size=d), 0.0)
    m2 = np.where(count > 0, rng.uniform(0.0, 4.0, size=d) * count, 0.0)
    return count, mean, m2


# -- row kernels ---------------------------------------------------------------------

ROW_SHAPES = [(1, 1), (1, 4), (5, 1), (7, 3), (33, 5), (64, 70)]


@pytest.mark.parametrize("kernel", twins("rows_moments"))
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_moments(rng, kernel, shape, dtype):
    n, d = shape
    x = make_data(rng, shape, dtype)
    # Blocks of 3 rows whose means jump far apart: the running mean is a poor
    # shift for the next block (the single-pass guard must recompute).
    drift = (x + (np.arange(n)[:, None] // 3) * 1e5).astype(dtype)
    for data in (x, drift):
        ref = naive.moments(data, axis=-1)
        for block in (1, 3, 1000):
            n_blocks = -(-n // block)
            for n_tasks in sorted({1, 2, n_blocks, n_blocks + 1}):
                got = kernel(data, block, n_tasks)
                assert_moments_match(got, ref, magnitude(data))


@pytest.mark.parametrize("kernel", twins("rows_moments"))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 16, 17, 40])
def test_rows_moments_first_rows_far_from_the_rest(rng, kernel, dtype, n):
    # The first block's shift is the mean of its first 16 rows (fewer in a
    # shorter block).  First rows unlike the rest (an outlier first row; the
    # first 16 rows 1e5 away) make it a poor shift; the moments must still
    # match the two-pass reference, for blocks shorter and longer than 16.
    x = make_data(rng, (n, 6), dtype)
    outlier = x.copy()
    outlier[0] += dtype(1e4)
    offset = x.copy()
    offset[: min(n - 1, 16)] += dtype(1e5)
    for data in (outlier, offset):
        ref = naive.moments(data, axis=-1)
        for block in (1000, 5):
            got = kernel(data, block, 1)
            assert_moments_match(got, ref, magnitude(data))


@pytest.mark.parametrize("kernel", twins("rows_moments"))
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_moments_constant_column_is_exact(kernel, dtype):
    # The constant's mean is the constant and M2 is exactly 0 (no residue).
    for c in (1e3, 0.1, 1 / 3, -12345.678):
        x = np.full((37, 3), c, dtype=dtype)
        for block in (1, 4, 1000):
            count, mean, m2 = kernel(x, block, 2)
            assert_array_equal(mean, np.float64(dtype(c)))
            assert_array_equal(m2, 0.0)
            assert_array_equal(count, 37.0)


@pytest.mark.parametrize(
    "kernel", twins("rows_moments_masked") + twins("segments_moments_masked")
)
@pytest.mark.parametrize("weights", ["ones", "uniform"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_moments_constant_column_is_exact(rng, kernel, weights, dtype):
    # As for the unmasked kernels: the mean of a constant is the constant and
    # its M2 is exactly 0, so that BatchNormalizer maps it to exactly beta
    # (its documented promise) also with NaN present or sample weights.
    segments = "segments" in kernel.__name__
    for c in (1e3, 0.1, -7.3):
        x = np.full((10, 2, 3) if segments else (30, 2), c, dtype=dtype)
        x[(3, 1) if not segments else (3, 1, 1)] = np.nan
        w = np.ones(10 if segments else 30)
        if weights == "uniform":
            w = rng.uniform(0.1, 3.0, w.shape)
        w2 = np.broadcast_to(w[:, None], (w.shape[0], 3 if segments else 1))
        args = (3, 2) if segments else (4, 2)
        count, mean, m2 = kernel(x, w2, *args)
        assert_array_equal(mean, np.float64(dtype(c)))
        assert_array_equal(m2, 0.0)


@pytest.mark.parametrize("kernel", twins("rows_moments"))
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_moments_nan_propagates(rng, kernel, dtype):
    # The unmasked kernel does not test for NaN: it poisons its feature only.
    x = make_data(rng, (9, 4), dtype)
    x[5, 2] = np.nan
    count, mean, m2 = kernel(x, 2, 3)
    assert np.isnan(mean[2])
    ok = [0, 1, 3]
    ref = naive.moments(x[:, ok], axis=-1)
    assert_moments_match((count[ok], mean[ok], m2[ok]), ref, magnitude(x))


@pytest.mark.parametrize("kernel", twins("rows_moments_masked"))
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_moments_masked(rng, kernel, shape, dtype):
    x = make_data(rng, shape, dtype, nan=True)
    n = shape[0]
    sw = make_weights(rng, n)
    if shape[1] > 1:
        x[:, 1] = np.nan  # a feature with no value at all
    weight_cases = {
        # (n, 1) contiguous, and (n, 1) with a zero stride as the wrapper builds
        "weights": (np.ascontiguousarray(sw[:, None]), sw),
        "ones": (np.broadcast_to(np.ones(1), (n, 1)), np.ones(n)),
    }
    for w2, w in weight_cases.values():
        ref = naive.moments(x, -1, naive.sample_weight_grid(w, x.shape))
        for block in (1, 3, 1000):
            n_blocks = -(-n // block)
            for n_tasks in sorted({1, 2, n_blocks}):
                got = kernel(x, w2, block, n_tasks)
                assert_moments_match(got, ref, magnitude(x))


@pytest.mark.parametrize("kernel", twins("rows_affine"))
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_affine(rng, kernel, shape, dtype):
    n, d = shape
    x = make_data(rng, shape, dtype)
    x[n // 2, d - 1] = np.nan
    shift = rng.normal(100.0, 1.0, size=d)
    scale = rng.uniform(-2.0, 2.0, size=d)
    offset = rng.normal(size=d)
    for block in (1, 3, 1000):
        out = np.empty_like(x)
        flag = kernel(x, shift, scale, offset, out, block)
        assert out.dtype == dtype
        assert_affine_match(out, x, shift, scale, offset, -1)
        # The flag is NaN because one input is NaN ...
        assert np.isnan(flag)
        # ... and 0 when every input is finite.
        finite = np.nan_to_num(x)
        assert kernel(finite, shift, scale, offset, out, block) == 0.0


@pytest.mark.parametrize("kernel", twins("rows_affine"))
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_affine_in_place_and_inf_flag(rng, kernel, dtype):
    x = make_data(rng, (10, 3), dtype)
    x[7, 0] = np.inf
    x0 = x.copy()
    shift, scale, offset = np.full(3, 100.0), np.full(3, 0.5), np.full(3, 2.0)
    flag = kernel(x, shift, scale, offset, x, 4)
    assert np.isnan(flag)
    assert_affine_match(x, x0, shift, scale, offset, -1)


# -- segment kernels ---------------------------------------------------------------

SEGMENT_SHAPES = [(1, 1, 1), (1, 3, 7), (4, 2, 5), (3, 5, 17), (2, 1, 40)]


@pytest.mark.parametrize("kernel", twins("segments_moments"))
@pytest.mark.parametrize("shape", SEGMENT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_segments_moments(rng, kernel, shape, dtype):
    x = make_data(rng, shape, dtype)
    ref = naive.moments(x, axis=1)
    outer, c, inner = shape
    for seg_len in (1, 3, 8192):
        units = outer * c * -(-inner // seg_len)
        for n_tasks in sorted({1, 2, 7, units}):
            got = kernel(x, seg_len, n_tasks)
            assert_moments_match(got, ref, magnitude(x))


@pytest.mark.parametrize("kernel", twins("channels_moments"))
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (5, 1), (7, 13), (3, 40)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_moments(rng, kernel, shape, dtype):
    x = make_data(rng, shape, dtype)
    ref = naive.moments(x, axis=0)
    for seg_len in (1, 3, 8192):
        assert_moments_match(kernel(x, seg_len), ref, magnitude(x))
    # A constant row far from zero: mean exact, M2 exactly 0, over many runs.
    x[0] = dtype(1e3 + 0.1)
    count, mean, m2 = kernel(x, 2)
    assert mean[0] == x[0, 0] and m2[0] == 0.0


@pytest.mark.parametrize("kernel", twins("channels_moments"))
def test_channels_moments_nan_propagates(rng, kernel):
    x = make_data(rng, (4, 6), np.float64)
    x[2, 5] = np.nan
    count, mean, m2 = kernel(x, 4)
    assert np.isnan(mean[2]) and np.isfinite(mean[[0, 1, 3]]).all()


@pytest.mark.parametrize("kernel", twins("segments_moments"))
def test_segments_moments_nan_propagates(rng, kernel):
    x = make_data(rng, (3, 4, 6), np.float64)
    x[1, 3, 2] = np.nan
    count, mean, m2 = kernel(x, 4, 5)
    assert np.isnan(mean[3])
    ref = naive.moments(x[:, :3], axis=1)
    assert_moments_match((count[:3], mean[:3], m2[:3]), ref, magnitude(x))


@pytest.mark.parametrize("kernel", twins("segments_moments_masked"))
@pytest.mark.parametrize("shape", SEGMENT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_segments_moments_masked(rng, kernel, shape, dtype):
    outer, c, inner = shape
    x = make_data(rng, shape, dtype, nan=True)
    if c > 1:
        x[:, 1, :] = np.nan  # a channel with no value at all
    w_full = rng.uniform(0.0, 2.0, size=(outer, inner))
    w_full[rng.random((outer, inner)) < 0.3] = 0.0
    weight_cases = [
        w_full,
        # zero strides, as the wrapper passes unweighted or per-sample weights
        np.broadcast_to(np.ones(1), (outer, inner)),
        np.broadcast_to(w_full[:, :1], (outer, inner)),
    ]
    for w2 in weight_cases:
        ref = naive.moments(x, 1, w2[:, None, :])
        for seg_len in (1, 3, 8192):
            units = outer * c * -(-inner // seg_len)
            for n_tasks in sorted({1, 3, units}):
                got = kernel(x, w2, seg_len, n_tasks)
                assert_moments_match(got, ref, magnitude(x))


@pytest.mark.parametrize("kernel", twins("segments_affine"))
@pytest.mark.parametrize("shape", SEGMENT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_segments_affine(rng, kernel, shape, dtype):
    outer, c, inner = shape
    x = make_data(rng, shape, dtype)
    x[outer - 1, c - 1, inner - 1] = -np.inf
    shift = rng.normal(100.0, 1.0, size=c)
    scale = rng.uniform(-2.0, 2.0, size=c)
    offset = rng.normal(size=c)
    out = np.empty_like(x)
    flag = kernel(x, shift, scale, offset, out)
    assert out.dtype == dtype
    assert_affine_match(out, x, shift, scale, offset, 1)
    # The flag is NaN because of the -inf, and 0 for finite input.
    assert np.isnan(flag)
    finite = np.nan_to_num(x, neginf=0.0)
    assert kernel(finite, shift, scale, offset, np.empty_like(x)) == 0.0
    # In place.
    y = x.copy()
    kernel(y, shift, scale, offset, y)
    assert_array_equal(y, out)


# -- merges --------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 7])
def test_merge_moments(rng, d):
    a = random_moments(rng, d, empty_every=3)
    b = random_moments(rng, d, empty_every=2)
    got = cpu.merge_moments(*a, *b)
    ref = naive.merge(a, b)
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == np.float64
        assert_allclose(g, r, rtol=1e-14, atol=1e-12)


def test_merge_moments_empty_side_is_a_bitwise_no_op(rng):
    a = random_moments(rng, 6, empty_every=None)
    empty = (np.zeros(6), np.zeros(6), np.zeros(6))
    for got in (cpu.merge_moments(*a, *empty), cpu.merge_moments(*empty, *a)):
        for g, r in zip(got, a, strict=True):
            assert g.tobytes() == r.tobytes()
    got = cpu.merge_moments(*empty, *empty)
    for g in got:
        assert_array_equal(g, 0.0)


def test_merge_moments_equals_moments_of_union(rng):
    A = make_data(rng, (11, 4), np.float64)
    B = make_data(rng, (6, 4), np.float64, offset=-30.0)
    a = naive.moments(A)
    b = naive.moments(B)
    got = cpu.merge_moments(a[0], a[1], a[3], b[0], b[1], b[3])
    ref = naive.moments(np.vstack([A, B]))
    assert_moments_match(got, ref, magnitude(np.vstack([A, B])))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (6, 9)], ids=str)
def test_merge_task_moments(rng, shape):
    n_tasks, d = shape
    parts = [random_moments(rng, d, empty_every=2 + t) for t in range(n_tasks)]
    cnt, mean, m2 = (np.stack([p[i] for p in parts]) for i in range(3))
    got = cpu.merge_task_moments(cnt, mean, m2)
    ref = parts[0]
    for p in parts[1:]:
        ref = naive.merge(ref, p)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == (d,)
        assert_allclose(g, r, rtol=1e-13, atol=1e-12)


# -- the wrappers: moments, merge, ema_update, affine ------------------------------

# (shape, axis): 1 row, 1 feature, odd sizes, the fold path (few features,
# many rows), wide rows, and N-D with int and tuple axes (adjacent or not).
CASES = [
    ((1, 1), -1),
    ((1, 5), -1),
    ((9, 1), -1),
    ((13, 3), -1),
    ((1001, 3), -1),
    ((40, 70), -1),
    ((13, 3), 0),
    ((3, 4, 5), 1),
    ((2, 3, 4, 5), 1),
    ((2, 3, 4, 5), -1),
    ((2, 3, 4, 5), (1, 2)),
    ((2, 3, 4, 5), (1, 3)),
    ((3, 2, 5), (2,)),
]


def memory_variant(rng, shape, dtype, variant, nan):
    """Data of ``shape`` in the memory layout ``variant``."""
    if variant == "rows[::2]":
        base = make_data(rng, (2 * shape[0],) + shape[1:], dtype, nan=nan)
        return base[::2]
    if variant == "last[::3]":
        base = make_data(rng, shape[:-1] + (3 * shape[-1],), dtype, nan=nan)
        return base[..., ::3]
    X = make_data(rng, shape, dtype, nan=nan)
    if variant == "F":
        return np.asfortranarray(X)
    if variant == "readonly":
        X.setflags(write=False)
    return X


VARIANTS = ["C", "F", "rows[::2]", "last[::3]", "readonly"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_moments_wrapper(rng, blocks, case, variant, dtype):
    shape, axis = case
    axes = normalize_axis(axis, len(shape))
    for nan in (False, True):
        X = memory_variant(rng, shape, dtype, variant, nan)
        X_before = X.copy()
        weight_cases = [None] if 0 in axes else [None, make_weights(rng, shape[0])]
        for sw in weight_cases:
            grid = None if sw is None else naive.sample_weight_grid(sw, shape)
            ref = naive.moments(X, axis, grid)
            got = _moments.moments(Layout(X, axes), sw)
            assert isinstance(got, _moments.Moments)
            assert_moments_match(got, ref, magnitude(X))
            assert_allclose(got.var, ref[2], rtol=1e-10, atol=1e-12 * magnitude(X) ** 2)
        assert_array_equal(X, X_before)  # the input is never modified


@pytest.mark.parametrize("dtype", DTYPES)
def test_moments_wrapper_names_infinite_feature(rng, dtype):
    X = make_data(rng, (6, 4), dtype)
    X[2, 3] = -np.inf
    with pytest.raises(ValueError, match=r"infinity in feature 3\b"):
        _moments.moments(Layout(X, (1,)))
    with pytest.raises(ValueError, match=r"feature 3 \('d'\)"):
        _moments.moments(Layout(X, (1,)), None, np.array(list("abcd"), dtype=object))


def test_merge_wrapper(rng, blocks):
    A = make_data(rng, (17, 5), np.float64, nan=True)
    B = make_data(rng, (4, 5), np.float32, nan=True, offset=-50.0)
    a = _moments.moments(Layout(A, (1,)))
    b = _moments.moments(Layout(B, (1,)))
    merged = _moments.merge(a, b)
    assert isinstance(merged, _moments.Moments)
    whole = np.vstack([A, B.astype(np.float64)])
    assert_moments_match(merged, naive.moments(whole), magnitude(whole))
    ref = naive.merge(a, b)
    for g, r in zip(merged, ref, strict=True):
        assert_allclose(g, r, rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.3, 0.9, 1.0, None])
def test_ema_update_wrapper(rng, momentum):
    d = 6
    running_mean = rng.normal(size=d)
    running_var = rng.uniform(0.5, 2.0, size=d)
    seen = np.array([0.0, 0.0, 3.0, 5.0, 2.5, 7.0])
    running_mean[seen == 0] = 0.0
    running_var[seen == 0] = 1.0
    count, mean, m2 = random_moments(rng, d, empty_every=None)
    count[[1, 4]] = 0.0  # features with no value in the batch
    mean[[1, 4]] = 0.0
    m2[[1, 4]] = 0.0
    batch = _moments.Moments(count, mean, m2)
    inputs = [a.copy() for a in (running_mean, running_var, seen)]
    got_mean, got_var, got_seen = _moments.ema_update(
        running_mean, running_var, seen, batch, momentum
    )
    for before, after in zip(inputs, (running_mean, running_var, seen), strict=True):
        assert before.tobytes() == after.tobytes()  # inputs are not modified
    var = batch.var
    if momentum is None:
        # Exact pooling: the merge of the old and the new moments.
        old = (seen, running_mean, running_var * seen)
        r_seen, r_mean, r_m2 = naive.merge(old, (count, mean, m2))
        r_var = np.where(r_seen > 0, r_m2 / np.where(r_seen > 0, r_seen, 1), 1.0)
        r_var[(seen > 0) & (count == 0)] = running_var[(seen > 0) & (count == 0)]
    else:
        r_mean, r_var, r_seen = naive.ema_update(
            running_mean, running_var, seen, count, mean, var, momentum
        )
    assert_allclose(got_mean, r_mean, rtol=1e-14, atol=1e-15)
    assert_allclose(got_var, r_var, rtol=1e-13, atol=1e-15)
    assert_allclose(got_seen, r_seen, rtol=0, atol=0)
    # Spelled out: a never-seen feature takes the batch as it is, a feature
    # without values in the batch keeps its running statistics.
    assert got_mean[0] == mean[0] and got_var[0] == var[0]
    assert got_mean[1] == 0.0 and got_var[1] == 1.0
    assert got_mean[4] == running_mean[4] and got_var[4] == running_var[4]


@pytest.mark.skipif(not hasattr(cpu, "ema_update"), reason="no EMA kernel")
@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 1.0])
def test_ema_update_kernel(rng, momentum):
    d = 5
    running_mean = np.array([0.0, 1.5, -2.0, 0.0, 3.0])
    running_var = np.array([1.0, 0.5, 2.0, 1.0, 0.25])
    seen = np.array([0.0, 4.0, 2.0, 0.0, 9.0])
    count = np.array([3.0, 0.0, 6.0, 0.0, 2.5])
    mean = np.array([10.0, 0.0, 4.0, 0.0, -1.0])
    m2 = np.array([6.0, 0.0, 3.0, 0.0, 5.0])
    var = np.divide(m2, count, out=np.zeros(d), where=count > 0)
    got = cpu.ema_update(running_mean, running_var, seen, count, mean, m2, momentum)
    ref = naive.ema_update(running_mean, running_var, seen, count, mean, var, momentum)
    for g, r in zip(got, ref, strict=True):
        assert_allclose(g, r, rtol=1e-14, atol=0)
    # momentum < 0 is the kernel's code for exact pooling (momentum=None).
    got = cpu.ema_update(running_mean, running_var, seen, count, mean, m2, -1.0)
    r_seen, r_mean, r_m2 = naive.merge(
        (seen, running_mean, running_var * seen), (count, mean, m2)
    )
    has = r_seen > 0
    r_var = np.where(has, r_m2 / np.where(has, r_seen, 1.0), running_var)
    r_var[count == 0] = running_var[count == 0]
    assert_allclose(got[0], r_mean, rtol=1e-14, atol=0)
    assert_allclose(got[1], r_var, rtol=1e-14, atol=0)
    assert_allclose(got[2], r_seen, rtol=0, atol=0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_wrapper(rng, blocks, case, variant, dtype):
    shape, axis = case
    axes = normalize_axis(axis, len(shape))
    d = naive.n_features(shape, axis)
    X = memory_variant(rng, shape, dtype, variant, nan=True)
    X_before = X.copy()
    shift = rng.normal(100.0, 1.0, size=d)
    scale = rng.uniform(-2.0, 2.0, size=d)
    offset = rng.normal(size=d)
    out = _norm.affine(Layout(X, axes), shift, scale, offset)
    assert out.shape == X.shape
    assert out.dtype == dtype
    assert not np.shares_memory(out, X)
    assert_array_equal(X, X_before)
    assert_affine_match(out, X, shift, scale, offset, axis)
    if variant == "F" and len(axes) == 1 and not X.flags.c_contiguous:
        assert out.flags.f_contiguous  # Fortran in, Fortran out


@pytest.mark.parametrize("variant", ["C", "F"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_affine_wrapper_in_place(rng, blocks, case, variant):
    shape, axis = case
    axes = normalize_axis(axis, len(shape))
    d = naive.n_features(shape, axis)
    X = memory_variant(rng, shape, np.float64, variant, nan=True)
    X0 = X.copy()
    shift, scale, offset = np.full(d, 100.0), rng.uniform(0.5, 2.0, d), np.ones(d)
    layout = Layout(X, axes)
    out = _norm.affine(layout, shift, scale, offset, out=layout.x3)
    assert_affine_match(out, X0, shift, scale, offset, axis)
    if np.shares_memory(layout.x3, X):
        # The kernel view is X itself: X now holds the result.
        assert_array_equal(X, out)


def test_affine_wrapper_names_infinite_feature(rng, blocks):
    X = make_data(rng, (20, 3), np.float32)
    X[11, 1] = np.inf
    ones = np.ones(3)
    with pytest.raises(ValueError, match=r"infinity in feature 1 \('b'\)"):
        _norm.affine(Layout(X, (1,)), ones, ones, ones, None, ["a", "b", "c"])
    X4 = make_data(rng, (2, 3, 4, 5), np.float64)
    X4[1, 2, 0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"infinity in feature 2\b"):
        _norm.affine(Layout(X4, (1,)), ones, ones, ones)


# -- bit-identical for any thread count -----------------------------------------------

MOMENT_KERNELS = [
    "rows_moments",
    "rows_moments_masked",
    "segments_moments",
    "segments_moments_masked",
]
SPIED = [n for k in MOMENT_KERNELS for n in (k, f"{k}_serial")]


def _run_all_paths(seed):
    """Moments and affine outputs on every kernel path, as raw bytes.

    Sizes follow ``skbn._config`` so that every path is cut into several
    tasks with the shipped block sizes as with tiny ones.
    """
    rng = np.random.default_rng(seed)
    cfg = _config
    big = max(
        4 * cfg.MIN_TASK_ELEMENTS, 2 * getattr(cfg, "MIN_PARALLEL_ELEMENTS", 0), 4000
    )
    rows = make_data(rng, (big // 70 + 1, 70), np.float64)  # rows, many blocks
    fold = make_data(rng, (big // 3 + 1, 3), np.float32)  # fold path with a tail
    seg = make_data(rng, (8, 4, big // 32 + 1), np.float64)  # segments
    nan_rows = make_data(rng, (big // 9 + 1, 9), np.float32, nan=True)
    nan_seg = make_data(rng, (6, 3, big // 18 + 1), np.float32, nan=True)
    weights = make_weights(rng, nan_rows.shape[0])
    out = []
    for X, sw in [
        (rows, None),
        (fold, None),
        (np.asfortranarray(fold), None),
        (seg, None),
        (nan_rows, None),
        (nan_rows, weights),
        (nan_seg, None),
    ]:
        layout = Layout(X, (1,))
        m = _moments.moments(layout, sw)
        out.extend(a.tobytes() for a in m)
        d = m.mean.shape[0]
        y = _norm.affine(layout, m.mean, 1.0 / np.sqrt(m.var + 1e-5), np.ones(d))
        out.append(np.ascontiguousarray(y).tobytes())
    return out


def test_bit_identical_for_one_and_two_threads(restore_threads, blocks, monkeypatch):
    if restore_threads < 2:
        pytest.skip("Numba has a single thread here")
    # Record the task counts: with a single task the test would prove nothing.
    tasks = {name: [] for name in SPIED}

    def spying(kernel, name):
        def spy(*args):
            # n_tasks is the last int (an optional reference array may follow).
            tasks[name].append([a for a in args if isinstance(a, int)][-1])
            return kernel(*args)

        return spy

    for name in MOMENT_KERNELS:
        kernel = getattr(cpu, name)
        spy = spying(kernel, name)
        spy.serial = spying(kernel.serial, f"{name}_serial")
        monkeypatch.setattr(cpu, name, spy)
    numba.set_num_threads(1)
    one = _run_all_paths(7)
    numba.set_num_threads(2)
    two = _run_all_paths(7)
    for name in MOMENT_KERNELS:
        assert tasks[name] and max(tasks[name]) > 1, (name, tasks)
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        assert a == b


# -- sums in lanes: run lengths around the chunk sizes ----------------------------
#
# The sums along a run are taken in lanes of cpu.LANES values, four chunks
# (moments) or two (masked, gradients) per sweep, then one chunk at a time,
# then a scalar tail: every length below lands in a different mix of them.
LANE_RUNS = sorted(
    {1, 7, cpu.LANES - 1, cpu.LANES, cpu.LANES + 1, 2 * cpu.LANES + 3}
    | {4 * cpu.LANES - 1, 4 * cpu.LANES, 4 * cpu.LANES + 1, 9 * cpu.LANES + 5}
)


@pytest.mark.parametrize("inner", LANE_RUNS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lane_sums_at_chunk_boundaries(rng, inner, dtype):
    x = make_data(rng, (2, 3, inner), dtype)
    mag = magnitude(x)
    for kernel in twins("segments_moments"):
        got = kernel.values[0](x, 8192, 2)
        assert_moments_match(got, naive.moments(x, axis=1), mag)
    for kernel in twins("channels_moments"):
        x2 = x[0]
        assert_moments_match(kernel.values[0](x2, 8192), naive.moments(x2, 0), mag)
    # NaN in a chunk of a sweep, a single chunk or the tail: masked out with
    # weights, propagated without.
    for pos in {0, inner // 2, inner - 1}:
        xn = x.copy()
        xn[1, 2, pos] = np.nan
        w = rng.uniform(0.5, 2.0, size=(2, inner))
        for kernel in twins("segments_moments_masked"):
            for w2 in (w, np.broadcast_to(np.ones(1), (2, inner))):
                got = kernel.values[0](xn, w2, 8192, 2)
                ref = naive.moments(xn, 1, w2[:, None, :])
                assert_moments_match(got, ref, mag)
        for kernel in twins("channels_moments"):
            assert np.isnan(kernel.values[0](xn[1], 8192)[1][2])


@pytest.mark.parametrize("inner", LANE_RUNS)
def test_grad_lane_sums_at_chunk_boundaries(rng, inner):
    x = make_data(rng, (2, 3, inner), np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    mean = rng.normal(100.0, 1.0, size=3)
    x64 = x.astype(np.float64)
    dy64 = dy.astype(np.float64)
    s_ref = dy64.sum(axis=(0, 2))
    q_ref = (dy64 * (x64 - mean[None, :, None])).sum(axis=(0, 2))
    tol = 1e-9 * (np.abs(dy64) * (1.0 + np.abs(x64 - mean[None, :, None]))).sum()
    for kernel in (cpu.segments_grad_sums, cpu.segments_grad_sums.serial):
        s, q = kernel(x, dy, mean, 8192, 2)
        assert_allclose(s, s_ref, rtol=0, atol=tol)
        assert_allclose(q, q_ref, rtol=0, atol=tol)
    # Layer norm's view (N, 1, 1, features, 1): the sums run over the
    # features, scaled by gamma (the channels-last branch).
    x5 = x64.reshape(6, 1, 1, inner, 1)
    dy5 = dy64.reshape(6, 1, 1, inner, 1)
    m5 = x5.mean(axis=(1, 3, 4)).reshape(6, 1)
    rs = np.ones((6, 1))
    gamma = rng.uniform(0.5, 2.0, size=(1, inner))
    a, b, dg, db = cpu.groups_grad_sums(x5, dy5, m5, rs, gamma, 2)
    g = dy5[:, 0, 0, :, 0] * gamma[0]
    xc = x5[:, 0, 0, :, 0] - m5
    assert_allclose(a[:, 0], g.sum(axis=1), rtol=1e-12, atol=1e-9 * np.abs(g).sum())
    assert_allclose(
        b[:, 0], (g * xc).sum(axis=1), rtol=1e-12, atol=1e-9 * np.abs(g * xc).sum()
    )
    assert_allclose(db[0], dy5[:, 0, 0, :, 0].sum(axis=0), rtol=1e-12, atol=1e-9)
