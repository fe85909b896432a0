"""Concurrency: one estimator shared by several threads, and process pools.

Semantics (skbn._atomic.atomic): every public method of BatchNormalizer
holds the estimator's own reentrant lock for the whole call, so each call is
atomic.  Concurrent ``partial_fit`` calls are applied one after the other in
the order they take the lock (none is lost); ``transform`` sees the
statistics before or after a concurrent fit, never a mix.  skbn launches
threaded kernels only where Numba's threading layer is a thread-safe one
(skbn._config.use_parallel), so kernels launched from several threads at once
never abort the process.
"""

import inspect
import pickle
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skbn import BatchNormalizer, _atomic, _config

# Large enough to take the threaded kernels (>= MIN_PARALLEL_ELEMENTS).
BIG = (1 << 15, 8)


def test_threading_layer_is_threadsafe():
    # Threaded kernels only on a layer that is safe to launch from several
    # threads; otherwise every kernel is the serial twin.
    BatchNormalizer().fit(np.ones(BIG))
    if _config.parallel_is_threadsafe():
        assert numba.threading_layer() in ("tbb", "omp")
    else:
        assert not _config.use_parallel(1 << 62)


def test_concurrent_partial_fit_loses_no_update(rng):
    batches = [rng.normal(i, 1.0 + i % 3, size=(50, 4)) for i in range(64)]
    est = BatchNormalizer(momentum=None)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(est.partial_fit, batches))
    whole = BatchNormalizer(momentum=None).fit(np.concatenate(batches))
    assert est.n_batches_seen_ == 64
    assert est.n_samples_seen_ == 64 * 50
    assert_allclose(est.running_mean_, whole.running_mean_, rtol=1e-12)
    assert_allclose(est.running_var_, whole.running_var_, rtol=1e-10)


def test_concurrent_partial_fit_with_threaded_kernels(rng):
    # Parallel Numba kernels launched from several threads at once.
    batches = [rng.normal(size=BIG) for _ in range(8)]
    est = BatchNormalizer(momentum=None)
    others = [BatchNormalizer() for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(est.partial_fit, b) for b in batches]
        futures += [pool.submit(o.fit, batches[i]) for i, o in enumerate(others)]
        for f in futures:
            f.result()
    whole = BatchNormalizer(momentum=None).fit(np.concatenate(batches))
    assert est.n_batches_seen_ == 8
    assert_allclose(est.running_var_, whole.running_var_, rtol=1e-10)


def test_transform_never_sees_half_updated_statistics(rng):
    # Two states A and B, far apart: a transform must match one of them
    # exactly, never a mix of A's mean and B's variance.
    XA = rng.normal(0.0, 1.0, size=(200, 3))
    XB = rng.normal(100.0, 7.0, size=(200, 3))
    est = BatchNormalizer(momentum=None).fit(XA)
    probe = rng.normal(size=(500, 3))
    yA = clone(est).fit(XA).transform(probe)
    yB = clone(est).fit(XB).transform(probe)
    stop = threading.Event()
    bad = []

    def fitter():
        for i in range(200):
            est.fit(XB if i % 2 == 0 else XA)
        stop.set()

    def reader():
        while not stop.is_set():
            y = est.transform(probe)
            if not (np.array_equal(y, yA) or np.array_equal(y, yB)):
                bad.append(y)

    threads = [threading.Thread(target=fitter)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_exception_in_one_thread_leaves_others_intact(rng):
    est = BatchNormalizer(momentum=None).fit(rng.normal(size=(10, 3)))
    good = [rng.normal(size=(10, 3)) for _ in range(20)]
    bad = [rng.normal(size=(10, 2)) for _ in range(20)]  # wrong width
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(est.partial_fit, b)
            for pair in zip(good, bad, strict=True)
            for b in pair
        ]
        errors = sum(f.exception() is not None for f in futures)
    assert errors == 20
    assert est.n_batches_seen_ == 21


def test_lock_is_invisible_to_params_clone_and_pickle(rng):
    est = BatchNormalizer().fit(rng.normal(size=(10, 3)))
    assert "lock" not in " ".join(est.get_params())
    assert not any("lock" in k for k in vars(est))
    copy = pickle.loads(pickle.dumps(est))
    copy.partial_fit(rng.normal(size=(10, 3)))  # a working lock of its own
    clone(est).fit(rng.normal(size=(10, 3)))


@pytest.mark.parametrize("n_jobs", [2])
def test_grid_search_with_process_and_thread_pools(rng, n_jobs):
    from joblib import parallel_backend

    X = rng.normal(5.0, 3.0, size=(120, 4))
    y = X @ np.arange(4.0) + rng.normal(size=120)
    pipe = make_pipeline(BatchNormalizer(), Ridge())
    grid = {"batchnormalizer__eps": [1e-5, 1e-3], "ridge__alpha": [0.1, 1.0]}
    for backend in ("threading", "loky"):
        with parallel_backend(backend):
            search = GridSearchCV(pipe, grid, cv=3, n_jobs=n_jobs).fit(X, y)
        assert search.best_score_ > 0.9


def test_thread_pool_in_fresh_process_does_not_abort():
    # Concurrent parallel kernels before anything else ran Numba's threads:
    # with workqueue this aborts the interpreter ("Terminating: Nested
    # parallel kernel launch detected").
    code = (
        "import numpy as np\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from skbn import BatchNormalizer\n"
        "X = np.random.default_rng(0).normal(size=(1 << 15, 8))\n"
        "with ThreadPoolExecutor(4) as p:\n"
        "    r = list(p.map(lambda _: BatchNormalizer().fit(X).transform(X).sum(),"
        " range(16)))\n"
        "import numba; print('ok', numba.threading_layer())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


# -- issue 13, class 7: a rollback is atomic for every public method ------------------


def _readers(est, tmp_path, probe):
    """Public methods that read the whole state, each returning comparable bits."""
    pytest.importorskip("pandas")
    path = tmp_path / "state.npz"

    def save():
        est.save(path)
        return BatchNormalizer.load(path).running_mean_.tobytes()

    return {
        "save": save,
        "to_keras_weights": lambda: b"".join(
            w.tobytes() for w in est.to_keras_weights()
        ),
        "get_feature_names_out": lambda: tuple(est.get_feature_names_out()),
        "transform": lambda: est.transform(probe).tobytes(),
        "get_params": lambda: repr(sorted(est.get_params().items())),
        "pickle": lambda: pickle.loads(pickle.dumps(est)).running_var_.tobytes(),
        "n_features": lambda: est.n_features_in_,
    }


@pytest.mark.parametrize(
    "reader",
    [
        "save",
        "to_keras_weights",
        "get_feature_names_out",
        "transform",
        "get_params",
        "pickle",
    ],
)
def test_readers_never_see_a_failing_call_half_done(rng, tmp_path, reader):
    import pandas as pd

    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    est = BatchNormalizer(momentum=None).fit(X)
    probe = X.iloc[:5]
    read = _readers(est, tmp_path, probe)[reader]
    expected = read()
    bad = X.copy()
    bad.iloc[-1, -1] = np.inf  # partial_fit raises after validating X
    stop = threading.Event()
    failures = []

    def writer():
        while not stop.is_set():
            for call in (est.partial_fit, est.fit, est.partial_fit_transform):
                try:
                    call(bad)
                except ValueError:
                    pass
                else:  # pragma: no cover - the test's own premise
                    failures.append("the bad batch was accepted")

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(150):
            try:
                got = read()
            except Exception as exc:  # any exception is a half-restored state
                failures.append(repr(exc))
                break
            if got != expected:
                failures.append(f"{reader} changed")
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]


def test_every_public_method_takes_the_lock():
    # One rule, inherited methods included: each public method (and
    # pickling) is wrapped by skbn._atomic.atomic, outermost.
    from skbn import GroupNormalizer, InstanceNormalizer, LayerNormalizer

    for cls in (BatchNormalizer, LayerNormalizer, GroupNormalizer, InstanceNormalizer):
        for name in dir(cls):
            if name.startswith("_") and name not in ("__getstate__", "__setstate__"):
                continue
            raw = inspect.getattr_static(cls, name)
            fn = raw.fget if isinstance(raw, property) else raw
            if isinstance(fn, types.FunctionType):
                assert getattr(fn, "__skbn_atomic__", None) is fn, (cls, name)


@pytest.mark.parametrize(
    "reader", ["get_feature_names_out", "to_keras_weights", "get_params"]
)
def test_readers_wait_for_a_call_in_progress(reader):
    # While a call holds the estimator's lock, a reader in another thread
    # waits for it instead of reading a state in the middle of a change.
    est = BatchNormalizer().fit(np.ones((4, 2)))
    done = threading.Event()
    t = threading.Thread(target=lambda: (getattr(est, reader)(), done.set()))
    with _atomic.lock_of(est):
        t.start()
        assert not done.wait(0.2)
    t.join(5)
    assert done.is_set()
