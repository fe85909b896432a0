"""The CUDA path, checked against the CPU path and tests/naive.py.

Numba's CUDA simulator runs these without a GPU, but it must be switched on
before ``numba.cuda`` is first imported, so they run in a pytest process of
their own (``.ci/run`` does this)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py

In the main ``python -m pytest`` run they are skipped unless a GPU is there
(then they run on it), except the ``anywhere`` tests of the no-CUDA behaviour.
Shapes are tiny and the threads per block patched down (``small_cuda_grid``)
so that every input spans several blocks, row passes and segment units, and
every level of the merge runs.
"""

import os
import pickle
import subprocess
import sys

import naive
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from skbn import BatchNormalizer, _config, functional
from skbn._backends import cuda_arrays

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _cuda_runs():
    if SIMULATED:
        return True
    if os.environ.get("SKBN_TEST_GPU") != "1":
        # Without the simulator, only ask the driver when told to: the main
        # run stays free of CUDA initialization on machines without a GPU.
        return False
    return cuda_arrays.unavailable_reason() is None


CUDA = _cuda_runs()
needs_cuda = pytest.mark.skipif(
    not CUDA,
    reason="CUDA tests run under NUMBA_ENABLE_CUDASIM=1 (see .ci/run) or with "
    "SKBN_TEST_GPU=1 on a GPU",
)

SMALL_GRID = {
    "CUDA_THREADS_PER_BLOCK": 8,
    "CUDA_MERGE_THREADS": 4,
    "CUDA_MIN_BLOCK_ELEMENTS": 1,
    "CUDA_MAX_BLOCKS": 6,
    "CUDA_SEGMENT_LEN": 5,
}


@pytest.fixture(autouse=True)
def small_cuda_grid(monkeypatch):
    """A few threads per block and many blocks, so small inputs span them."""
    for name, value in SMALL_GRID.items():
        monkeypatch.setattr(_config, name, value)


# -- helpers ---------------------------------------------------------------------


def cuda():
    from numba import cuda

    return cuda


def dev(X):
    """A Numba device array (the simulator's, under the simulator)."""
    return cuda().to_device(np.ascontiguousarray(X))


def host(Y):
    return Y.copy_to_host() if hasattr(Y, "copy_to_host") else np.asarray(Y)


class ForeignArray:
    """An array known only by ``__cuda_array_interface__``, as a CuPy array or
    a PyTorch CUDA tensor is (under the simulator its pointer is a host one).
    ``base`` keeps the memory alive."""

    def __init__(self, base, iface):
        self.base = base
        self._iface = iface

    @classmethod
    def of(cls, X, *, order="C", view=None):
        base = dev(X) if order == "C" else cuda().to_device(np.asfortranarray(X))
        if SIMULATED:
            i = base._ary.__array_interface__
            iface = {k: i[k] for k in ("shape", "typestr", "strides", "data")}
            iface["version"] = 3
        else:
            iface = dict(base.__cuda_array_interface__)
        if view is not None:
            iface.update(view(iface, base.dtype.itemsize))
        return cls(base, iface)

    @property
    def __cuda_array_interface__(self):
        return self._iface


def data(rng, shape, dtype=np.float32, offset=100.0):
    X = offset + rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape)
    return X.astype(dtype)


def error_of(fn):
    with pytest.raises(ValueError) as info:
        fn()
    return str(info.value)


# -- runs anywhere: no CUDA, no initialization --------------------------------------


def test_import_does_not_initialize_cuda():
    code = (
        "import sys, numpy as np, skbn\n"
        "skbn.BatchNormalizer().fit_transform(np.ones((4, 2)))\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'\n"
        "assert 'torch' not in sys.modules and 'cupy' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_device_cuda_without_cuda_is_a_clear_error(rng, monkeypatch):
    monkeypatch.setattr(cuda_arrays, "unavailable_reason", lambda: "no GPU here")
    bn = BatchNormalizer(device="cuda")
    msg = error_of(lambda: bn.fit(data(rng, (5, 2))))
    assert "device='cuda' is not available: no GPU here" in msg
    assert "pip install 'skbn[cuda]'" in msg
    assert not hasattr(bn, "running_mean_")


def test_cuda_data_without_cuda_is_a_clear_error(rng, monkeypatch):
    monkeypatch.setattr(cuda_arrays, "unavailable_reason", lambda: "no GPU here")
    X = ForeignArray(None, {"shape": (5, 2), "typestr": "<f4", "data": (0, False)})
    msg = error_of(lambda: BatchNormalizer().fit(X))
    assert "X is a CUDA array (ForeignArray) but CUDA is not available" in msg


def test_cpu_device_refuses_cuda_data():
    X = ForeignArray(None, {"shape": (5, 2), "typestr": "<f4", "data": (0, False)})
    msg = error_of(lambda: BatchNormalizer(device="cpu").fit(X))
    assert "device='cpu'" in msg and "host memory" in msg


def test_detection_looks_at_attributes_only():
    assert not cuda_arrays.is_cuda(np.ones((2, 2)))
    assert not cuda_arrays.is_cuda([[1.0, 2.0]])
    assert cuda_arrays.is_cuda(ForeignArray(None, {"shape": (1, 1)}))


# -- kernels ------------------------------------------------------------------------

KERNEL_CASES = [
    ((13, 3), -1),  # rows: several row passes per block
    ((9, 20), -1),  # rows: more columns than threads (column tiles)
    ((7, 1), -1),  # rows: one column, eight rows per pass
    ((4, 3, 7), 1),  # segments: inner < threads
    ((2, 2, 30), 1),  # segments: inner cut into units of SEGMENT_LEN
]


def _x3(X, axis):
    if axis == 1:
        return X.reshape(X.shape[0], X.shape[1], -1)
    return X.reshape(X.shape[0], X.shape[1], 1)


def _kernel_moments(X, axis, w=None):
    from skbn._kernels import cuda as kernels

    x3 = _x3(X, axis)
    wd = None if w is None else dev(np.repeat(w, x3.shape[0] // X.shape[0]))

    def fail():
        raise AssertionError("host error path taken")

    alloc = lambda shape, dtype: cuda().device_array(shape, dtype=dtype)  # noqa: E731
    return kernels.moments(dev(x3), wd, fail, alloc=alloc)


@needs_cuda
@pytest.mark.parametrize("shape, axis", KERNEL_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_kernels_match_naive(rng, shape, axis, dtype):
    X = data(rng, shape, dtype)
    count, mean, m2 = _kernel_moments(X, axis)
    r_count, r_mean, r_var, _ = naive.moments(X, axis)
    assert_array_equal(count, r_count)
    assert_allclose(mean, r_mean, rtol=1e-13)
    assert_allclose(m2 / count, r_var, rtol=1e-11)


@needs_cuda
@pytest.mark.parametrize("shape, axis", KERNEL_CASES[::2])
def test_weighted_nan_skipping_kernels_match_naive(rng, shape, axis):
    X = data(rng, shape)
    X[rng.random(shape) < 0.2] = np.nan
    w = rng.uniform(0.0, 2.0, size=shape[0])
    w[0] = 0.0
    count, mean, m2 = _kernel_moments(X, axis, w)
    grid = naive.sample_weight_grid(w, shape)
    r_count, r_mean, r_var, _ = naive.moments(X, axis, grid)
    assert_allclose(count, r_count, rtol=1e-14)
    assert_allclose(mean, r_mean, rtol=1e-13)
    assert_allclose(m2 / count, r_var, rtol=1e-11)


@needs_cuda
@pytest.mark.parametrize("shape, axis", [((13, 3), -1), ((4, 3, 7), 1)])
def test_constant_and_far_from_first_value(rng, shape, axis):
    """A constant feature far from zero has M2 exactly 0; a first value far
    from the rest (the shift of the shifted sums) is repaired by the guard."""
    X = data(rng, shape, np.float64, offset=0.0)
    if axis == 1:
        X[:, 0] = 1e6
        X[0, 1, 0] = 1e7
    else:
        X[:, 0] = 1e6
        X[0, 1] = 1e7
    count, mean, m2 = _kernel_moments(X, axis)
    _, r_mean, r_var, _ = naive.moments(X, axis)
    assert mean[0] == 1e6 and m2[0] == 0.0
    assert_allclose(mean, r_mean, rtol=1e-14)
    assert_allclose(m2 / count, r_var, rtol=1e-12)


@needs_cuda
def test_results_are_deterministic(rng):
    X = data(rng, (31, 3))
    a = _kernel_moments(X, -1)
    b = _kernel_moments(X, -1)
    for u, v in zip(a, b, strict=True):
        assert_array_equal(u, v)


@needs_cuda
def test_workspace_is_reused_per_shape(rng):
    from skbn._kernels import cuda as kernels

    bn = BatchNormalizer().fit(dev(data(rng, (9, 3))))
    kernels.reuse.__dict__.pop("slots", None)
    X = dev(data(rng, (9, 3)))
    first = bn.transform(X)
    (ws,) = kernels.reuse.slots.values()
    second = bn.transform(X)
    assert kernels.reuse.slots[next(iter(kernels.reuse.slots))] is ws
    assert_array_equal(host(first), host(second))
    for d in range(4, 4 + 2 * kernels.REUSE_SLOTS):
        BatchNormalizer().fit(dev(data(rng, (9, d))))
    assert len(kernels.reuse.slots) == kernels.REUSE_SLOTS


# -- the estimator on device arrays ------------------------------------------------

ESTIMATOR_CASES = [((17, 3), -1), ((5, 3, 7), 1), ((4, 6, 2), -1)]


@needs_cuda
@pytest.mark.parametrize("shape, axis", ESTIMATOR_CASES)
@pytest.mark.parametrize("momentum", [0.9, None])
def test_stream_matches_cpu(rng, shape, axis, momentum):
    on_cpu = BatchNormalizer(axis=axis, momentum=momentum, gamma=1.5, beta=-2.0)
    on_gpu = clone(on_cpu)
    for _ in range(3):
        X = data(rng, shape)
        y_cpu = on_cpu.partial_fit_transform(X)
        y_gpu = on_gpu.partial_fit_transform(dev(X))
        assert type(y_gpu) is type(dev(X))
        assert y_gpu.shape == X.shape and y_gpu.dtype == X.dtype
        assert_allclose(host(y_gpu), y_cpu, rtol=1e-5, atol=1e-5)
    for name in ("running_mean_", "running_var_", "gamma_", "beta_", "_seen"):
        got = getattr(on_gpu, name)
        assert type(got) is np.ndarray
        assert_allclose(got, getattr(on_cpu, name), rtol=1e-12)
    assert on_gpu.n_samples_seen_ == on_cpu.n_samples_seen_ == 3 * shape[0]
    X = data(rng, shape)
    assert_allclose(host(on_gpu.transform(dev(X))), on_cpu.transform(X), rtol=1e-6)
    Y = on_cpu.transform(X)
    assert_allclose(host(on_gpu.inverse_transform(dev(Y))), X, rtol=1e-5)


@needs_cuda
def test_mixture_stream_and_nan_counts_match_cpu(rng):
    # ema="mixture" and scikit-learn's n_samples_seen_ on the GPU path: one-row
    # batches (the case the mixture update is for), NaN in one feature.
    on_cpu = BatchNormalizer(momentum=0.7, ema="mixture")
    on_gpu = clone(on_cpu)
    for k in (1, 1, 3, 1):
        X = data(rng, (k, 3), np.float64)
        X[0, 2] = np.nan
        on_cpu.partial_fit(X)
        on_gpu.partial_fit(dev(X))
    assert_allclose(on_gpu.running_mean_, on_cpu.running_mean_, rtol=1e-12)
    assert_allclose(on_gpu.running_var_, on_cpu.running_var_, rtol=1e-12)
    assert on_cpu.running_var_[0] > 0.0
    assert_array_equal(on_gpu.n_samples_seen_, [6, 6, 2])
    assert_array_equal(on_cpu.n_samples_seen_, [6, 6, 2])
    x = dev(data(rng, (4, 3), np.float64))
    rm, rv = np.zeros(3), np.ones(3)
    rm_cpu, rv_cpu = rm.copy(), rv.copy()
    functional.batch_norm_forward(
        x, 1.0, 0.0, running_mean=rm, running_var=rv, ema="mixture"
    )
    functional.batch_norm_forward(
        host(x), 1.0, 0.0, running_mean=rm_cpu, running_var=rv_cpu, ema="mixture"
    )
    assert_allclose(rm, rm_cpu, rtol=1e-12)
    assert_allclose(rv, rv_cpu, rtol=1e-12)


@needs_cuda
def test_fit_float64_matches_naive(rng):
    X = data(rng, (23, 4), np.float64)
    bn = BatchNormalizer(momentum=None).fit(dev(X))
    _, mean, var, _ = naive.moments(X)
    assert_allclose(bn.running_mean_, mean, rtol=1e-14)
    assert_allclose(bn.running_var_, var, rtol=1e-12)
    y = host(bn.transform(dev(X)))
    assert y.dtype == np.float64
    assert_allclose(y, naive.normalize(X, mean, var), rtol=1e-12, atol=1e-12)


@needs_cuda
def test_host_data_with_device_cuda(rng):
    X = data(rng, (11, 3))
    on_cpu = BatchNormalizer(device="cpu").fit(X)
    bn = BatchNormalizer(device="cuda").fit(X)
    y = bn.transform(X)
    assert type(y) is np.ndarray and y.dtype == np.float32
    assert_allclose(y, on_cpu.transform(X), rtol=1e-6)
    y_train = BatchNormalizer(device="cuda").partial_fit_transform(X)
    assert_allclose(y_train, on_cpu.transform(X), rtol=1e-6, atol=1e-6)
    Xc = X.copy()
    out = bn.transform(Xc, copy=False)
    assert np.shares_memory(out, Xc)
    assert_allclose(Xc, on_cpu.transform(X), rtol=1e-6)


@needs_cuda
def test_copy_false_overwrites_device_input(rng):
    X = data(rng, (9, 3))
    bn = BatchNormalizer().fit(dev(X))
    d = dev(X)
    out = bn.transform(d, copy=False)
    assert out is d
    assert_allclose(host(d), BatchNormalizer(device="cpu").fit(X).transform(X))


@needs_cuda
@pytest.mark.parametrize("kind", ["device", "host"])
@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_copy_false_with_infinity_writes_nothing(rng, kind, method):
    """The error comes before any of the input is overwritten."""
    X = data(rng, (9, 3))
    bn = BatchNormalizer(device="cuda").fit(X)
    bad = X.copy()
    bad[-1, -1] = np.inf
    d = dev(bad) if kind == "device" else bad
    with pytest.raises(ValueError, match="infinity"):
        getattr(bn, method)(d, copy=False)
    assert_array_equal(host(d) if kind == "device" else d, bad)


@needs_cuda
def test_foreign_arrays_come_back_as_numba_arrays(rng):
    X = data(rng, (10, 3))
    bn = BatchNormalizer().fit(ForeignArray.of(X))
    y = bn.transform(ForeignArray.of(X))
    assert getattr(y, "__cuda_ndarray__", False)
    ref = BatchNormalizer(device="cpu").fit(X)
    assert_allclose(bn.running_var_, ref.running_var_, rtol=1e-12)
    assert_allclose(host(y), ref.transform(X), rtol=1e-6)


def _reversed_rows(iface, itemsize):
    """A view that walks the rows backwards (negative stride)."""
    n, d = iface["shape"]
    s0, s1 = iface["strides"] or (d * itemsize, itemsize)
    ptr = iface["data"][0] + (n - 1) * s0
    return {"strides": (-s0, s1), "data": (ptr, False)}


@needs_cuda
@pytest.mark.parametrize(
    "case", ["fortran", "reversed", "int", "non_adjacent_axes", "nchw_fortran"]
)
def test_layouts_that_need_a_gather(rng, case):
    """Strided, Fortran-ordered, integer, and permuted input match the CPU."""
    shape, axis, order, view = (8, 3), -1, "C", None
    X = data(rng, shape)
    expect = X
    if case == "fortran":
        order = "F"
    elif case == "reversed":
        view = _reversed_rows
        expect = X[::-1]
    elif case == "int":
        X = rng.integers(-5, 50, size=shape).astype(np.int32)
        expect = X
    elif case == "non_adjacent_axes":
        shape, axis = (5, 3, 4), (0, 2)
        X = expect = data(rng, shape)
    elif case == "nchw_fortran":
        shape, axis, order = (3, 2, 5), 1, "F"
        X = expect = data(rng, shape)
    on_cpu = BatchNormalizer(axis=axis, device="cpu")
    y_cpu = on_cpu.partial_fit_transform(expect)
    bn = BatchNormalizer(axis=axis)
    y = bn.partial_fit_transform(ForeignArray.of(X, order=order, view=view))
    assert y.shape == expect.shape
    assert y.dtype == y_cpu.dtype
    assert_allclose(host(y), y_cpu, rtol=1e-5, atol=1e-5)
    assert_allclose(bn.running_var_, on_cpu.running_var_, rtol=1e-12)
    z = bn.transform(ForeignArray.of(X, order=order, view=view))
    assert_allclose(host(z), on_cpu.transform(expect), rtol=1e-5, atol=1e-5)


@needs_cuda
def test_weights_and_nan(rng):
    X = data(rng, (12, 3))
    X[rng.random(X.shape) < 0.25] = np.nan
    w = rng.uniform(0.0, 2.0, size=12)
    on_cpu = BatchNormalizer(device="cpu").fit(X, sample_weight=w)
    bn = BatchNormalizer().fit(dev(X), sample_weight=dev(w))
    assert_allclose(bn.running_mean_, on_cpu.running_mean_, rtol=1e-13)
    assert_allclose(bn.running_var_, on_cpu.running_var_, rtol=1e-12)
    y = host(bn.partial_fit_transform(dev(X), sample_weight=w))
    assert_array_equal(np.isnan(y), np.isnan(X))


@needs_cuda
def test_all_nan_feature_keeps_running_stats(rng):
    X = data(rng, (6, 3))
    X[:, 1] = np.nan
    bn = BatchNormalizer().fit(dev(X))
    assert bn.running_mean_[1] == 0.0 and bn.running_var_[1] == 1.0


@needs_cuda
def test_constant_feature_normalizes_to_beta(rng):
    X = data(rng, (13, 3))
    X[:, 2] = 12345.0
    y = host(BatchNormalizer(beta=0.5).partial_fit_transform(dev(X)))
    assert_array_equal(y[:, 2], np.float32(0.5))


# -- backward -----------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("shape, axis", [((13, 3), -1), ((9, 20), -1), ((3, 2, 30), 1)])
@pytest.mark.parametrize("training", [True, False])
def test_backward_matches_functional(rng, shape, axis, training):
    from skbn import functional

    X = data(rng, shape, np.float64)
    dy = rng.normal(size=shape)
    d = shape[axis]
    gamma, beta = rng.uniform(0.5, 1.5, d), rng.normal(size=d)
    fitted = BatchNormalizer(axis=axis, device="cpu").fit(X)
    running = (
        {}
        if training
        else {
            "running_mean": fitted.running_mean_,
            "running_var": fitted.running_var_,
        }
    )
    _, cache = functional.batch_norm_forward(
        X, gamma, beta, axis=axis, training=training, **running
    )
    dx, dgamma, dbeta = functional.batch_norm_backward(dy, cache)
    # The same functions on CUDA arrays run on the GPU.
    _, device_cache = functional.batch_norm_forward(
        dev(X), gamma, beta, axis=axis, training=training, **running
    )
    got = functional.batch_norm_backward(dev(dy), device_cache)
    assert_allclose(host(got[0]), dx, rtol=1e-10, atol=1e-12)
    assert_allclose(got[1], dgamma, rtol=1e-12, atol=1e-12)
    assert_allclose(got[2], dbeta, rtol=1e-12, atol=1e-12)


@needs_cuda
@pytest.mark.parametrize(
    "shape, axis", [((13, 3), -1), ((3, 2, 30), 1), ((4, 5, 3), (0, 2))]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_forward_on_cuda_matches_the_cpu(rng, shape, axis, dtype):
    from skbn import functional

    X = data(rng, shape, dtype)
    d = X.shape[axis] if isinstance(axis, int) else X.shape[0] * X.shape[2]
    gamma, beta = rng.uniform(0.5, 1.5, d), rng.normal(size=d)
    results = []
    for x in (X, dev(X)):
        rm, rv = np.zeros(d), np.ones(d)
        y, _ = functional.batch_norm_forward(
            x, gamma, beta, axis=axis, running_mean=rm, running_var=rv
        )
        y_eval, _ = functional.batch_norm_forward(
            x, gamma, beta, axis=axis, running_mean=rm, running_var=rv, training=False
        )
        results.append((host(y), host(y_eval), rm, rv))
    (y, y_eval, rm, rv), (gy, gy_eval, grm, grv) = results
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert type(gy) is np.ndarray and gy.dtype == dtype and gy.shape == shape
    assert_allclose(gy, y, rtol=tol, atol=tol)
    assert_allclose(gy_eval, y_eval, rtol=tol, atol=tol)
    assert_allclose(grm, rm, rtol=1e-12)
    assert_allclose(grv, rv, rtol=1e-12)


@needs_cuda
def test_functional_on_cuda_refuses_what_runs_on_the_cpu_only(rng):
    from skbn import functional

    x = dev(data(rng, (8, 3)))
    rm, rv = np.zeros(3), np.ones(3)
    for kwargs in (
        {"virtual_batch_size": 4},
        {"renorm": (2.0, 1.0), "running_mean": rm, "running_var": rv},
    ):
        with pytest.raises(ValueError, match="CPU only"):
            functional.batch_norm_forward(x, 1.0, 0.0, **kwargs)
    assert (rm == 0).all() and (rv == 1).all()
    _, cache = functional.batch_norm_forward(x, 1.0, 0.0)
    with pytest.raises(TypeError, match="dy must be a CUDA array"):
        functional.batch_norm_backward(np.ones((8, 3), np.float32), cache)
    with pytest.raises(ValueError, match="dy has shape"):
        functional.batch_norm_backward(dev(np.ones((8, 2), np.float32)), cache)


# -- errors ------------------------------------------------------------------------


def _same_error_as_cpu(method, X, *, fitted_on=None, **kwargs):
    def run(bn, x):
        if fitted_on is not None:
            bn.fit(fitted_on)
        before = dict(bn.__dict__)
        with pytest.raises(ValueError) as info:
            getattr(bn, method)(x, **kwargs)
        assert bn.__dict__.keys() == before.keys()
        return str(info.value)

    cpu_msg = run(BatchNormalizer(device="cpu"), X)
    gpu_msg = run(BatchNormalizer(), dev(X))
    assert gpu_msg == cpu_msg
    return gpu_msg


@needs_cuda
@pytest.mark.parametrize("method", ["fit", "partial_fit_transform"])
def test_infinity_in_fit_names_the_feature(rng, method):
    X = data(rng, (9, 4))
    X[3, 2] = np.inf
    msg = _same_error_as_cpu(method, X)
    assert "infinity in feature 2" in msg


@needs_cuda
def test_infinity_in_transform_names_the_feature(rng):
    X = data(rng, (9, 4))
    bad = X.copy()
    bad[5, 1] = -np.inf
    msg = _same_error_as_cpu("transform", bad, fitted_on=X)
    assert "infinity in feature 1" in msg


@needs_cuda
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_overflow_is_reported(rng):
    X = np.full((6, 2), 1e300)
    X[0, 0] = -1e300
    msg = _same_error_as_cpu("fit", X)
    assert "overflows float64" in msg


@needs_cuda
@pytest.mark.parametrize(
    "X, match",
    [
        (np.ones(5), r"Expected a 2-D or N-D CUDA array, got 1-D"),
        (np.ones((0, 3)), r"Found array with 0 elements"),
        (np.ones((4, 3), dtype=np.complex64), r"X must hold real numbers"),
    ],
    ids=["1d", "empty", "complex"],
)
def test_bad_device_input(X, match):
    with pytest.raises(ValueError, match=match):
        BatchNormalizer().fit(ForeignArray.of(X))


@needs_cuda
def test_wrong_feature_count_and_cpu_only_options(rng):
    bn = BatchNormalizer().fit(dev(data(rng, (6, 3))))
    with pytest.raises(ValueError, match="X has 4 features, but BatchNormalizer"):
        bn.transform(dev(data(rng, (6, 4))))
    with pytest.raises(ValueError, match="renorm and virtual_batch_size run on"):
        BatchNormalizer(virtual_batch_size=3).partial_fit_transform(
            dev(data(rng, (6, 3)))
        )


@needs_cuda
def test_fitted_on_gpu_pickles_and_clones(rng):
    bn = BatchNormalizer().fit(dev(data(rng, (8, 3))))
    again = pickle.loads(pickle.dumps(bn))
    assert_array_equal(again.running_var_, bn.running_var_)
    assert clone(bn).get_params() == bn.get_params()


@needs_cuda
def test_gpu_compare_script_runs_simulated():
    from benchmarks import gpu_compare

    if not SIMULATED:
        pytest.skip("the --simulate run is for the simulator")
    rows = gpu_compare.main(["--simulate"])
    assert rows and all(r["ok"] for r in rows)


@needs_cuda
@pytest.mark.parametrize(
    "with_mean, with_std", [(True, False), (False, True), (False, False)]
)
def test_with_mean_and_with_std_match_cpu(rng, with_mean, with_std):
    X = data(rng, (13, 3)).astype(np.float64)
    kw = dict(with_mean=with_mean, with_std=with_std, momentum=None)
    on_cpu = BatchNormalizer(device="cpu", **kw)
    on_gpu = BatchNormalizer(device="cuda", **kw)
    want = on_cpu.partial_fit_transform(X)
    assert_allclose(on_gpu.partial_fit_transform(X), want, rtol=1e-12, atol=1e-12)
    assert_allclose(on_gpu.transform(X), on_cpu.transform(X), rtol=1e-12, atol=1e-12)
    y = on_gpu.transform(X)
    assert_allclose(on_gpu.inverse_transform(y), X, rtol=1e-12, atol=1e-12)
    assert_allclose(
        on_gpu.fit_transform(X), on_cpu.fit_transform(X), rtol=1e-12, atol=1e-12
    )
    shifted = X if with_mean is False else X - on_cpu.running_mean_
    scale = 1.0 / np.sqrt(on_cpu.running_var_ + 1e-5) if with_std else 1.0
    assert_allclose(on_gpu.transform(X), shifted * scale, rtol=1e-12, atol=1e-12)


def test_sparse_input_refuses_device_cuda():
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(10, 3, density=0.5, format="csr", random_state=0)
    with pytest.raises(ValueError, match="device='cuda'"):
        BatchNormalizer(with_mean=False, device="cuda").fit(X)
