"""Outputs keep the input's memory order, as ``np.empty_like`` (NumPy's
``order="K"``) and PyTorch's ``memory_format`` do.

Values: the normalize step is element-wise, so in inference mode
(``transform``, ``inverse_transform``) every layout gives the bits of the
C-ordered input.  The statistics of a training step are computed as before
this rule: in C order for every layout but a Fortran-ordered array with one
feature axis, which the kernels read in place through its transpose (a
different summation order, so equal to rounding only); every other layout
gives the C-ordered input's bits in training mode too.
"""

import gc
import os
import weakref

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from skbn import (
    BatchNormalizer,
    GroupNormalizer,
    InstanceNormalizer,
    LayerNormalizer,
)
from skbn import functional as F
from skbn._core.views import normalize_axis


def permuted(X, perm):
    """``X``'s values, laid out in memory with the axes in ``perm`` order."""
    return np.ascontiguousarray(X.transpose(perm)).transpose(np.argsort(perm))


def variants(X):
    """The same values in several memory layouts."""
    out = {
        "C": X,
        "F": np.asfortranarray(X),
        "C[::2]": np.repeat(X, 2, axis=0)[::2],
        "F[::2]": np.asfortranarray(np.repeat(X, 2, axis=0))[::2],
    }
    if X.ndim == 4:
        # Channels-last memory seen as (N, C, H, W), and channels-first
        # memory seen as (N, H, W, C).
        out["channels-last"] = permuted(X, (0, 2, 3, 1))
        out["channels-first"] = permuted(X, (0, 3, 1, 2))
    if X.ndim == 3:
        out["(2, 0, 1)"] = permuted(X, (2, 0, 1))
    return out


def long_axes_order(a):
    """The axes of length > 1 from the slowest to the fastest in memory."""
    return [
        i
        for i in np.argsort([-abs(s) for s in a.strides], kind="stable")
        if a.shape[i] > 1
    ]


def assert_follows(out, X):
    """``out`` is laid out as ``np.empty_like(X)`` is."""
    assert out.shape == X.shape
    like = np.empty_like(X)
    assert long_axes_order(out) == long_axes_order(like)
    if min(X.shape) > 1:
        assert out.strides == like.strides
    assert out.flags.c_contiguous == like.flags.c_contiguous
    assert out.flags.f_contiguous == like.flags.f_contiguous


def stats_in_place(X, axis):
    """Whether the statistics of ``X`` are read through its transpose (the
    one layout whose training-mode bits may differ from C order's).  float16
    is read as ``X.astype(np.float64)``, which keeps ``X``'s order and makes
    a Fortran-ordered slice contiguous."""
    axes = normalize_axis(axis, X.ndim)
    if X.dtype == np.float16:
        X = X.astype(np.float64)
    return len(axes) == 1 and X.flags.f_contiguous and not X.flags.c_contiguous


def assert_values(got, want, exact):
    if exact:
        assert_array_equal(got, want)  # bit for bit (NaN where NaN)
    else:
        assert_allclose(got, want, rtol=1e-5, atol=1e-5)


CASES = [
    ((7, 5), -1),
    ((7, 5), 0),
    ((3, 4, 5), 1),
    ((3, 4, 5), (1, 2)),
    ((2, 3, 4, 5), 1),
    ((2, 3, 4, 5), -1),
    ((2, 3, 4, 5), (1, 2)),
    ((2, 3, 4, 5), (1, 3)),
]


def data(rng, shape, dtype=np.float64):
    X = (10.0 + 3.0 * rng.normal(size=shape)).astype(dtype)
    X.flat[::7] = np.nan
    return X


def check_estimator(X, Xv, axis):
    """Every output method on ``Xv`` against the same on the C-ordered ``X``."""
    exact = not stats_in_place(Xv, axis)
    ref, est = BatchNormalizer(axis=axis), BatchNormalizer(axis=axis)
    for method in ("partial_fit_transform", "partial_fit_transform", "fit_transform"):
        want, got = getattr(ref, method)(X), getattr(est, method)(Xv)
        assert_follows(got, Xv)
        assert_values(got, want, exact)
    if exact:
        assert_array_equal(est.running_var_, ref.running_var_)
    # Inference: element-wise, the same bits whatever the layout.
    est = BatchNormalizer(axis=axis).fit(X)
    for method in ("transform", "inverse_transform"):
        want, got = getattr(est, method)(X), getattr(est, method)(Xv)
        assert_follows(got, Xv)
        assert_array_equal(got, want)
    # Ghost batches take a C-ordered copy: the output still follows.
    if 0 not in normalize_axis(axis, X.ndim):
        ghost = BatchNormalizer(axis=axis, virtual_batch_size=1)
        got = ghost.partial_fit_transform(Xv)
        assert_follows(got, Xv)
        want = BatchNormalizer(axis=axis, virtual_batch_size=1).partial_fit_transform(X)
        assert_values(got, want, True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_batch_normalizer_follows_every_layout(rng, case, dtype):
    shape, axis = case
    X = data(rng, shape, dtype)
    for name, Xv in variants(X).items():
        assert_array_equal(Xv, X, err_msg=name)  # the same values
        check_estimator(X, Xv, axis)


@st.composite
def permuted_data(draw):
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    perm = draw(st.permutations(range(ndim)))
    n_axes = draw(st.integers(1, ndim - 1))
    axes = sorted(draw(st.permutations(range(ndim)))[:n_axes])
    axis = axes[0] if n_axes == 1 else tuple(axes)
    seed = draw(st.integers(0, 2**32 - 1))
    X = data(np.random.default_rng(seed), shape)
    return X, permuted(X, perm), axis


@settings(max_examples=40, deadline=None)
@given(case=permuted_data())
def test_batch_normalizer_follows_random_permutations(case):
    X, Xv, axis = case
    check_estimator(X, Xv, axis)


def test_copy_false_writes_into_channels_last_input(rng):
    X = data(rng, (2, 3, 4, 5))
    bn = BatchNormalizer(axis=1).fit(X)
    want = bn.transform(X)
    Xv = permuted(X, (0, 2, 3, 1))
    out = bn.transform(Xv, copy=False)
    assert np.shares_memory(out, Xv)
    assert_follows(out, Xv)
    assert_array_equal(Xv, want)
    assert_array_equal(out, want)


@pytest.mark.parametrize(
    "make, shape",
    [
        (LayerNormalizer, (6, 5)),
        (lambda: LayerNormalizer(axis=(1, 3)), (2, 3, 4, 5)),
        (lambda: GroupNormalizer(n_groups=2), (2, 4, 3, 5)),
        (InstanceNormalizer, (2, 3, 4, 5)),
        (lambda: InstanceNormalizer(axis=-1), (2, 3, 4)),
    ],
)
def test_per_sample_normalizers_follow(rng, make, shape):
    X = data(rng, shape)
    want = make().fit_transform(X)
    for Xv in variants(X).values():
        for got in (make().fit_transform(Xv), make().fit(X).transform(Xv)):
            assert_follows(got, Xv)
            assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_functional_batch_norm_follows(rng, case):
    shape, axis = case
    X = np.nan_to_num(data(rng, shape))
    dy = rng.normal(size=shape)
    d = naive.n_features(shape, axis)
    g, b = rng.uniform(0.5, 2.0, d), rng.normal(size=d)
    y, cache = F.batch_norm_forward(X, g, b, axis=axis)
    want = (y, *F.batch_norm_backward(dy, cache))
    for Xv in variants(X).values():
        exact = not stats_in_place(Xv, axis)
        y, cache = F.batch_norm_forward(Xv, g, b, axis=axis)
        assert_follows(y, Xv)
        assert_values(y, want[0], exact)
        # dy in another layout than x: dx follows x.
        dx, dgamma, dbeta = F.batch_norm_backward(np.asfortranarray(dy), cache)
        assert_follows(dx, Xv)
        assert_values(dx, want[1], exact)
        assert_values(dgamma, want[2], exact)
        assert_values(dbeta, want[3], exact)


@pytest.mark.parametrize(
    "fwd, bwd, shape, kw",
    [
        (F.layer_norm_forward, F.layer_norm_backward, (6, 5), {}),
        (F.layer_norm_forward, F.layer_norm_backward, (3, 4, 5), {"axis": (1,)}),
        (F.group_norm_forward, F.group_norm_backward, (2, 4, 3, 5), {"n_groups": 2}),
        (F.instance_norm_forward, F.instance_norm_backward, (2, 3, 4, 5), {}),
    ],
)
def test_functional_per_sample_follows(rng, fwd, bwd, shape, kw):
    X = np.nan_to_num(data(rng, shape))
    dy = rng.normal(size=shape)
    y, cache = fwd(X, None, 0.5, **kw)
    want = (y, bwd(dy, cache)[0])
    for Xv in variants(X).values():
        y, cache = fwd(Xv, None, 0.5, **kw)
        assert_follows(y, Xv)
        assert_array_equal(y, want[0])
        dx = bwd(dy, cache)[0]
        assert_follows(dx, Xv)
        assert_array_equal(dx, want[1])


def test_dask_blocks_unchanged(rng):
    da = pytest.importorskip("dask.array")
    X = data(rng, (40, 3))
    XF = np.asfortranarray(X)
    bn = BatchNormalizer().fit(X)
    got = bn.transform(da.from_array(XF, chunks=(15, 3))).compute()
    assert_array_equal(got, bn.transform(X))


@pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
    reason="runs under NUMBA_ENABLE_CUDASIM=1",
)
def test_cuda_with_host_data_follows(rng):
    # device="cuda" on host data copies it to the GPU in C order; the NumPy
    # result still comes back in the input's order.
    X = np.nan_to_num(data(rng, (2, 3, 4, 5)))
    want = BatchNormalizer(axis=1).fit(X)
    for Xv in variants(X).values():
        bn = BatchNormalizer(axis=1, device="cuda").fit(Xv)
        got = bn.transform(Xv)
        assert_follows(got, Xv)
        assert_allclose(got, want.transform(X), rtol=1e-12, atol=1e-12)
        got = BatchNormalizer(axis=1, device="cuda").partial_fit_transform(Xv)
        assert_follows(got, Xv)


@pytest.mark.parametrize("perm", [(0, 1, 2, 3), (0, 2, 3, 1), (3, 2, 1, 0)])
def test_no_reference_cycle_keeps_the_input_alive(rng, perm):
    # skbn transform maps a window of a file per batch: a cycle through the
    # layout kept each window mapped until the garbage collector ran, and a
    # file larger than the address space failed.
    bn = BatchNormalizer(axis=1).fit(data(rng, (2, 3, 4, 5)))
    gc.disable()
    try:
        for dtype in (np.float64, np.float16):
            X = permuted(data(rng, (2, 3, 4, 5), dtype), perm)
            alive = weakref.ref(X)
            bn.transform(X)
            bn.transform(X, copy=False)
            del X
            assert alive() is None
    finally:
        gc.enable()
