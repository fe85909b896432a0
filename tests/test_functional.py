"""skbn.functional: every forward and backward pass against torch autograd,
the staged references of tests/naive.py and central finite differences.

Cases name a shape and an ``axis`` (feature axes for batch norm, normalized
axes for layer norm, channel axis for group and instance norm) chosen to run
every layout the kernels have: rows, rows folded for few features, segments,
a transposed copy for non-adjacent axes, channels-first and channels-last.
"""

import math

import naive
import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbn import BatchNormalizer
from skbn import functional as F

EPS = 1e-5

# name: (shape, axis, virtual_batch_size)
BN_CASES = {
    "rows": ((64, 5), -1, 16),
    "rows-folded": ((300, 3), -1, 60),
    "rows-wide": ((40, 70), 1, 8),
    "nchw": ((4, 3, 5, 6), 1, 2),
    "nhwc": ((4, 5, 6, 3), -1, 2),
    "two-axes": ((4, 3, 5, 6), (1, 3), 2),
    "axis0": ((6, 40), 0, None),
}
BN_MODES = ["train", "eval", "renorm", "ghost"]

# name: (kind, shape, axis, n_groups)
PS_CASES = {
    "layer-2d": ("layer", (6, 7), -1, None),
    "layer-3d-last": ("layer", (4, 3, 5), -1, None),
    "layer-3d-two": ("layer", (4, 3, 5), (1, 2), None),
    "layer-middle": ("layer", (4, 3, 5), 1, None),
    "layer-apart": ("layer", (3, 4, 5, 2), (1, 3), None),
    "layer-long": ("layer", (3, 300), -1, None),
    "group-nchw-1": ("group", (3, 6, 4, 5), 1, 1),
    "group-nchw-2": ("group", (3, 6, 4, 5), 1, 2),
    "group-nchw-6": ("group", (3, 6, 4, 5), 1, 6),
    "group-nhwc": ("group", (3, 4, 5, 6), -1, 3),
    "group-middle": ("group", (2, 4, 6, 3), 2, 2),
    "group-2d": ("group", (5, 6), 1, 3),
    "instance-ncl": ("instance", (3, 4, 7), 1, None),
    "instance-nhwc": ("instance", (2, 5, 6, 4), -1, None),
}


# -- helpers --


def feature_shape(shape, axis):
    return tuple(shape[a] for a in naive.feature_axes(axis, len(shape)))


def rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300))


def bn_setup(rng, name, mode, dtype=np.float64):
    """Inputs and keyword arguments of one batch-norm case.

    For ``renorm`` the running statistics are far from the batch ones in
    some features and close in others, so that both the clipped and the free
    branch of ``r`` and ``d`` run.
    """
    shape, axis, vbs = BN_CASES[name]
    x = (rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape) + 4.0).astype(dtype)
    fshape = feature_shape(shape, axis)
    gamma = rng.uniform(0.5, 2.0, size=fshape)
    beta = rng.normal(size=fshape)
    dy = rng.normal(size=shape).astype(dtype)
    kw = {"axis": axis, "eps": EPS}
    d = math.prod(fshape)
    _, bmean, bvar, _ = naive.moments(x, axis)
    if mode == "eval":
        kw.update(
            training=False,
            running_mean=bmean + rng.normal(size=d),
            running_var=bvar * rng.uniform(0.5, 2.0, size=d),
        )
    elif mode == "renorm":
        far = rng.random(d) < 0.5
        kw.update(
            renorm=(1.5, 0.5),
            running_mean=bmean + np.where(far, 3.0, 0.05) * np.sqrt(bvar),
            running_var=bvar * np.where(far, 4.0, 1.1),
        )
    elif mode == "ghost":
        if vbs is None:
            pytest.skip("axis 0 is a feature axis: no ghost batches")
        kw["virtual_batch_size"] = vbs
    return x, gamma, beta, dy, kw


def bn_reference(x, gamma, beta, dy, kw):
    """tests/naive.py's forward and backward for a batch-norm case."""
    axis = kw["axis"]
    vbs = kw.get("virtual_batch_size")
    stat, param = naive.norm_index(x.shape, "batch", axis, virtual_batch_size=vbs)
    training = kw.get("training", True)
    stats = r = d = None
    if not training:
        stats = (kw["running_mean"], kw["running_var"])
    elif "renorm" in kw:
        _, bmean, bvar, _ = naive.moments(x, axis)
        r, d = naive.renorm_factors(
            bmean, bvar, kw["running_mean"], kw["running_var"], EPS, *kw["renorm"]
        )
    y, _, _ = naive.norm_forward(
        x, stat, param, gamma.ravel(), beta.ravel(), EPS, stats, r, d
    )
    grads = naive.norm_backward(
        x, dy, stat, param, gamma.ravel(), EPS, training, stats, r, d
    )
    return y, grads


def copy_kw(kw):
    """Fresh copies of the running statistics (the forward updates them)."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


def ps_forward(kind, x, gamma, beta, axis, n_groups):
    if kind == "layer":
        return F.layer_norm_forward(x, gamma, beta, eps=EPS, axis=axis)
    if kind == "group":
        return F.group_norm_forward(
            x, gamma, beta, eps=EPS, axis=axis, n_groups=n_groups
        )
    return F.instance_norm_forward(x, gamma, beta, eps=EPS, axis=axis)


def ps_backward(kind, dy, cache):
    return getattr(F, f"{kind}_norm_backward")(dy, cache)


def ps_setup(rng, name, dtype=np.float64):
    kind, shape, axis, n_groups = PS_CASES[name]
    x = (rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape) - 2.0).astype(dtype)
    if kind == "layer":
        pshape = feature_shape(shape, axis)
    else:
        pshape = (shape[axis],)
    gamma = rng.uniform(0.5, 2.0, size=pshape)
    beta = rng.normal(size=pshape)
    dy = rng.normal(size=shape).astype(dtype)
    return kind, x, gamma, beta, dy, axis, n_groups


def ps_reference(kind, x, gamma, beta, dy, axis, n_groups):
    stat, param = naive.norm_index(x.shape, kind, axis, n_groups)
    y, _, _ = naive.norm_forward(x, stat, param, gamma.ravel(), beta.ravel(), EPS)
    return y, naive.norm_backward(x, dy, stat, param, gamma.ravel(), EPS)


# -- torch --


def torch_bn(torch, x, gamma, beta, kw):
    """Batch norm in torch autograd: F.batch_norm on a (rows, features) view."""
    tf = torch.nn.functional
    axes = naive.feature_axes(kw["axis"], x.ndim)
    other = [a for a in range(x.ndim) if a not in axes]
    perm = other + list(axes)
    inv = list(np.argsort(perm))
    d = math.prod(x.shape[a] for a in axes)
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma.ravel(), requires_grad=True)
    tb = torch.tensor(beta.ravel(), requires_grad=True)
    vbs = kw.get("virtual_batch_size")
    chunks = tx.split(vbs, dim=0) if vbs else [tx]
    outs = []
    for c in chunks:
        moved = c.permute(perm)
        c2 = moved.reshape(-1, d)
        if not kw.get("training", True):
            rm = torch.tensor(kw["running_mean"])
            rv = torch.tensor(kw["running_var"])
            y2 = tf.batch_norm(c2, rm, rv, tg, tb, training=False, eps=EPS)
        elif "renorm" in kw:
            r_max, d_max = kw["renorm"]
            mu = c2.mean(0)
            sig = torch.sqrt(c2.var(0, unbiased=False) + EPS)
            sig_run = torch.sqrt(torch.tensor(kw["running_var"]) + EPS)
            # r and d are constants for the gradient (Ioffe 2017).
            r = torch.clamp(sig / sig_run, 1 / r_max, r_max).detach()
            dd = (mu - torch.tensor(kw["running_mean"])) / sig_run
            dd = torch.clamp(dd, -d_max, d_max).detach()
            y2 = tg * ((c2 - mu) / sig * r + dd) + tb
        else:
            y2 = tf.batch_norm(c2, None, None, tg, tb, training=True, eps=EPS)
        outs.append(y2.reshape(moved.shape).permute(inv))
    return torch.cat(outs, 0), (tx, tg, tb)


def torch_ps(torch, kind, x, gamma, beta, axis, n_groups):
    tf = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    if kind == "layer":
        axes = naive.feature_axes(axis, x.ndim)
        other = [a for a in range(x.ndim) if a not in axes]
        perm = other + list(axes)
        moved = tx.permute(perm)
        y = tf.layer_norm(moved, tuple(x.shape[a] for a in axes), tg, tb, EPS)
        y = y.permute(list(np.argsort(perm)))
    else:
        moved = tx.movedim(axis, 1)
        if kind == "group":
            y = tf.group_norm(moved, n_groups, tg, tb, EPS)
        else:
            y = tf.instance_norm(moved, weight=tg, bias=tb, eps=EPS)
        y = y.movedim(1, axis)
    return y, (tx, tg, tb)


@pytest.mark.parametrize("mode", BN_MODES)
@pytest.mark.parametrize("name", BN_CASES)
def test_batch_norm_matches_torch_autograd(rng, name, mode):
    torch = pytest.importorskip("torch")
    x, gamma, beta, dy, kw = bn_setup(rng, name, mode)
    y, cache = F.batch_norm_forward(x, gamma, beta, **copy_kw(kw))
    dx, dgamma, dbeta = F.batch_norm_backward(dy, cache)
    ty, leaves = torch_bn(torch, x, gamma, beta, kw)
    ty.backward(torch.tensor(dy))
    assert rel_err(y, ty.detach().numpy()) < 1e-10
    for got, leaf in zip((dx, dgamma, dbeta), leaves, strict=True):
        assert rel_err(got.ravel(), leaf.grad.numpy().ravel()) < 1e-10


@pytest.mark.parametrize("name", PS_CASES)
def test_per_sample_matches_torch_autograd(rng, name):
    torch = pytest.importorskip("torch")
    kind, x, gamma, beta, dy, axis, n_groups = ps_setup(rng, name)
    if kind == "instance" and x.ndim < 3:
        pytest.skip("torch's instance_norm needs a spatial axis")
    y, cache = ps_forward(kind, x, gamma, beta, axis, n_groups)
    grads = ps_backward(kind, dy, cache)
    ty, leaves = torch_ps(torch, kind, x, gamma, beta, axis, n_groups)
    ty.backward(torch.tensor(dy))
    assert rel_err(y, ty.detach().numpy()) < 1e-10
    for got, leaf in zip(grads, leaves, strict=True):
        assert got.shape == leaf.shape
        assert rel_err(got, leaf.grad.numpy()) < 1e-10


# -- the naive references --


@pytest.mark.parametrize("mode", BN_MODES)
@pytest.mark.parametrize("name", BN_CASES)
def test_batch_norm_matches_naive(rng, blocks, name, mode):
    x, gamma, beta, dy, kw = bn_setup(rng, name, mode)
    y, cache = F.batch_norm_forward(x, gamma, beta, **copy_kw(kw))
    grads = F.batch_norm_backward(dy, cache)
    y_ref, grads_ref = bn_reference(x, gamma, beta, dy, kw)
    assert rel_err(y, y_ref) < 1e-12
    for got, ref in zip(grads, grads_ref, strict=True):
        assert got.shape == gamma.shape or got.shape == x.shape
        assert rel_err(got.ravel(), ref.ravel()) < 1e-11


@pytest.mark.parametrize("name", PS_CASES)
def test_per_sample_matches_naive(rng, blocks, name):
    kind, x, gamma, beta, dy, axis, n_groups = ps_setup(rng, name)
    y, cache = ps_forward(kind, x, gamma, beta, axis, n_groups)
    grads = ps_backward(kind, dy, cache)
    y_ref, grads_ref = ps_reference(kind, x, gamma, beta, dy, axis, n_groups)
    assert rel_err(y, y_ref) < 1e-12
    for got, ref in zip(grads, grads_ref, strict=True):
        assert rel_err(got.ravel(), ref.ravel()) < 1e-11


# -- central finite differences --


def check_gradients(forward, backward, x, gamma, beta, w):
    """Backward against central differences of ``sum(forward(...) * w)``."""
    _, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(w, cache)
    num = [
        naive.finite_difference(lambda v: np.sum(forward(v, gamma, beta)[0] * w), x),
        naive.finite_difference(lambda v: np.sum(forward(x, v, beta)[0] * w), gamma),
        naive.finite_difference(lambda v: np.sum(forward(x, gamma, v)[0] * w), beta),
    ]
    for got, ref in zip((dx, dgamma, dbeta), num, strict=True):
        scale = np.max(np.abs(ref))
        assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("mode", BN_MODES)
@pytest.mark.parametrize("name", ["rows", "nchw", "two-axes", "axis0"])
def test_batch_norm_finite_differences(rng, name, mode):
    x, gamma, beta, dy, kw = bn_setup(rng, name, mode)
    if mode == "renorm":
        # Away from the clipping bounds r and d move with x, and the paper's
        # gradient treats them as constants on purpose; with every feature
        # clipped they are constant, and the gradient is the true one.
        _, bmean, bvar, _ = naive.moments(x, kw["axis"])
        kw["running_mean"] = bmean + 10.0 * np.sqrt(bvar)
        kw["running_var"] = bvar * 9.0

    def forward(x_, g_, b_):
        return F.batch_norm_forward(x_, g_, b_, **copy_kw(kw))

    check_gradients(forward, F.batch_norm_backward, x, gamma, beta, dy)


@pytest.mark.parametrize(
    "name",
    ["layer-3d-two", "layer-middle", "group-nchw-2", "group-nhwc", "instance-ncl"],
)
def test_per_sample_finite_differences(rng, name):
    kind, x, gamma, beta, dy, axis, n_groups = ps_setup(rng, name)

    def forward(x_, g_, b_):
        return ps_forward(kind, x_, g_, b_, axis, n_groups)

    check_gradients(forward, lambda g, c: ps_backward(kind, g, c), x, gamma, beta, dy)


# -- float32 --


def assert_float32_close(got32, ref64):
    """``got32`` is ``ref64`` rounded to float32, give or take an ulp."""
    assert got32.dtype == np.float32
    scale = np.max(np.abs(ref64))
    assert_allclose(got32, ref64, rtol=2 * np.finfo(np.float32).eps, atol=1e-12 * scale)


@pytest.mark.parametrize("mode", BN_MODES)
@pytest.mark.parametrize("name", ["rows", "rows-folded", "nchw", "two-axes"])
def test_batch_norm_float32_within_rounding_of_float64(rng, blocks, name, mode):
    x, gamma, beta, dy, kw = bn_setup(rng, name, mode, dtype=np.float32)
    g32, b32 = gamma.astype(np.float32), beta.astype(np.float32)
    y32, c32 = F.batch_norm_forward(x, g32, b32, **copy_kw(kw))
    y64, c64 = F.batch_norm_forward(
        x.astype(np.float64),
        g32.astype(np.float64),
        b32.astype(np.float64),
        **copy_kw(kw),
    )
    assert_float32_close(y32, y64)
    dy64 = dy.astype(np.float64)
    for a, b in zip(
        F.batch_norm_backward(dy, c32), F.batch_norm_backward(dy64, c64), strict=True
    ):
        assert_float32_close(a, b)


@pytest.mark.parametrize("name", ["layer-3d-two", "group-nhwc", "instance-nhwc"])
def test_per_sample_float32_within_rounding_of_float64(rng, blocks, name):
    kind, x, gamma, beta, dy, axis, n_groups = ps_setup(rng, name, np.float32)
    y32, c32 = ps_forward(kind, x, gamma, beta, axis, n_groups)
    y64, c64 = ps_forward(kind, x.astype(np.float64), gamma, beta, axis, n_groups)
    assert_float32_close(y32, y64)
    pairs = zip(
        ps_backward(kind, dy, c32),
        ps_backward(kind, dy.astype(np.float64), c64),
        strict=True,
    )
    for a, b in pairs:
        assert_float32_close(a, b)


# -- running statistics, modes, conventions --


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_statistics_updated_in_place(rng, dtype):
    x = rng.normal(2.0, 3.0, size=(50, 4))
    rm = np.arange(4, dtype=dtype)
    rv = np.full(4, 2.0, dtype=dtype)
    rm_id, rv_id = id(rm), id(rv)
    F.batch_norm_forward(x, 1.0, 0.0, running_mean=rm, running_var=rv, momentum=0.8)
    _, bmean, bvar, _ = naive.moments(x)
    exp_mean, exp_var, _ = naive.ema_update(
        np.arange(4.0), np.full(4, 2.0), np.ones(4), np.full(4, 50), bmean, bvar, 0.8
    )
    assert (id(rm), id(rv)) == (rm_id, rv_id)
    assert rm.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    assert_allclose(rm, exp_mean, rtol=rtol)
    assert_allclose(rv, exp_var, rtol=rtol)


def test_running_statistics_strided_view_updated(rng):
    x = rng.normal(size=(30, 3, 4))
    buf = np.zeros((3, 2))
    rm, rv = buf[:, 0], np.ones((3, 2))[:, 1]
    F.batch_norm_forward(x, None, None, axis=1, running_mean=rm, running_var=rv)
    _, bmean, bvar, _ = naive.moments(x, 1)
    assert_allclose(buf[:, 0], 0.1 * bmean, rtol=1e-14)
    assert_array_equal(buf[:, 1], 0.0)
    assert_allclose(rv, 0.9 + 0.1 * bvar, rtol=1e-14)


def test_ghost_batches_update_running_stats_with_the_whole_batch(rng):
    x = rng.normal(size=(64, 3)) + np.arange(64)[:, None] / 10
    rm, rv = np.zeros(3), np.ones(3)
    F.batch_norm_forward(
        x, 1.0, 0.0, running_mean=rm, running_var=rv, virtual_batch_size=8
    )
    _, bmean, bvar, _ = naive.moments(x)
    assert_allclose(rm, 0.1 * bmean, rtol=1e-13)
    assert_allclose(rv, 0.9 + 0.1 * bvar, rtol=1e-13)


def test_inference_mode_leaves_running_statistics_alone(rng):
    x = rng.normal(size=(20, 3))
    rm, rv = np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 9.0])
    y, _ = F.batch_norm_forward(
        x, 2.0, 1.0, running_mean=rm, running_var=rv, training=False
    )
    assert_array_equal(rm, [1.0, 2.0, 3.0])
    assert_allclose(y, 2.0 * (x - rm) / np.sqrt(rv + EPS) + 1.0, rtol=1e-14)


def test_momentum_one_keeps_and_zero_replaces(rng):
    x = rng.normal(size=(20, 2))
    _, bmean, _, _ = naive.moments(x)
    keep, repl = np.zeros(2), np.zeros(2)
    F.batch_norm_forward(x, 1, 0, running_mean=keep, running_var=np.ones(2), momentum=1)
    F.batch_norm_forward(x, 1, 0, running_mean=repl, running_var=np.ones(2), momentum=0)
    assert_array_equal(keep, 0.0)
    assert_allclose(repl, bmean, rtol=1e-14)


def test_renorm_with_unit_bounds_is_plain_batch_norm(rng):
    x = rng.normal(3.0, 2.0, size=(40, 5))
    dy = rng.normal(size=x.shape)
    kw = {"running_mean": np.full(5, 10.0), "running_var": np.full(5, 50.0)}
    y1, c1 = F.batch_norm_forward(x, 1.5, 0.5, renorm=(1.0, 0.0), **copy_kw(kw))
    y2, c2 = F.batch_norm_forward(x, 1.5, 0.5)
    assert_allclose(y1, y2, rtol=1e-14, atol=1e-14)
    for a, b in zip(
        F.batch_norm_backward(dy, c1), F.batch_norm_backward(dy, c2), strict=True
    ):
        assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_gamma_none_gives_none_and_scalar_gamma_a_scalar(rng):
    x = rng.normal(size=(30, 4))
    dy = rng.normal(size=x.shape)
    _, cache = F.batch_norm_forward(x, None, None)
    dx, dg, db = F.batch_norm_backward(dy, cache)
    assert dg is None and db is None
    _, cache = F.batch_norm_forward(x, 2.0, np.zeros(4))
    dx2, dg2, db2 = F.batch_norm_backward(dy, cache)
    _, cache = F.batch_norm_forward(x, np.full(4, 2.0), np.zeros(4))
    dx3, dg3, _ = F.batch_norm_backward(dy, cache)
    assert dg2.shape == () and db2.shape == (4,)
    assert_allclose(dg2, dg3.sum(), rtol=1e-14)
    assert_allclose(dx2, 2.0 * dx, rtol=1e-12, atol=1e-14)
    assert_allclose(dx2, dx3, rtol=1e-14, atol=1e-14)


def test_constant_feature_gives_beta_and_finite_gradient(rng):
    x = rng.normal(size=(32, 3))
    x[:, 1] = 1e6 + 0.1
    y, cache = F.batch_norm_forward(x, 2.0, np.array([0.0, 0.25, 0.0]))
    assert_array_equal(y[:, 1], 0.25)
    dx, _, _ = F.batch_norm_backward(rng.normal(size=x.shape), cache)
    assert np.isfinite(dx).all()


def test_dtypes_and_layouts_of_the_input(rng):
    x = rng.normal(size=(20, 6))
    dy = rng.normal(size=x.shape)
    y_ref, c = F.batch_norm_forward(x, 1.0, 0.0)
    dx_ref = F.batch_norm_backward(dy, c)[0]
    for variant in (np.asfortranarray(x), x.copy(), np.repeat(x, 2, axis=1)[:, ::2]):
        variant.setflags(write=False)
        y, c = F.batch_norm_forward(variant, 1.0, 0.0)
        assert_allclose(y, y_ref, rtol=1e-13, atol=1e-13)
        assert_allclose(F.batch_norm_backward(dy, c)[0], dx_ref, atol=1e-13)
    y, c = F.batch_norm_forward(np.arange(12).reshape(4, 3), 1.0, 0.0)
    assert y.dtype == np.float64
    assert F.batch_norm_backward(np.ones((4, 3), np.float32), c)[0].dtype == np.float64


def test_bit_identical_for_any_thread_count(tiny_blocks, restore_threads, rng):
    if restore_threads < 2:
        pytest.skip("needs 2 threads")
    x = rng.normal(size=(64, 6, 5))
    dy = rng.normal(size=x.shape)

    def run():
        out = []
        for axis in (-1, 1):
            y, c = F.batch_norm_forward(x, 1.5, 0.5, axis=axis)
            out += [y, *F.batch_norm_backward(dy, c)]
        y, c = F.group_norm_forward(x, np.ones(6), np.zeros(6), n_groups=3)
        out += [y, *F.group_norm_backward(dy, c)]
        return out

    numba.set_num_threads(1)
    one = run()
    numba.set_num_threads(2)
    for a, b in zip(one, run(), strict=True):
        assert_array_equal(a, b)


# -- BatchNormalizer's training options --


@parametrize_with_checks([BatchNormalizer(renorm=(2.0, 1.0), virtual_batch_size=1)])
def test_batch_normalizer_with_training_options_is_an_estimator(estimator, check):
    check(estimator)


def test_batch_normalizer_ghost_and_renorm_match_functional(rng):
    X = rng.normal(3.0, 2.0, size=(64, 5))
    bn = BatchNormalizer(virtual_batch_size=16, gamma=1.5, beta=0.5)
    y = bn.partial_fit_transform(X)
    ref, _ = F.batch_norm_forward(X, 1.5, 0.5, virtual_batch_size=16)
    assert_allclose(y, ref, rtol=1e-14, atol=1e-14)
    # The running statistics are those of the whole batch, as without ghosts.
    plain = BatchNormalizer().partial_fit(X)
    assert_allclose(bn.running_var_, plain.running_var_, rtol=1e-14)

    bn = BatchNormalizer(renorm=(1.5, 0.5), momentum=0.9)
    first = bn.partial_fit_transform(X)  # no running statistics yet: plain
    assert_allclose(first, F.batch_norm_forward(X, 1.0, 0.0)[0], atol=1e-14)
    rm, rv = bn.running_mean_.copy(), bn.running_var_.copy()
    X2 = X * 3.0 + 2.0
    y = bn.partial_fit_transform(X2)
    ref, _ = F.batch_norm_forward(
        X2, 1.0, 0.0, running_mean=rm, running_var=rv, renorm=(1.5, 0.5)
    )
    assert_allclose(y, ref, rtol=1e-14, atol=1e-14)
    assert_allclose(bn.running_mean_, rm, rtol=1e-14)


@pytest.mark.parametrize("shape", [(24, 3), (24, 2, 5, 3)])
def test_batch_normalizer_ghost_batches_with_sample_weight(rng, shape):
    X = rng.normal(size=shape)
    w = rng.uniform(0.0, 2.0, size=24)
    y = BatchNormalizer(virtual_batch_size=6).partial_fit_transform(X, sample_weight=w)
    for k in range(4):
        rows = slice(6 * k, 6 * k + 6)
        grid = naive.sample_weight_grid(w[rows], X[rows].shape)
        _, mean, var, _ = naive.moments(X[rows], -1, grid)
        assert_allclose(y[rows], naive.normalize(X[rows], mean, var), rtol=1e-12)


def test_batch_normalizer_bad_virtual_batch_size_changes_nothing(rng):
    bn = BatchNormalizer(virtual_batch_size=7).partial_fit(rng.normal(size=(10, 2)))
    before = (bn.running_mean_.copy(), bn.n_batches_seen_)
    with pytest.raises(
        ValueError, match="virtual_batch_size=7 must be a positive divisor"
    ):
        bn.partial_fit_transform(rng.normal(size=(10, 2)))
    assert_array_equal(bn.running_mean_, before[0])
    assert bn.n_batches_seen_ == before[1]
    with pytest.raises(ValueError, match="r_max >= 1"):
        BatchNormalizer(renorm=(0.5, 1.0)).partial_fit_transform(np.ones((4, 2)))


# -- bad input --


def _bn(**kw):
    x = kw.pop("x", np.ones((4, 3)) + np.arange(3))
    return lambda: F.batch_norm_forward(
        x, kw.pop("gamma", 1.0), kw.pop("beta", 0.0), **kw
    )


BAD = {
    "complex x": (_bn(x=np.ones((4, 3), complex)), TypeError, "x must hold real"),
    "string x": (_bn(x=np.array([["a", "b"]])), TypeError, "x must hold real"),
    "1-D x": (_bn(x=np.ones(4)), ValueError, "at least 2 dimensions"),
    "empty x": (_bn(x=np.ones((0, 3))), ValueError, "x is empty"),
    "NaN": (_bn(x=np.array([[1.0, np.nan], [2.0, 3.0]])), ValueError, "contains NaN"),
    "inf": (
        _bn(x=np.array([[1.0, np.inf], [2.0, 3.0]])),
        ValueError,
        "infinity in feature 1",
    ),
    "eps 0": (_bn(eps=0.0), ValueError, "eps must be a finite float > 0"),
    "eps str": (_bn(eps="1"), TypeError, "eps must be a float"),
    "momentum": (_bn(momentum=1.5), ValueError, r"momentum must be in \[0, 1\]"),
    "training": (_bn(training="yes"), TypeError, "training must be True or False"),
    "gamma size": (
        _bn(gamma=np.ones(2)),
        ValueError,
        "gamma must be a scalar or have one",
    ),
    "beta str": (_bn(beta="x"), TypeError, "beta must be None"),
    "axis": (_bn(axis=2), ValueError, "axis=2 is out of bounds"),
    "renorm type": (_bn(renorm=1.5), TypeError, "renorm must be None or a pair"),
    "renorm r_max": (
        _bn(renorm=(0.5, 1.0), running_mean=np.zeros(3), running_var=np.ones(3)),
        ValueError,
        "r_max >= 1",
    ),
    "renorm alone": (_bn(renorm=(2.0, 1.0)), ValueError, "renorm needs the running"),
    "eval alone": (_bn(training=False), ValueError, "training=False normalizes by"),
    "one running": (_bn(running_mean=np.zeros(3)), ValueError, "given together"),
    "running list": (
        _bn(running_mean=[0, 0, 0], running_var=np.ones(3)),
        TypeError,
        "running_mean must be a float ndarray",
    ),
    "running size": (
        _bn(running_mean=np.zeros(2), running_var=np.ones(2)),
        ValueError,
        "running_mean has 2 values",
    ),
    "running_var < 0": (
        _bn(running_mean=np.zeros(3), running_var=-np.ones(3)),
        ValueError,
        "running_var must be non-negative",
    ),
    "vbs divisor": (
        _bn(virtual_batch_size=3),
        ValueError,
        "positive divisor of the number",
    ),
    "vbs type": (_bn(virtual_batch_size=2.0), TypeError, "virtual_batch_size must be"),
    "vbs axis 0": (
        _bn(x=np.ones((4, 3)), axis=0, virtual_batch_size=2),
        ValueError,
        "axis 0 is a feature axis",
    ),
    "layer axis 0": (
        lambda: F.layer_norm_forward(np.ones((3, 4)), None, None, axis=0),
        ValueError,
        "includes axis 0, the sample axis",
    ),
    "group divisor": (
        lambda: F.group_norm_forward(np.ones((3, 6)), None, None, n_groups=4),
        ValueError,
        "n_groups=4 must be a positive divisor of the number of channels",
    ),
    "group axis tuple": (
        lambda: F.group_norm_forward(
            np.ones((3, 6)), None, None, n_groups=2, axis=(1,)
        ),
        TypeError,
        "axis must be an int",
    ),
    "instance gamma": (
        lambda: F.instance_norm_forward(np.ones((3, 6, 2)), np.ones(5), None),
        ValueError,
        r"gamma must be a scalar or have one value per feature \(6\)",
    ),
    "per-sample NaN": (
        lambda: F.layer_norm_forward(np.array([[1.0, np.nan]]), None, None),
        ValueError,
        "contains NaN",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises_a_clear_error(case):
    call, error, match = BAD[case]
    with pytest.raises(error, match=match):
        call()


def test_backward_checks_its_arguments(rng):
    x = rng.normal(size=(6, 4))
    _, bn_cache = F.batch_norm_forward(x, 1.0, 0.0)
    _, ln_cache = F.layer_norm_forward(x, None, None)
    with pytest.raises(ValueError, match=r"dy has shape \(4, 6\), but the forward"):
        F.batch_norm_backward(np.ones((4, 6)), bn_cache)
    with pytest.raises(TypeError, match="dy must hold real numbers"):
        F.batch_norm_backward(np.ones((6, 4), complex), bn_cache)
    with pytest.raises(
        TypeError, match="needs the cache returned by batch_norm_forward"
    ):
        F.batch_norm_backward(np.ones((6, 4)), ln_cache)
    with pytest.raises(
        TypeError, match="group_norm_forward; got PerSampleCache from layer"
    ):
        F.group_norm_backward(np.ones((6, 4)), ln_cache)
    with pytest.raises(TypeError, match="layer_norm_forward; got dict"):
        F.layer_norm_backward(np.ones((6, 4)), {})
