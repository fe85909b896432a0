"""BatchNormalizer against tests/naive.py, StandardScaler and PyTorch."""

import warnings

import naive
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

from skbn import BatchNormalizer

# (shape, axis): 2-D per column, the fold path, channels-last, BatchNorm2d's
# axis=1 on (N, C, H, W), and several feature axes, adjacent or not.
AXIS_CASES = [
    ((50, 4), -1),
    ((1001, 3), -1),
    ((6, 5, 4, 3), -1),
    ((6, 3, 5, 4), 1),
    ((6, 3, 5, 4), (1, 2)),
    ((6, 3, 5, 4), (1, 3)),
]
DTYPES = [np.float32, np.float64]


def make_data(rng, shape, dtype=np.float64, offset=10.0):
    """Data with a different mean and spread for each entry along axis -1."""
    X = offset + rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape[-1])
    return X.astype(dtype)


def make_batches(rng, sizes, tail, dtype=np.float64, offset=10.0):
    return [make_data(rng, (n,) + tail, dtype, offset) for n in sizes]


def tol(dtype):
    """(rtol, atol) for outputs of order 1 in ``dtype``."""
    return (1e-5, 1e-5) if dtype == np.float32 else (1e-11, 1e-11)


def assert_stats(bn, mean, var, rtol=1e-12):
    assert bn.running_mean_.dtype == np.float64
    assert bn.running_var_.dtype == np.float64
    scale = np.max(np.abs(mean)) + 1.0
    assert_allclose(bn.running_mean_, mean, rtol=rtol, atol=rtol * scale)
    assert_allclose(bn.running_var_, var, rtol=rtol, atol=rtol * scale**2)


# -- fit and partial_fit ------------------------------------------------------------


@pytest.mark.parametrize("case", AXIS_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_takes_exact_statistics(rng, case, dtype):
    shape, axis = case
    X = make_data(rng, shape, dtype)
    bn = BatchNormalizer(axis=axis).fit(X)
    _, mean, var, _ = naive.moments(X, axis)
    assert_stats(bn, mean, var)
    d = naive.n_features(shape, axis)
    assert bn.n_features_in_ == d
    assert bn.n_samples_seen_ == shape[0]
    assert bn.n_batches_seen_ == 1
    assert_array_equal(bn.gamma_, np.ones(d))
    assert_array_equal(bn.beta_, np.zeros(d))


def test_fit_forgets_previous_batches(rng):
    A, B, X = make_batches(rng, [30, 20, 25], (4,))
    bn = BatchNormalizer().partial_fit(A).partial_fit(B)
    bn.fit(X)
    fresh = BatchNormalizer().fit(X)
    assert bn.running_mean_.tobytes() == fresh.running_mean_.tobytes()
    assert bn.running_var_.tobytes() == fresh.running_var_.tobytes()
    assert bn.n_batches_seen_ == 1
    assert bn.n_samples_seen_ == 25


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("case", [((4,), -1), ((3, 5, 4), 1)], ids=str)
def test_partial_fit_momentum_ema(rng, momentum, case):
    tail, axis = case
    batches = make_batches(rng, [17, 5, 40, 1, 9], tail)
    # Each batch has its own mean, so the update order matters.
    batches = [b + 3.0 * i for i, b in enumerate(batches)]
    bn = BatchNormalizer(momentum=momentum, axis=axis)
    for i, b in enumerate(batches):
        bn.partial_fit(b)
        mean, var = naive.running_stats(batches[: i + 1], momentum, axis)
        assert_stats(bn, mean, var)
        assert bn.n_batches_seen_ == i + 1
        assert bn.n_samples_seen_ == sum(len(x) for x in batches[: i + 1])


def test_first_batch_initializes_running_stats(rng):
    # No zero-initialization bias: after one batch, running = batch statistics.
    X = make_data(rng, (20, 3), offset=50.0)
    bn = BatchNormalizer(momentum=0.99).partial_fit(X)
    _, mean, var, _ = naive.moments(X)
    assert_stats(bn, mean, var)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_nan", [False, True])
def test_momentum_none_equals_standard_scaler(rng, weighted, with_nan):
    batches = make_batches(rng, [13, 1, 40, 7, 22], (5,), offset=1e3)
    if with_nan:
        for b in batches[::2]:
            b[rng.random(b.shape) < 0.2] = np.nan
    weights = [rng.uniform(0.0, 3.0, len(b)) if weighted else None for b in batches]
    if weighted:
        weights[1][:] = 2.5  # the 1-row batch must not be all-zero
    bn = BatchNormalizer(momentum=None)
    ss = StandardScaler()
    for b, w in zip(batches, weights, strict=True):
        bn.partial_fit(b, sample_weight=w)
        ss.partial_fit(b, sample_weight=w)
        assert_allclose(bn.running_mean_, ss.mean_, rtol=1e-12)
        assert_allclose(bn.running_var_, ss.var_, rtol=1e-10)
    mean, var = naive.running_stats(batches, None, -1, weights)
    assert_stats(bn, mean, var)


@pytest.mark.parametrize("case", AXIS_CASES, ids=str)
def test_momentum_none_equals_fit_on_concatenation(rng, case):
    shape, axis = case
    X = make_data(rng, shape)
    cuts = [0, 1, shape[0] // 3, shape[0] - 1, shape[0]]
    bn = BatchNormalizer(momentum=None, axis=axis)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        bn.partial_fit(X[lo:hi])
    full = BatchNormalizer(axis=axis).fit(X)
    assert_stats(bn, full.running_mean_, full.running_var_)
    assert bn.n_samples_seen_ == shape[0]
    assert bn.n_batches_seen_ == 4


def test_long_stream_does_not_drift(rng):
    # scikit-learn #5602: running sums overflow or drift on long streams;
    # merged moments stay exact to float64 rounding.
    batches = make_batches(rng, [64] * 300, (3,), np.float32, offset=1e4)
    bn = BatchNormalizer(momentum=None)
    for b in batches:
        bn.partial_fit(b)
    mean, var = naive.running_stats(batches, None)
    assert_stats(bn, mean, var, rtol=1e-11)


# -- transform, fit_transform, partial_fit_transform, inverse_transform -----------


@pytest.mark.parametrize("case", AXIS_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_transform_matches_naive(rng, case, dtype):
    shape, axis = case
    d = naive.n_features(shape, axis)
    gamma = rng.uniform(0.5, 2.0, d)
    beta = rng.normal(size=d)
    A, X = make_data(rng, shape, dtype), make_data(rng, shape, dtype)
    bn = BatchNormalizer(axis=axis, gamma=gamma, beta=beta, eps=1e-3).fit(A)
    Y = bn.transform(X)
    ref = naive.normalize(X, bn.running_mean_, bn.running_var_, gamma, beta, 1e-3, axis)
    assert Y.dtype == dtype
    assert Y.shape == X.shape
    assert_allclose(Y, ref, *tol(dtype))
    # fit_transform is fit then transform.
    Z = clone(bn).fit_transform(A)
    assert_array_equal(Z, bn.transform(A))


@pytest.mark.parametrize("case", AXIS_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_partial_fit_transform_normalizes_by_batch_stats(rng, case, dtype):
    shape, axis = case
    A, B = make_data(rng, shape, dtype), make_data(rng, shape, dtype, offset=-5.0)
    bn = BatchNormalizer(axis=axis, momentum=0.8)
    twin = BatchNormalizer(axis=axis, momentum=0.8)
    for batch in (A, B):
        Y = bn.partial_fit_transform(batch)
        twin.partial_fit(batch)
        _, mean, var, _ = naive.moments(batch, axis)
        assert Y.dtype == dtype
        assert_allclose(Y, naive.normalize(batch, mean, var, axis=axis), *tol(dtype))
        # ... and the running statistics are updated as partial_fit does.
        assert bn.running_mean_.tobytes() == twin.running_mean_.tobytes()
        assert bn.running_var_.tobytes() == twin.running_var_.tobytes()
    mean, var = naive.running_stats([A, B], 0.8, axis)
    assert_stats(bn, mean, var)


def test_partial_fit_transform_weighted(rng):
    X = make_data(rng, (30, 4))
    w = rng.uniform(0.0, 2.0, 30)
    Y = BatchNormalizer().partial_fit_transform(X, sample_weight=w)
    _, mean, var, _ = naive.moments(X, -1, naive.sample_weight_grid(w, X.shape))
    assert_allclose(Y, naive.normalize(X, mean, var), *tol(np.float64))


@pytest.mark.parametrize("case", AXIS_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_inverse_transform_round_trip(rng, case, dtype):
    shape, axis = case
    d = naive.n_features(shape, axis)
    gamma = rng.uniform(0.5, 2.0, d)
    beta = rng.normal(size=d)
    X = make_data(rng, shape, dtype, offset=100.0)
    bn = BatchNormalizer(axis=axis, gamma=gamma, beta=beta).fit(X)
    Y = bn.transform(X)
    back = bn.inverse_transform(Y)
    assert back.dtype == dtype
    assert back.shape == X.shape
    if dtype == np.float32:
        assert_allclose(back, X, rtol=1e-5, atol=1e-4)
    else:
        assert_allclose(back, X, rtol=1e-12, atol=1e-12)
    ref = naive.denormalize(
        Y, bn.running_mean_, bn.running_var_, gamma, beta, 1e-5, axis
    )
    assert_allclose(back, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)


# -- sample_weight ------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.9, None])
@pytest.mark.parametrize("case", [((5,), -1), ((3, 4, 2), 1)], ids=str)
def test_integer_weights_equal_repeated_rows(rng, momentum, case):
    tail, axis = case
    batches = make_batches(rng, [12, 7, 15], tail)
    weights = [rng.integers(0, 4, len(b)) for b in batches]
    for w in weights:
        w[0] = 2  # never all zero
    weighted = BatchNormalizer(momentum=momentum, axis=axis)
    repeated = BatchNormalizer(momentum=momentum, axis=axis)
    for b, w in zip(batches, weights, strict=True):
        Yw = weighted.partial_fit_transform(b, sample_weight=w)
        Yr = repeated.partial_fit_transform(np.repeat(b, w, axis=0))
        assert_stats(weighted, repeated.running_mean_, repeated.running_var_)
        # The normalized rows are the same (a row of weight k appears k times).
        assert_allclose(np.repeat(Yw, w, axis=0), Yr, rtol=1e-11, atol=1e-11)
    X, w = batches[0], weights[0]
    fw = BatchNormalizer(axis=axis).fit(X, sample_weight=w)
    fr = BatchNormalizer(axis=axis).fit(np.repeat(X, w, axis=0))
    assert_stats(fw, fr.running_mean_, fr.running_var_)
    assert_allclose(
        clone(fw).fit_transform(X, sample_weight=w), fw.transform(X), rtol=1e-15
    )


def test_sample_weight_matches_naive(rng):
    X = make_data(rng, (25, 2, 3))
    w = rng.uniform(0.0, 5.0, 25)
    w[::4] = 0.0
    bn = BatchNormalizer(axis=(1, 2)).fit(X, sample_weight=w)
    _, mean, var, _ = naive.moments(X, (1, 2), naive.sample_weight_grid(w, X.shape))
    assert_stats(bn, mean, var)


# -- NaN ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", AXIS_CASES, ids=str)
def test_nan_ignored_in_fit_and_kept_in_transform(rng, case):
    shape, axis = case
    X = make_data(rng, shape)
    X[rng.random(shape) < 0.1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        bn = BatchNormalizer(axis=axis).fit(X)
        Y = bn.transform(X)
    _, mean, var, _ = naive.moments(X, axis)
    assert_stats(bn, mean, var)
    assert_array_equal(np.isnan(Y), np.isnan(X))
    assert_allclose(Y, naive.normalize(X, mean, var, axis=axis), *tol(np.float64))


def test_feature_all_nan_in_a_batch(rng):
    first = make_data(rng, (10, 3))
    first[:, 1] = np.nan
    second = make_data(rng, (8, 3), offset=-20.0)
    third = make_data(rng, (6, 3), offset=40.0)
    third[:, 2] = np.nan
    bn = BatchNormalizer(momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        Y = bn.partial_fit_transform(first)
        # The feature never seen keeps PyTorch's initial values (0, 1) ...
        assert bn.running_mean_[1] == 0.0
        assert bn.running_var_[1] == 1.0
        assert np.isnan(Y[:, 1]).all()
        assert np.isfinite(Y[:, [0, 2]]).all()
        # ... and takes the statistics of its first batch as they are.
        bn.partial_fit(second)
        _, mean2, var2, _ = naive.moments(second)
        assert_allclose(bn.running_mean_[1], mean2[1], rtol=1e-13)
        assert_allclose(bn.running_var_[1], var2[1], rtol=1e-13)
        # A feature without values in a batch keeps its running statistics.
        before = bn.running_mean_[2], bn.running_var_[2]
        bn.partial_fit(third)
        assert (bn.running_mean_[2], bn.running_var_[2]) == before
        T = bn.transform(third)
    assert np.isnan(T[:, 2]).all() and np.isfinite(T[:, :2]).all()
    mean, var = naive.running_stats([first, second, third], 0.9)
    assert_stats(bn, mean, var)


def test_feature_all_nan_in_fit(rng):
    X = make_data(rng, (10, 3))
    X[:, 0] = np.nan
    for momentum in (0.9, None):
        bn = BatchNormalizer(momentum=momentum).fit(X)
        assert bn.running_mean_[0] == 0.0 and bn.running_var_[0] == 1.0
        assert (
            np.isfinite(bn.running_mean_).all() and np.isfinite(bn.running_var_).all()
        )


# -- dtypes and containers ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_dtype_is_preserved(rng, dtype):
    X = make_data(rng, (20, 3), dtype)
    bn = BatchNormalizer()
    assert bn.fit_transform(X).dtype == dtype
    assert bn.transform(X).dtype == dtype
    assert bn.inverse_transform(X).dtype == dtype
    assert bn.partial_fit_transform(X).dtype == dtype
    assert bn.running_mean_.dtype == np.float64
    assert bn.running_var_.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, bool])
def test_integer_input_is_cast_to_float64(rng, dtype):
    X = rng.integers(0, 50, size=(30, 4)).astype(dtype)
    bn = BatchNormalizer().fit(X)
    _, mean, var, _ = naive.moments(X.astype(np.float64))
    assert_stats(bn, mean, var)
    for Y in (bn.transform(X), bn.partial_fit_transform(X), bn.inverse_transform(X)):
        assert Y.dtype == np.float64
    assert_allclose(
        bn.transform(X), naive.normalize(X, bn.running_mean_, bn.running_var_)
    )


def test_set_output_pandas(rng):
    pd = pytest.importorskip("pandas")
    X = make_data(rng, (20, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    ref = BatchNormalizer().fit(X)
    bn = BatchNormalizer().set_output(transform="pandas")
    out = bn.fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["a", "b", "c"]
    assert_allclose(out.to_numpy(), ref.transform(X), rtol=1e-12)
    out = bn.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert_allclose(out.to_numpy(), ref.transform(X), rtol=1e-12)
    out = bn.partial_fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["a", "b", "c"]
    assert_allclose(out.to_numpy(), BatchNormalizer().fit_transform(X), rtol=1e-12)
    # From a plain array the columns get the generated names.
    out = BatchNormalizer().set_output(transform="pandas").fit_transform(X)
    assert list(out.columns) == ["x0", "x1", "x2"]


def test_set_output_polars(rng):
    pl = pytest.importorskip("polars")
    X = make_data(rng, (20, 3), np.float32)
    df = pl.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    ref = BatchNormalizer().fit(X)
    bn = BatchNormalizer().set_output(transform="polars")
    for out in (bn.fit_transform(df), bn.transform(df), bn.partial_fit_transform(df)):
        assert isinstance(out, pl.DataFrame)
        assert out.columns == ["a", "b", "c"]
        assert out.shape == (20, 3)
    out = bn.transform(df)
    assert_allclose(out.to_numpy(), ref.transform(X), rtol=1e-6, atol=1e-6)


def test_get_feature_names_out(rng):
    pd = pytest.importorskip("pandas")
    X = make_data(rng, (10, 3))
    bn = BatchNormalizer().fit(X)
    assert list(bn.get_feature_names_out()) == ["x0", "x1", "x2"]
    assert not hasattr(bn, "feature_names_in_")
    bn4 = BatchNormalizer(axis=1).fit(make_data(rng, (2, 4, 3, 3)))
    assert list(bn4.get_feature_names_out()) == ["x0", "x1", "x2", "x3"]
    df = pd.DataFrame(X, columns=["u", "v", "w"])
    bn = BatchNormalizer().fit(df)
    assert list(bn.feature_names_in_) == ["u", "v", "w"]
    assert list(bn.get_feature_names_out()) == ["u", "v", "w"]
    assert_allclose(bn.transform(df), BatchNormalizer().fit(X).transform(X))
    # Refitting on an array forgets the names.
    bn.fit(X)
    assert not hasattr(bn, "feature_names_in_")


# -- PyTorch ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_axis1_matches_torch_batch_norm(rng, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    C = 3
    gamma = rng.uniform(0.5, 2.0, C)
    beta = rng.normal(size=C)
    batches = [make_data(rng, (8, C, 5, 4), dtype, offset=o) for o in (5.0, 7.0, 3.0)]
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    weight = torch.tensor(gamma, dtype=tdtype)
    bias = torch.tensor(beta, dtype=tdtype)
    # skbn's momentum is the weight of the old value: PyTorch's 0.1 is skbn's 0.9.
    bn = BatchNormalizer(axis=1, momentum=0.9, gamma=gamma, beta=beta)
    rm = torch.zeros(C, dtype=torch.float64)
    rv = torch.ones(C, dtype=torch.float64)
    rtol, atol = (1e-5, 1e-5) if dtype == np.float32 else (1e-12, 1e-12)
    for i, x in enumerate(batches):
        y = bn.partial_fit_transform(x)
        t = torch.from_numpy(x.copy())
        # Training mode: normalized by the batch's own (biased) statistics.
        yt = F.batch_norm(t, None, None, weight, bias, training=True, eps=1e-5)
        # Running statistics, tracked in float64.  skbn's first batch
        # initializes them, which is PyTorch with momentum 1 for that batch.
        momentum = 1.0 if i == 0 else 0.1
        F.batch_norm(t.double(), rm, rv, training=True, momentum=momentum)
        assert y.dtype == dtype
        assert_allclose(y, yt.numpy(), rtol=rtol, atol=atol)
        assert_allclose(bn.running_mean_, rm.numpy(), rtol=1e-12)
        # PyTorch stores the unbiased running variance.
        n = x.size // C
        assert_allclose(bn.running_var_, rv.numpy() * (n - 1) / n, rtol=1e-12)
    # Inference mode: PyTorch's eval with skbn's statistics.
    x = batches[0]
    yt = F.batch_norm(
        torch.from_numpy(x.copy()),
        torch.tensor(bn.running_mean_, dtype=tdtype),
        torch.tensor(bn.running_var_, dtype=tdtype),
        weight,
        bias,
        training=False,
        eps=1e-5,
    )
    assert_allclose(bn.transform(x), yt.numpy(), rtol=rtol, atol=atol)


# -- memory layouts and copy ----------------------------------------------------------


@pytest.mark.parametrize("case", AXIS_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fortran_order_gives_same_numbers(rng, case, dtype):
    shape, axis = case
    X = make_data(rng, shape, dtype)
    XF = np.asfortranarray(X)
    c = BatchNormalizer(axis=axis, momentum=0.5)
    f = BatchNormalizer(axis=axis, momentum=0.5)
    yc, yf = c.partial_fit_transform(X), f.partial_fit_transform(XF)
    rtol, atol = tol(dtype)
    assert_allclose(yf, yc, rtol=rtol, atol=atol)
    assert_stats(f, c.running_mean_, c.running_var_)
    c.partial_fit(X[::-1].copy())
    f.partial_fit(np.asfortranarray(X[::-1]))
    assert_stats(f, c.running_mean_, c.running_var_)
    assert_allclose(f.transform(XF), c.transform(X), rtol=rtol, atol=atol)
    assert_allclose(f.inverse_transform(XF), c.inverse_transform(X), rtol=1e-6)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_copy_false_writes_in_place(rng, order, dtype):
    X = np.asarray(make_data(rng, (40, 3), dtype), order=order)
    bn = BatchNormalizer().fit(X)
    expected = bn.transform(X)
    X_in = X.copy(order="K")
    out = bn.transform(X_in, copy=False)
    assert np.shares_memory(out, X_in)
    assert_array_equal(X_in, expected)
    assert_array_equal(out, expected)
    # copy=False as a parameter, undone by inverse_transform in place.
    bn.set_params(copy=False)
    back = bn.inverse_transform(X_in)
    assert np.shares_memory(back, X_in)
    assert_allclose(X_in, X, *tol(dtype))
    # copy=True (the default) never touches the input.
    bn.set_params(copy=True)
    X_in = X.copy(order="K")
    bn.transform(X_in)
    assert_array_equal(X_in, X)
    X_in = X.copy(order="K")
    bn.set_params(copy=False).transform(X_in, copy=True)
    assert_array_equal(X_in, X)


def test_copy_false_on_read_only_or_integer_input_leaves_it(rng):
    X = make_data(rng, (20, 3))
    bn = BatchNormalizer(copy=False).fit(X)
    expected = BatchNormalizer().fit(X).transform(X)
    ro = X.copy()
    ro.setflags(write=False)
    assert_allclose(bn.transform(ro), expected, rtol=1e-12)
    assert_array_equal(ro, X)
    Xi = rng.integers(0, 9, size=(20, 3))
    Xi0 = Xi.copy()
    out = bn.transform(Xi)
    assert out.dtype == np.float64
    assert_array_equal(Xi, Xi0)


# -- constant features ------------------------------------------------------------


def _constant_case(rng, name, dtype, c):
    """(fit input, fit kwargs, axis, constant feature mask for the output)."""
    if name == "nd_axis1":
        X = make_data(rng, (4, 3, 5, 2), dtype)
        X[:, 1] = c
        mask = np.zeros(X.shape, dtype=bool)
        mask[:, 1] = True
        return X, {}, 1, mask
    n = 1001 if name == "fold" else 37
    X = make_data(rng, (n, 3), dtype)
    X[:, 0] = c
    mask = np.zeros(X.shape, dtype=bool)
    mask[:, 0] = True
    kwargs = {}
    if name == "weighted":
        kwargs["sample_weight"] = rng.uniform(0.1, 3.0, n)
    if name == "nan_elsewhere":
        X[3, 2] = np.nan
    if name == "nan_in_constant":
        X[3, 0] = np.nan
        mask[3, 0] = False
    return X, kwargs, -1, mask


CONSTANT_CASES = [
    "dense",
    "fold",
    "nd_axis1",
    "weighted",
    "nan_elsewhere",
    "nan_in_constant",
]


@pytest.mark.parametrize("name", CONSTANT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1e3, 0.1, -7.3], ids=["1e3", "0.1", "-7.3"])
def test_constant_feature_gives_exactly_beta(rng, name, dtype, c):
    # PyTorch #5410: a constant channel far from zero must not normalize to ±1
    # (E[x²] - E[x]² cancellation); the spec asks for exactly beta, no NaN.
    X, kwargs, axis, mask = _constant_case(rng, name, dtype, c)
    d = naive.n_features(X.shape, axis)
    beta = np.linspace(-1.0, 1.0, d)
    bn = BatchNormalizer(axis=axis, beta=beta)
    Y_train = bn.partial_fit_transform(X, **kwargs)
    Y = bn.transform(X)
    beta_full = np.broadcast_to(naive.per_feature(beta, X.shape, axis), X.shape)
    const_feature = 1 if axis == 1 else 0
    assert bn.running_var_[const_feature] == 0.0
    for out in (Y_train, Y):
        assert not np.isnan(out[~np.isnan(X)]).any()
        assert_array_equal(out[mask], beta_full[mask].astype(dtype))


def test_constant_1e3_float32_fit_transform():
    X = np.full((1000, 4), 1e3, dtype=np.float32)
    Y = BatchNormalizer(beta=0.5).fit_transform(X)
    assert Y.dtype == np.float32
    assert_array_equal(Y, np.float32(0.5))


# -- accuracy --------------------------------------------------------------------------


def test_float32_variance_accuracy_far_from_zero():
    # The claim: float32 data far from zero gets a variance exact to float64
    # rounding (scikit-learn #12333: float32 accumulation).  For this array,
    # np.var(X, axis=0) computed in float32 is off by a factor of ~35
    # (relative error ~3.5e1), and float32 E[x^2] - E[x]^2 even comes out
    # negative (~ -2.5e4); skbn's error is ~3e-14.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 8), dtype=np.float32)
    X *= np.float32(1.5)
    X += np.float32(1e3)
    X64 = X.astype(np.float64)
    ref = ((X64 - X64.mean(axis=0)) ** 2).mean(axis=0)  # two-pass in float64
    bn = BatchNormalizer().fit(X)
    rel = np.abs(bn.running_var_ - ref) / ref
    assert rel.max() <= 1e-6
    rel_mean = np.abs(bn.running_mean_ - X64.mean(axis=0)) / 1e3
    assert rel_mean.max() <= 1e-12
    # The test is discriminating: float32 arithmetic is far off here.
    rel_np = np.abs(np.var(X, axis=0).astype(np.float64) - ref) / ref
    assert rel_np.max() > 1e-3


# -- center, scale, gamma, beta -------------------------------------------------------


def test_center_false_and_scale_false(rng):
    X = make_data(rng, (30, 3))
    gamma, beta = np.array([2.0, 3.0, 4.0]), np.array([1.0, -1.0, 5.0])
    _, mean, var, _ = naive.moments(X)
    bn = BatchNormalizer(center=False, gamma=gamma, beta=beta).fit(X)
    assert_array_equal(bn.beta_, 0.0)
    assert_allclose(bn.transform(X), naive.normalize(X, mean, var, gamma, 0.0))
    bn = BatchNormalizer(scale=False, gamma=gamma, beta=beta).fit(X)
    assert_array_equal(bn.gamma_, 1.0)
    assert_allclose(bn.transform(X), naive.normalize(X, mean, var, 1.0, beta))
    bn = BatchNormalizer(center=False, scale=False, gamma=gamma, beta=beta).fit(X)
    Y = bn.transform(X)
    assert_allclose(Y, naive.normalize(X, mean, var))
    assert_allclose(Y.mean(axis=0), 0.0, atol=1e-12)
    assert_allclose(bn.inverse_transform(Y), X, rtol=1e-12)


def test_gamma_beta_arrays(rng):
    X = make_data(rng, (3, 4, 5, 2))
    gamma = np.arange(1.0, 5.0)
    beta = np.array([0.5, -0.5, 2.0, 0.0])
    bn = BatchNormalizer(axis=1, gamma=gamma, beta=beta).fit(X)
    assert_array_equal(bn.gamma_, gamma)
    assert_array_equal(bn.beta_, beta)
    assert not np.shares_memory(bn.gamma_, gamma)
    ref = naive.normalize(X, bn.running_mean_, bn.running_var_, gamma, beta, axis=1)
    assert_allclose(bn.transform(X), ref, rtol=1e-12, atol=1e-12)
    # Changing the parameter after fit does not change the fitted copy ...
    gamma[0] = 100.0
    assert bn.gamma_[0] == 1.0
    # ... but a training loop may update gamma_ and beta_.
    bn.gamma_ = bn.gamma_ * 2.0
    bn.beta_ = bn.beta_ + 1.0
    ref = naive.normalize(
        X, bn.running_mean_, bn.running_var_, bn.gamma_, bn.beta_, axis=1
    )
    assert_allclose(bn.transform(X), ref, rtol=1e-12, atol=1e-12)
    assert_allclose(bn.inverse_transform(bn.transform(X)), X, rtol=1e-12)
    # Several feature axes: one value per feature, flat in C order.
    bn = BatchNormalizer(axis=(1, 3), gamma=np.arange(1.0, 9.0)).fit(X)
    ref = naive.normalize(
        X, bn.running_mean_, bn.running_var_, np.arange(1.0, 9.0), axis=(1, 3)
    )
    assert_allclose(bn.transform(X), ref, rtol=1e-12, atol=1e-12)
