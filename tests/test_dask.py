"""Dask arrays: the same statistics block by block, a lazy transform."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import skbn
from skbn import BatchNormalizer

da = pytest.importorskip("dask.array")


def _counting(X, chunks):
    """A dask array of ``X`` that counts how many of its blocks were computed."""
    calls = []
    lock = threading.Lock()

    def block(x):
        if x.size:  # not dask probing the function with an empty "meta" array
            with lock:
                calls.append(x.shape)
        return x

    return da.from_array(X, chunks=chunks).map_blocks(block, dtype=X.dtype), calls


def _assert_same_stats(got, want, rtol=1e-12):
    np.testing.assert_allclose(got.running_mean_, want.running_mean_, rtol=rtol)
    np.testing.assert_allclose(got.running_var_, want.running_var_, rtol=rtol)
    # Sums of weights are rounded in another order block by block.
    np.testing.assert_allclose(got.n_samples_seen_, want.n_samples_seen_, rtol=1e-12)
    assert got.n_batches_seen_ == want.n_batches_seen_
    assert got.n_features_in_ == want.n_features_in_


@pytest.mark.parametrize(
    "shape, axis, chunks",
    [
        ((1000, 5), -1, (97, 5)),
        ((1000, 5), -1, (1000, 2)),  # feature axis in chunks: rechunked
        ((40, 3, 6, 7), 1, (9, 1, 4, 3)),  # BatchNorm2d layout, every axis chunked
        ((40, 3, 6, 7), (1, 3), (9, 2, 6, 4)),
        ((50, 6, 4), (0, 2), (50, 4, 3)),  # features on axis 0 (no weights)
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_fit_matches_numpy(rng, blocks, shape, axis, chunks, dtype):
    X = (rng.normal(7.0, 3.0, size=shape) * 10).astype(dtype)
    want = BatchNormalizer(axis=axis).fit(X)
    got = BatchNormalizer(axis=axis).fit(da.from_array(X, chunks=chunks))
    _assert_same_stats(got, want)
    y = got.transform(da.from_array(X, chunks=chunks))
    assert y.dtype == want.transform(X).dtype
    np.testing.assert_allclose(y.compute(), want.transform(X), rtol=1e-6, atol=1e-6)


def test_nan_ignored_and_kept(rng):
    X = rng.normal(2.0, 1.0, size=(300, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, 2] = np.nan  # a feature with no value at all
    dX = da.from_array(X, chunks=(70, 4))
    got, want = BatchNormalizer().fit(dX), BatchNormalizer().fit(X)
    _assert_same_stats(got, want)
    np.testing.assert_array_equal(np.isnan(got.transform(dX).compute()), np.isnan(X))


@pytest.mark.parametrize("dask_weights", [False, True])
def test_sample_weight(rng, dask_weights):
    X = rng.normal(-4.0, 2.0, size=(500, 3))
    w = rng.random(500) * 3
    w[:50] = 0.0
    dX = da.from_array(X, chunks=(60, 3))
    sw = da.from_array(w, chunks=200) if dask_weights else w
    got = BatchNormalizer().fit(dX, sample_weight=sw)
    _assert_same_stats(got, BatchNormalizer().fit(X, sample_weight=w))


@pytest.mark.parametrize("momentum", [0.9, None])
def test_partial_fit_stream_matches_numpy(rng, momentum):
    got, want = BatchNormalizer(momentum=momentum), BatchNormalizer(momentum=momentum)
    for i in range(5):
        batch = rng.normal(i, 1.0 + i, size=(200, 3)).astype(np.float32)
        got.partial_fit(da.from_array(batch, chunks=(64, 3)))
        want.partial_fit(batch)
    _assert_same_stats(got, want)


def test_numpy_and_dask_batches_mix(rng):
    X = rng.normal(size=(400, 3))
    bn = BatchNormalizer(momentum=None).partial_fit(X[:100])
    bn.partial_fit(da.from_array(X[100:], chunks=(90, 3)))
    want = BatchNormalizer(momentum=None).fit(X)
    np.testing.assert_allclose(bn.running_mean_, want.running_mean_, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var_, want.running_var_, rtol=1e-12)
    assert bn.n_batches_seen_ == 2


def test_transform_is_lazy(rng):
    X = rng.normal(3.0, 2.0, size=(1000, 4))
    bn = BatchNormalizer().fit(X)
    dX, calls = _counting(X, (100, 4))
    y = bn.transform(dX)
    assert isinstance(y, da.Array)
    assert calls == []  # nothing computed
    assert y.chunks == dX.chunks
    np.testing.assert_allclose(y.compute(), bn.transform(X), rtol=1e-14)
    assert len(calls) == 10


def test_fit_computes_each_block_once(rng):
    X = rng.normal(size=(1000, 4))
    dX, calls = _counting(X, (100, 4))
    BatchNormalizer().fit(dX)
    assert len(calls) == 10


def test_partial_fit_transform_and_fit_transform(rng):
    X = rng.normal(5.0, 2.0, size=(600, 3)).astype(np.float32)
    dX = da.from_array(X, chunks=(128, 3))
    got, want = BatchNormalizer(), BatchNormalizer()
    y = got.partial_fit_transform(dX)
    assert isinstance(y, da.Array) and y.dtype == np.float32
    np.testing.assert_allclose(y.compute(), want.partial_fit_transform(X), atol=1e-6)
    _assert_same_stats(got, want)
    y = BatchNormalizer().fit_transform(dX)
    assert isinstance(y, da.Array)
    np.testing.assert_allclose(
        y.compute(), BatchNormalizer().fit_transform(X), atol=1e-6
    )


def test_track_batch_stats(rng):
    bn = BatchNormalizer(track_batch_stats=True)
    bn.partial_fit(da.from_array(rng.normal(size=(100, 2)), chunks=(30, 2)))
    assert bn.batch_stats_.mean.shape == (1, 2)


def test_infinite_value_names_feature_and_leaves_estimator(rng):
    X = rng.normal(size=(100, 3))
    bn = BatchNormalizer().fit(X)
    before = bn.running_mean_.copy()
    X[77, 1] = np.inf
    with pytest.raises(ValueError, match="infinity in feature 1"):
        bn.partial_fit(da.from_array(X, chunks=(25, 3)))
    np.testing.assert_array_equal(bn.running_mean_, before)
    assert bn.n_batches_seen_ == 1


@pytest.mark.parametrize(
    "X, match",
    [
        (da.ones((10, 2), dtype=complex), "real numbers"),
        (da.ones(10), "2-D or N-D"),
        (da.ones((0, 3)), "0 elements"),
    ],
)
def test_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        BatchNormalizer().fit(X)


def test_unknown_chunk_sizes():
    X = da.ones((10, 2))
    X = X[X[:, 0] > 0]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        BatchNormalizer().fit(X)


def test_wrong_features_and_weights(rng):
    bn = BatchNormalizer().fit(rng.normal(size=(20, 3)))
    with pytest.raises(ValueError, match="X has 4 features"):
        bn.transform(da.ones((5, 4)))
    with pytest.raises(ValueError, match="3 dimensions"):
        bn.transform(da.ones((5, 3, 2)))
    with pytest.raises(ValueError, match="sample_weight"):
        BatchNormalizer().fit(da.ones((5, 3)), sample_weight=da.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        BatchNormalizer().fit(da.ones((5, 3)), sample_weight=-da.ones(5))
    with pytest.raises(ValueError, match="(?i)negative"):
        BatchNormalizer().fit(da.ones((5, 3)), sample_weight=-np.ones(5))


def test_numpy_user_never_imports_dask():
    code = (
        "import sys, numpy as np\n"
        "from skbn import BatchNormalizer\n"
        "bn = BatchNormalizer().fit(np.ones((4, 2)))\n"
        "bn.transform(np.ones((4, 2)))\n"
        "assert 'dask' not in sys.modules, 'dask imported'\n"
    )
    env_path = str(Path(skbn.__file__).parents[1])
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": env_path},
    )
    assert result.returncode == 0, result.stderr


def test_distributed_cluster_fit_matches_numpy():
    """Two worker processes: the kernels pickle, compile there, and agree."""
    distributed = pytest.importorskip("distributed")
    X = da.random.default_rng(42).normal(
        3.0, 2.0, size=(2_000_000, 16), chunks=(125_000, 16)
    )
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster),
    ):
        X = X.persist()
        distributed.wait(X)
        got = BatchNormalizer().fit(X)
        y = got.transform(X)
        assert isinstance(y, da.Array)
        y_head = y[:1000].compute()
        X_np = X.compute()
    want = BatchNormalizer().fit(X_np)
    err_mean = np.max(np.abs(got.running_mean_ / want.running_mean_ - 1))
    err_var = np.max(np.abs(got.running_var_ / want.running_var_ - 1))
    assert err_mean <= 1e-12 and err_var <= 1e-12, (err_mean, err_var)
    np.testing.assert_allclose(y_head, want.transform(X_np[:1000]), atol=1e-12)


def _per_sample_estimators():
    from skbn import GroupNormalizer, InstanceNormalizer, LayerNormalizer

    return [LayerNormalizer(), GroupNormalizer(2), InstanceNormalizer()]


@pytest.mark.parametrize("fitted", [False, True])
@pytest.mark.parametrize("est", _per_sample_estimators(), ids=type)
def test_per_sample_transform_is_lazy(rng, est, fitted):
    X = rng.normal(3.0, 2.0, size=(30, 4, 5, 3))
    if fitted:
        est.fit(X)
    dX, calls = _counting(X, (7, 2, 5, 2))  # samples split over blocks
    y = est.transform(dX)
    assert isinstance(y, da.Array) and calls == []
    np.testing.assert_allclose(y.compute(), est.transform(X), rtol=1e-13)
    est.set_params(eps=1.0)  # the graph holds a snapshot of the parameters
    np.testing.assert_allclose(y.compute(), est.set_params(eps=1e-5).transform(X))
