"""Issue 13, class 11: one rule per kind of input, the same on every path.

Strings (also numeric ones, inside object arrays and in pandas or polars
columns), datetimes and timedeltas are refused with a ``TypeError`` naming
``X`` and the dtype, by the NumPy path, the per-sample normalizers, dask, the
functional API and the command line.  All-zero sample weights are refused
everywhere and count nothing.  float32 in any container comes back float32.
"""

import datetime
import pickle
import subprocess
import sys

import numpy as np
import pytest

from skbn import BatchNormalizer, GroupNormalizer, LayerNormalizer, functional

pd = pytest.importorskip("pandas")


def _num():
    return np.arange(12.0).reshape(6, 2) + 0.5


BAD = {
    "unicode": lambda: _num().astype(str),
    "bytes": lambda: _num().astype("S8"),
    "object_numeric_strings": lambda: _num().astype(str).astype(object),
    "object_one_string": lambda: _with(_num().astype(object), "1.5"),
    "object_datetime": lambda: _with(
        _num().astype(object), datetime.datetime(2020, 1, 1)
    ),
    "object_timedelta": lambda: _with(_num().astype(object), datetime.timedelta(1)),
    "datetime64": lambda: _num().astype("datetime64[s]"),
    "timedelta64": lambda: _num().astype("timedelta64[s]"),
    "list_of_strings": lambda: _num().astype(str).tolist(),
    "pandas_object_column": lambda: pd.DataFrame(
        {"a": ["1", "2", "3", "4", "5", "6"], "b": np.ones(6)}
    ),
    "pandas_string_column": lambda: pd.DataFrame(
        {"a": pd.array(list("123456"), dtype="string"), "b": np.ones(6)}
    ),
    "pandas_datetime_column": lambda: pd.DataFrame(
        {"a": pd.date_range("2020", periods=6), "b": np.ones(6)}
    ),
    "pandas_timedelta_column": lambda: pd.DataFrame(
        {"a": pd.to_timedelta(np.arange(6), unit="s"), "b": np.ones(6)}
    ),
    "polars_string_column": lambda: _polars({"a": list("123456"), "b": [1.0] * 6}),
    "polars_date_column": lambda: _polars(
        {"a": [datetime.date(2020, 1, i + 1) for i in range(6)], "b": [1.0] * 6}
    ),
    "polars_duration_column": lambda: _polars(
        {"a": [datetime.timedelta(seconds=i) for i in range(6)], "b": [1.0] * 6}
    ),
}


def _with(arr, value):
    arr[-1, -1] = value
    return arr


def _polars(data):
    pl = pytest.importorskip("polars")
    return pl.DataFrame(data)


def _dask(X):
    da = pytest.importorskip("dask.array")
    if not isinstance(X, np.ndarray):
        pytest.skip("dask arrays are made from NumPy arrays here")
    return da.from_array(X, chunks=3)


def _call_estimator(make, method):
    def run(X):
        est = make()
        if method != "fit":
            est.fit(_num())
        before = pickle.dumps(est.__dict__)
        try:
            getattr(est, method)(X)
        finally:
            assert pickle.dumps(est.__dict__) == before

    return run


PATHS = {
    "numpy_fit": _call_estimator(BatchNormalizer, "fit"),
    "numpy_partial_fit": _call_estimator(BatchNormalizer, "partial_fit"),
    "numpy_transform": _call_estimator(BatchNormalizer, "transform"),
    "layer_fit": _call_estimator(LayerNormalizer, "fit"),
    "group_transform": _call_estimator(
        lambda: GroupNormalizer(n_groups=1), "transform"
    ),
    "dask_fit": lambda X: BatchNormalizer().fit(_dask(X)),
    "dask_transform": lambda X: BatchNormalizer().fit(_num()).transform(_dask(X)),
    "functional": lambda X: functional.batch_norm_forward(X, 1.0, 0.0),
    "functional_layer": lambda X: functional.layer_norm_forward(X, None, None),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("bad", list(BAD))
def test_strings_and_dates_are_refused_on_every_path(path, bad):
    X = BAD[bad]()
    with pytest.raises(TypeError, match=r"(?i)X must hold real numbers.*dtype"):
        PATHS[path](X)


@pytest.mark.parametrize("bad", ["unicode", "datetime64", "timedelta64"])
def test_cli_refuses_strings_and_dates(tmp_path, bad):
    path = tmp_path / "x.npy"
    np.save(path, BAD[bad]())
    out = subprocess.run(
        [sys.executable, "-m", "skbn", "fit", str(path), "-o", str(tmp_path / "s.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert str(BAD[bad]().dtype) in out.stderr
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize(
    "good",
    [
        lambda: _num().astype(object),
        lambda: _num().astype(np.int32),
        lambda: _num() > 3,
        lambda: pd.DataFrame(_num(), columns=["a", "b"]).astype(object),
        lambda: pd.DataFrame(_num(), columns=["a", "b"]).astype("Float64"),
    ],
    ids=["object_numbers", "int32", "bool", "pandas_object_numbers", "pandas_Float64"],
)
def test_numbers_in_any_container_are_accepted(good):
    ref = BatchNormalizer().fit(
        np.asarray(_num() if not callable(good) else good(), dtype=float)
    )
    got = BatchNormalizer().fit(good())
    np.testing.assert_array_equal(got.running_mean_, ref.running_mean_)


def _float32_containers():
    X = _num().astype(np.float32)
    out = {
        "pandas_Float32": lambda: pd.DataFrame(X, columns=["a", "b"]).astype("Float32"),
        "pandas_float32": lambda: pd.DataFrame(X, columns=["a", "b"]),
    }
    try:
        import polars as pl

        out["polars_Float32"] = lambda: pl.DataFrame(
            {"a": X[:, 0], "b": X[:, 1]}, schema={"a": pl.Float32, "b": pl.Float32}
        )
    except ImportError:
        pass
    try:
        import torch

        out["torch_cpu_float32"] = lambda: torch.from_numpy(X.copy())
    except ImportError:
        pass
    return out


F32 = _float32_containers()
F32_PATHS = {
    "fit_transform": lambda X: BatchNormalizer().fit_transform(X),
    "transform": lambda X: BatchNormalizer().fit(_num()).transform(X),
    "partial_fit_transform": lambda X: BatchNormalizer().partial_fit_transform(X),
    "layer": lambda X: LayerNormalizer().fit_transform(X),
    "group": lambda X: GroupNormalizer(n_groups=2).fit_transform(X),
}


@pytest.mark.parametrize("path", list(F32_PATHS))
@pytest.mark.parametrize("container", list(F32))
def test_float32_in_any_container_comes_back_float32(container, path):
    y = np.asarray(F32_PATHS[path](F32[container]()))
    assert y.dtype == np.float32
    ref = F32_PATHS[path](_num().astype(np.float32))
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("dask_weights", [False, True])
@pytest.mark.parametrize("dask_x", [False, True])
@pytest.mark.parametrize("method", ["fit", "partial_fit", "partial_fit_transform"])
def test_all_zero_weights_are_refused_everywhere(method, dask_x, dask_weights):
    if dask_weights and not dask_x:
        pytest.skip("dask weights go with dask data")
    X = _dask(_num()) if dask_x else _num()
    w = np.zeros(6)
    if dask_weights:
        w = _dask(w)
    est = BatchNormalizer(momentum=None).fit(_num())
    before = pickle.dumps(est.__dict__)
    with pytest.raises(
        ValueError, match="sample_weight must contain at least one non-zero"
    ):
        getattr(est, method)(X, sample_weight=w)
    assert pickle.dumps(est.__dict__) == before
    assert est.n_samples_seen_ == 6 and est.n_batches_seen_ == 1
