"""float16 in, float16 out: every result equals the float64 computation on
``x.astype(np.float64)`` rounded once to float16 (``astype``), bit for bit.

float16 values are exact in float64, so the statistics (accumulated in
float64, kept in float64) are those of the float64 input; only the final
rounding differs, and it must be NumPy's direct float64 -> float16 one, not
float64 -> float32 -> float16 (which rounds twice and differs for some
values, see ``test_double_rounding_is_avoided``).
"""

import os
import warnings

import naive
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skbn import (
    BatchNormalizer,
    GroupNormalizer,
    InstanceNormalizer,
    LayerNormalizer,
)
from skbn import functional as F

F16 = np.float16


def same(got, want):
    """Bit-for-bit equal float16 arrays (NaN where NaN)."""
    assert got.dtype == F16, got.dtype
    want = np.asarray(want)
    assert want.dtype == F16
    assert got.shape == want.shape
    assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def half(rng, shape, offset=0.0, spread=3.0, nan=False):
    X = (offset + spread * rng.normal(size=shape)).astype(F16)
    if nan:
        X[rng.random(shape) < 0.1] = np.nan
    return X


# (shape, axis, offset, nan): one row, odd sizes, N-D with axis tuples, NaN,
# large offsets (float16 is coarse there: spacing 8 at 1e4).
CASES = [
    ((1, 3), -1, 0.0, False),
    ((7, 5), -1, 0.0, False),
    ((33, 1), -1, 100.0, True),
    ((301, 17), -1, 1e4, False),
    ((4, 3, 5, 2), 1, -50.0, False),
    ((4, 3, 5, 2), (1, 3), 0.0, True),
    ((6, 2, 9), -1, 2000.0, True),
    ((9, 4), 0, 0.0, False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_batch_normalizer_matches_float64_rounded_once(rng, case):
    shape, axis, offset, nan = case
    X = half(rng, shape, offset, nan=nan)
    X[(slice(None),) + (0,) * (X.ndim - 1)] = X.flat[0]  # a constant-ish run
    X64 = X.astype(np.float64)
    params = dict(axis=axis, gamma=1.5, beta=0.25, momentum=0.5)
    a, b = BatchNormalizer(**params), BatchNormalizer(**params)
    same(a.partial_fit_transform(X), b.partial_fit_transform(X64).astype(F16))
    # Statistics: float64, the same bits as for the float64 input.
    assert a.running_mean_.dtype == np.float64
    assert_array_equal(a.running_mean_, b.running_mean_)
    assert_array_equal(a.running_var_, b.running_var_)
    X2 = half(rng, shape, offset + 1.0, nan=nan)
    same(
        a.partial_fit_transform(X2),
        b.partial_fit_transform(X2.astype(np.float64)).astype(F16),
    )
    same(a.transform(X), b.transform(X64).astype(F16))
    same(a.inverse_transform(X), b.inverse_transform(X64).astype(F16))
    same(a.fit_transform(X), b.fit_transform(X64).astype(F16))
    a.partial_fit(X2)
    b.partial_fit(X2.astype(np.float64))
    assert_array_equal(a.running_var_, b.running_var_)


def test_against_the_naive_formula(rng):
    # Independent of skbn's float64 path: within half an ulp of float16 plus
    # the float64 formula's own rounding, i.e. equal after rounding but for
    # values within a hair of a float16 midpoint (none in this data).
    X = half(rng, (200, 6), 30.0)
    y = BatchNormalizer().fit_transform(X)
    _, mean, var, _ = naive.moments(X.astype(np.float64))
    ref = naive.normalize(X.astype(np.float64), mean, var)
    assert_array_equal(y, ref.astype(F16))


def test_constant_feature_is_beta_and_one_row(rng):
    X = np.full((5, 2), 1234.0, F16)
    same(BatchNormalizer(beta=0.5).fit_transform(X), np.full((5, 2), 0.5, F16))
    one = half(rng, (1, 4))
    same(BatchNormalizer(beta=-2.0).fit_transform(one), np.full((1, 4), -2.0, F16))


@pytest.mark.parametrize("opts", [{"virtual_batch_size": 4}, {"renorm": (2.0, 1.0)}])
def test_ghost_batches_and_renorm(rng, opts):
    X = half(rng, (16, 3, 5), 10.0)
    X64 = X.astype(np.float64)
    a, b = BatchNormalizer(axis=1, **opts), BatchNormalizer(axis=1, **opts)
    for _ in range(2):
        same(a.partial_fit_transform(X), b.partial_fit_transform(X64).astype(F16))
    F_ordered = np.asfortranarray(X[..., 0])  # the transposed layout, in C order
    a, b = BatchNormalizer(**opts), BatchNormalizer(**opts)
    same(
        a.partial_fit_transform(F_ordered),
        b.partial_fit_transform(F_ordered.astype(np.float64)).astype(F16),
    )


def test_sample_weight(rng):
    X = half(rng, (40, 3), 5.0)
    w = rng.uniform(0, 2, 40)
    a = BatchNormalizer().fit(X, sample_weight=w)
    b = BatchNormalizer().fit(X.astype(np.float64), sample_weight=w)
    assert_array_equal(a.running_var_, b.running_var_)
    same(a.transform(X), b.transform(X.astype(np.float64)).astype(F16))


def test_double_rounding_is_avoided():
    # 1 + 2**-11 + 2**-40 rounds up to 1 + 2**-10 in float16 directly, but
    # float32 drops the 2**-40 and the tie then rounds to even, 1.0.
    v = 1.0 + 2.0**-11 + 2.0**-40
    assert np.float16(np.float32(v)) != np.float16(v)
    # (x - 0) * 1 + v with x = 0: the output is v rounded once.
    bn = BatchNormalizer(beta=v, momentum=None).fit(np.zeros((3, 1), F16))
    assert bn.transform(np.zeros((2, 1), F16)).tolist() == [[np.float16(v)]] * 2
    y, _ = F.batch_norm_forward(np.zeros((3, 1), F16), None, v)
    assert y.tolist() == [[np.float16(v)]] * 3


def test_overflow_is_inf_as_for_float32(rng):
    # A normalized value beyond float16's range (65504) becomes inf, as a
    # float32 one beyond 3.4e38 does; neither raises nor warns.
    X = half(rng, (20, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y16 = BatchNormalizer(beta=1e5).fit_transform(X)
        y32 = BatchNormalizer(beta=1e39).fit_transform(X.astype(np.float32))
        y, cache = F.batch_norm_forward(X, 1.0, 1e5)
        _, dgamma, dbeta = F.batch_norm_backward(np.full(X.shape, 6e4, F16), cache)
    assert np.isposinf(y16).all() and np.isposinf(y32).all() and np.isposinf(y).all()
    assert dbeta.dtype == F16 and np.isposinf(dbeta)


def test_dtype_kept_and_input_untouched_with_copy_false(rng):
    X = half(rng, (10, 3))
    before = X.copy()
    bn = BatchNormalizer().fit(X)
    out = bn.transform(X, copy=False)
    assert out.dtype == F16
    # float16 is computed in a float64 copy: copy=False cannot write in place.
    assert not np.shares_memory(out, X)
    assert_array_equal(X, before)


def test_other_containers_and_byte_orders(rng):
    X = half(rng, (12, 3), 7.0)
    want = BatchNormalizer().fit_transform(X)
    same(BatchNormalizer().fit_transform(X.astype(">f2")), want)
    pd = pytest.importorskip("pandas")
    got = BatchNormalizer().fit_transform(pd.DataFrame(X))
    same(np.asarray(got), want)


def test_tags_list_float16():
    for est in (BatchNormalizer(), LayerNormalizer(), InstanceNormalizer()):
        assert "float16" in est.__sklearn_tags__().transformer_tags.preserves_dtype


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: LayerNormalizer(gamma=2.0, beta=0.5), (5, 7)),
        (lambda: LayerNormalizer(axis=(1, 3)), (3, 4, 2, 5)),
        (lambda: GroupNormalizer(n_groups=2, beta=1.0), (3, 4, 5)),
        (lambda: InstanceNormalizer(axis=-1), (2, 6, 3)),
    ],
)
def test_per_sample_normalizers(rng, make, shape):
    X = half(rng, shape, 500.0, nan=True)
    same(
        make().fit_transform(X), make().fit_transform(X.astype(np.float64)).astype(F16)
    )
    same(make().transform(X), make().transform(X.astype(np.float64)).astype(F16))


def _grads_same(got, want):
    for g, w in zip(got, want, strict=True):
        same(np.asarray(g), np.asarray(w).astype(F16))


@pytest.mark.parametrize(
    "shape, axis, opts",
    [
        ((9, 4), -1, {}),
        ((1, 3), -1, {"training": False}),
        ((4, 3, 5, 2), 1, {}),
        ((4, 3, 5, 2), (1, 3), {}),
        ((8, 3), -1, {"virtual_batch_size": 4}),
    ],
)
def test_functional_batch_norm(rng, shape, axis, opts):
    x = half(rng, shape, 20.0)
    dy = half(rng, shape, 0.0, 1.0)
    d = naive.n_features(shape, axis)
    g, b = rng.uniform(0.5, 2, d), rng.normal(size=d)
    run = {}
    if opts.get("training") is False:
        run = {"running_mean": np.full(d, 20.0), "running_var": np.full(d, 9.0)}
    y, cache = F.batch_norm_forward(x, g, b, axis=axis, **opts, **dict(run))
    run64 = {k: v.copy() for k, v in run.items()}
    y64, cache64 = F.batch_norm_forward(
        x.astype(np.float64), g, b, axis=axis, **opts, **run64
    )
    same(y, y64.astype(F16))
    _grads_same(
        F.batch_norm_backward(dy, cache),
        F.batch_norm_backward(dy.astype(np.float64), cache64),
    )


def test_functional_running_statistics_stay_float64(rng):
    x = half(rng, (10, 2), 3.0)
    rm, rv = np.zeros(2), np.ones(2)
    rm64, rv64 = rm.copy(), rv.copy()
    F.batch_norm_forward(x, None, None, running_mean=rm, running_var=rv)
    F.batch_norm_forward(
        x.astype(np.float64), None, None, running_mean=rm64, running_var=rv64
    )
    assert_array_equal(rm, rm64)
    assert_array_equal(rv, rv64)


@pytest.mark.parametrize(
    "fwd, bwd, shape, kw",
    [
        (F.layer_norm_forward, F.layer_norm_backward, (6, 5), {}),
        (F.layer_norm_forward, F.layer_norm_backward, (3, 4, 5), {"axis": (1,)}),
        (F.group_norm_forward, F.group_norm_backward, (3, 4, 5), {"n_groups": 2}),
        (F.instance_norm_forward, F.instance_norm_backward, (3, 4, 5), {}),
    ],
)
def test_functional_per_sample(rng, fwd, bwd, shape, kw):
    x = half(rng, shape, -300.0)
    dy = half(rng, shape, 0.0, 1.0)
    n = shape[-1] if fwd is F.layer_norm_forward and not kw else shape[1]
    g = rng.uniform(0.5, 2, n) if fwd is not F.layer_norm_forward or not kw else None
    y, cache = fwd(x, g, 0.5, **kw)
    y64, cache64 = fwd(x.astype(np.float64), g, 0.5, **kw)
    same(y, y64.astype(F16))
    got = bwd(dy, cache)
    want = bwd(dy.astype(np.float64), cache64)
    same(got[0], want[0].astype(F16))
    for a, b in zip(got[1:], want[1:], strict=True):
        if b is None:
            assert a is None
        else:
            same(np.asarray(a), np.asarray(b).astype(F16))


def test_dy_is_cast_to_the_input_dtype(rng):
    # As for float32 today: dy of another dtype is cast to x's dtype first.
    x = half(rng, (6, 3))
    dy = rng.normal(size=x.shape)
    _, cache = F.batch_norm_forward(x, 1.0, 0.0)
    got = F.batch_norm_backward(dy, cache)[0]
    _, cache = F.batch_norm_forward(x, 1.0, 0.0)
    same(got, F.batch_norm_backward(dy.astype(F16), cache)[0])


def test_dask(rng):
    da = pytest.importorskip("dask.array")
    X = half(rng, (60, 4), 40.0, nan=True)
    lazy = da.from_array(X, chunks=(17, 4))
    a = BatchNormalizer().fit(lazy)
    b = BatchNormalizer().fit(X)
    np.testing.assert_allclose(a.running_var_, b.running_var_, rtol=1e-13)
    out = a.transform(lazy)
    assert out.dtype == F16
    same(out.compute(), b.transform(X))
    per = LayerNormalizer().fit_transform(lazy)
    assert per.dtype == F16
    same(per.compute(), LayerNormalizer().fit_transform(X))


needs_cuda = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
    reason="runs under NUMBA_ENABLE_CUDASIM=1",
)


@needs_cuda
def test_cuda_refuses_float16_clearly(rng):
    from numba import cuda

    X = half(rng, (8, 3))
    with pytest.raises(TypeError, match="float16.*CUDA path"):
        BatchNormalizer(device="cuda").fit(X)
    with pytest.raises(TypeError, match="X has dtype float16"):
        BatchNormalizer().fit(cuda.to_device(X))
    with pytest.raises(TypeError, match="x has dtype float16"):
        F.batch_norm_forward(cuda.to_device(X), None, None)
