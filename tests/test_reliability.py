"""Property-based reliability tests (hypothesis) over the public API.

Shapes, dtypes, axes, sample weights, NaN patterns and batch splits are drawn
at random; every case checks an identity that must hold exactly or to a
stated rounding:

* moments of any split, merged (``partial_fit`` with ``momentum=None``), equal
  the moments of the whole (``fit``);
* ``inverse_transform(transform(X))`` is ``X`` to rounding;
* float32 and float64 input agree to float32 rounding;
* the dask path agrees with the in-memory one (the CUDA simulator path is
  checked in ``test_cuda_simulator_agrees`` when NUMBA_ENABLE_CUDASIM=1);
* the per-sample transformers and the functional API match a NumPy reference;
* a method that raises leaves the estimator exactly as it was.

The figures in tests/RELIABILITY.md come from these settings (max_examples).
"""

import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from skbn import BatchNormalizer, GroupNormalizer, InstanceNormalizer, LayerNormalizer
from skbn import functional as F

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@st.composite
def batch_data(draw, max_rows=40, nan=True, weights=True, nd=True):
    """``(X, axis, sample_weight)``: random shape, scale, offset and NaN mask.

    Every feature keeps at least one finite value of positive weight.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(2, max_rows))
    if nd and draw(st.booleans()):
        shape = (n, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        axis = draw(st.sampled_from([-1, 1, (1, 2)]))
    else:
        shape = (n, draw(st.integers(1, 6)))
        axis = -1
    scale = 10.0 ** draw(st.integers(-3, 3))
    offset = draw(st.sampled_from([0.0, 1.0, -50.0, 1e4]))
    X = rng.normal(offset, scale, size=shape)
    if nan and draw(st.booleans()):
        X[rng.random(shape) < draw(st.floats(0.0, 0.5))] = np.nan
        X[0] = rng.normal(offset, scale, size=shape[1:])  # a finite sample
    w = None
    if weights and draw(st.booleans()):
        w = rng.uniform(0.0, 3.0, size=n)
        w[rng.random(n) < 0.2] = 0.0
        w[0] = 1.0
    return X, axis, w


def _splits(draw, n):
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(5, n - 1))))
    return [0, *cuts, n]


@SETTINGS
@given(data=batch_data(), split=st.data())
def test_any_split_merged_equals_whole(data, split):
    X, axis, w = data
    edges = _splits(split.draw, X.shape[0])
    whole = BatchNormalizer(momentum=None, axis=axis).fit(X, sample_weight=w)
    parts = BatchNormalizer(momentum=None, axis=axis)
    skipped = 0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        wb = None if w is None else w[a:b]
        if wb is not None and not wb.any():
            # A batch of zero total weight is refused (sklearn's rule) and
            # contributes nothing: merging without it is the same moments.
            with pytest.raises(ValueError, match="non-zero"):
                parts.partial_fit(X[a:b], sample_weight=wb)
            skipped += b - a
            continue
        parts.partial_fit(X[a:b], sample_weight=wb)
    scale = np.nanmax(np.abs(X)) + 1.0
    assert_allclose(
        parts.running_mean_, whole.running_mean_, rtol=1e-9, atol=1e-12 * scale
    )
    assert_allclose(
        parts.running_var_, whole.running_var_, rtol=1e-8, atol=1e-12 * scale**2
    )
    # n_samples_seen_ sums the weights of the non-missing values (a refused
    # batch of zero weight adds nothing), as scikit-learn counts.
    assert_allclose(parts.n_samples_seen_, whole.n_samples_seen_, rtol=1e-12)
    if w is None:
        assert skipped == 0
    assert np.isfinite(parts.running_mean_).all()


@SETTINGS
@given(data=batch_data())
def test_inverse_transform_is_identity(data):
    X, axis, w = data
    est = BatchNormalizer(axis=axis, gamma=1.5, beta=-0.25).fit(X, sample_weight=w)
    Y = est.transform(X)
    assert np.array_equal(np.isnan(Y), np.isnan(X))  # NaN stays NaN, no new NaN
    back = est.inverse_transform(Y)
    assert_allclose(back, X, rtol=1e-9, atol=1e-9 * (np.nanmax(np.abs(X)) + 1.0))


@SETTINGS
@given(data=batch_data(nan=False))
def test_float32_agrees_with_float64(data):
    X, axis, w = data
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)  # the same values
    e32 = BatchNormalizer(axis=axis).fit(X32, sample_weight=w)
    e64 = BatchNormalizer(axis=axis).fit(X64, sample_weight=w)
    # The statistics are accumulated in float64 for both.
    assert_allclose(e32.running_mean_, e64.running_mean_, rtol=1e-12, atol=1e-12)
    assert_allclose(e32.running_var_, e64.running_var_, rtol=1e-10, atol=1e-30)
    Y32 = e32.transform(X32)
    Y64 = e64.transform(X64)
    assert Y32.dtype == np.float32
    # Within a few float32 ulps of the float64 result, relative to |Y| + 1.
    tol = 8 * np.finfo(np.float32).eps
    assert_allclose(Y32, Y64, rtol=tol, atol=tol * (1.0 + np.abs(Y64).max()))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=batch_data(max_rows=30))
def test_dask_path_agrees(data):
    da = pytest.importorskip("dask.array")
    X, axis, w = data
    chunks = (max(1, X.shape[0] // 3),) + X.shape[1:]
    Xd = da.from_array(X, chunks=chunks)
    wd = None if w is None else da.from_array(w, chunks=chunks[0])
    cpu = BatchNormalizer(axis=axis, momentum=None).fit(X, sample_weight=w)
    dsk = BatchNormalizer(axis=axis, momentum=None).fit(Xd, sample_weight=wd)
    scale = np.nanmax(np.abs(X)) + 1.0
    assert_allclose(dsk.running_mean_, cpu.running_mean_, rtol=1e-9, atol=1e-12 * scale)
    assert_allclose(
        dsk.running_var_, cpu.running_var_, rtol=1e-8, atol=1e-12 * scale**2
    )
    assert_allclose(
        np.asarray(dsk.transform(Xd)), cpu.transform(X), rtol=1e-7, atol=1e-7
    )


@pytest.mark.skipif(not SIMULATED, reason="needs NUMBA_ENABLE_CUDASIM=1")
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=batch_data(max_rows=12, weights=False))
def test_cuda_simulator_agrees(data):
    X, axis, _ = data
    cpu = BatchNormalizer(axis=axis, momentum=None, device="cpu").fit(X)
    gpu = BatchNormalizer(axis=axis, momentum=None, device="cuda").fit(X)
    assert_allclose(gpu.running_mean_, cpu.running_mean_, rtol=1e-9, atol=1e-9)
    assert_allclose(gpu.running_var_, cpu.running_var_, rtol=1e-8, atol=1e-9)
    assert_allclose(gpu.transform(X), cpu.transform(X), rtol=1e-7, atol=1e-7)


# -- per-sample transformers and the functional API ------------------------------


def _ref_normalize(x, red_axes, eps=1e-5):
    mean = x.mean(axis=red_axes, keepdims=True)
    var = x.var(axis=red_axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


@st.composite
def images(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = draw(st.integers(1, 3))
    shape = (
        draw(st.integers(1, 5)),
        groups * draw(st.integers(1, 3)),
        draw(st.integers(1, 4)),
        draw(st.integers(2, 4)),
    )
    offset = draw(st.sampled_from([0.0, 3.0, -1e3]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return rng.normal(offset, 1.0, size=shape).astype(dtype), groups


@SETTINGS
@given(data=images())
def test_per_sample_transformers_match_reference(data):
    x, groups = data
    tol = 2e-4 if x.dtype == np.float32 else 1e-9
    x64 = x.astype(np.float64)
    n, c = x.shape[:2]
    cases = [
        (LayerNormalizer(axis=(1, 2, 3)), _ref_normalize(x64, (1, 2, 3))),
        (InstanceNormalizer(), _ref_normalize(x64, (2, 3))),
        (
            GroupNormalizer(groups),
            _ref_normalize(x64.reshape(n, groups, -1), 2).reshape(x.shape),
        ),
    ]
    for est, ref in cases:
        y = est.fit_transform(x)
        assert y.dtype == x.dtype and y.shape == x.shape
        assert_allclose(y, ref, rtol=tol, atol=tol)


@SETTINGS
@given(data=images())
def test_functional_forward_matches_reference(data):
    x, groups = data
    tol = 2e-4 if x.dtype == np.float32 else 1e-9
    x64 = x.astype(np.float64)
    n = x.shape[0]
    y, _ = F.layer_norm_forward(x, None, None, axis=(1, 2, 3))
    assert_allclose(y, _ref_normalize(x64, (1, 2, 3)), rtol=tol, atol=tol)
    y, _ = F.instance_norm_forward(x, None, None)
    assert_allclose(y, _ref_normalize(x64, (2, 3)), rtol=tol, atol=tol)
    y, _ = F.group_norm_forward(x, None, None, n_groups=groups)
    ref = _ref_normalize(x64.reshape(n, groups, -1), 2).reshape(x.shape)
    assert_allclose(y, ref, rtol=tol, atol=tol)


# -- a raised error changes nothing ---------------------------------------------

BAD_BATCHES = [
    ("wrong width", lambda X: X[:, :-1]),
    ("strings", lambda X: X.astype(str)),
    ("1-D", lambda X: X[:, 0]),
    ("empty", lambda X: X[:0]),
    ("object", lambda X: np.array([[object()] * X.shape[1]] * 2, dtype=object)),
    ("complex", lambda X: X.astype(complex)),
]


def _state(est):
    return pickle.dumps(est.__dict__)


@pytest.mark.parametrize("name, bad", BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES])
@pytest.mark.parametrize(
    "method", ["partial_fit", "partial_fit_transform", "transform", "inverse_transform"]
)
def test_raised_error_leaves_state_unchanged(method, name, bad, rng):
    X = rng.normal(size=(20, 3))
    est = BatchNormalizer(track_batch_stats=True).fit(X)
    before = _state(est)
    with pytest.raises((ValueError, TypeError)):
        getattr(est, method)(bad(X))
    assert _state(est) == before


def test_bad_weights_leave_state_unchanged(rng):
    X = rng.normal(size=(20, 3))
    est = BatchNormalizer().fit(X)
    before = _state(est)
    for w in (-np.ones(20), np.ones(19), np.full(20, np.nan), np.full(20, np.inf)):
        with pytest.raises(ValueError):
            est.partial_fit(X, sample_weight=w)
        assert _state(est) == before


# -- fault injection: a killed `skbn transform` ----------------------------------


def test_killed_transform_leaves_no_partial_output(tmp_path, rng):
    import signal
    import subprocess
    import sys
    import time

    X = rng.normal(size=(400_000, 8))
    data, state, out = tmp_path / "x.npy", tmp_path / "s.npz", tmp_path / "y.npy"
    np.save(data, X)
    BatchNormalizer().fit(X[:1000]).save(state)
    state_bytes = state.read_bytes()
    cmd = [sys.executable, "-m", "skbn", "transform", str(data), "--state"]
    cmd += [str(state), "-o", str(out), "--batch-size", "64", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(3.0)  # numba import and a few batches
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Survived: the state file (bit for bit) and the input; OUT.npy is absent
    # (killed before the rename) or complete (the run had finished).
    assert state.read_bytes() == state_bytes
    if killed:
        assert not out.exists()
        # What SIGKILL leaves: at most the hidden partial file, never OUT.npy.
        left = {p.name for p in tmp_path.iterdir()} - {"x.npy", "s.npz"}
        assert all(n.startswith(".y.npy.") and n.endswith(".part") for n in left)
    else:
        np.testing.assert_allclose(
            np.load(out), BatchNormalizer.load(state).transform(X)
        )
    # A rerun completes and gives the full output.
    subprocess.run(cmd, check=True, capture_output=True)
    assert_allclose(np.load(out), BatchNormalizer.load(state).transform(X))
