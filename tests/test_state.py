"""State files: save/load round trips; pickles and damaged files are refused."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from skbn import BatchNormalizer
from skbn._state import FORMAT_VERSION, StateMixin


def _fitted(rng, **params):
    bn = BatchNormalizer(**params)
    for i in range(3):
        bn.partial_fit(rng.normal(i, 2.0, size=(50, 4)).astype(np.float32))
    return bn


def _assert_same(a, b):
    assert type(a) is type(b)
    pa, pb = a.get_params(), b.get_params()
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_equal(pa[k], pb[k])
    state_a = {k: v for k, v in vars(a).items() if k != "_checked_params"}
    state_b = {k: v for k, v in vars(b).items() if k != "_checked_params"}
    assert state_a.keys() == state_b.keys()
    for k in state_a:
        np.testing.assert_equal(state_a[k], state_b[k], err_msg=k)
        assert type(state_a[k]) is type(state_b[k]), k


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"momentum": None, "eps": 1e-3},
        {"center": False, "scale": False, "copy": False, "device": "cpu"},
        {"gamma": [1.0, 2.0, 3.0, 4.0], "beta": np.array([0.0, 1.0, 0.0, 1.0])},
        {"track_batch_stats": True, "max_batch_stats": 2},
    ],
)
def test_round_trip(tmp_path, rng, params):
    bn = _fitted(rng, **params)
    path = tmp_path / "state.npz"
    bn.save(path)
    loaded = BatchNormalizer.load(path)
    _assert_same(bn, loaded)
    X = rng.normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.transform(X), bn.transform(X))
    # The loaded estimator keeps learning as the original does.
    batch = rng.normal(size=(9, 4))
    _assert_same(bn.partial_fit(batch), loaded.partial_fit(batch))


def test_round_trip_nd_axis_and_feature_names(tmp_path, rng):
    pd = pytest.importorskip("pandas")
    bn = BatchNormalizer(axis=(1, 2)).fit(rng.normal(size=(10, 3, 2, 4)))
    bn.save(tmp_path / "nd.npz")
    loaded = BatchNormalizer.load(tmp_path / "nd.npz")
    _assert_same(bn, loaded)
    assert loaded._axes == (1, 2) and loaded.axis == (1, 2)
    df = pd.DataFrame(rng.normal(size=(10, 2)), columns=["a", "b"])
    bn = BatchNormalizer().fit(df)
    bn.save(tmp_path / "df.npz")
    loaded = BatchNormalizer.load(tmp_path / "df.npz")
    assert loaded.feature_names_in_.dtype == object
    assert list(loaded.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(loaded.transform(df), bn.transform(df))


def test_unfitted_round_trip(tmp_path):
    BatchNormalizer(momentum=0.5).save(tmp_path / "s")
    loaded = BatchNormalizer.load(tmp_path / "s")
    assert loaded.momentum == 0.5 and not hasattr(loaded, "running_mean_")


def test_exact_name_and_any_class_loader(tmp_path, rng):
    path = tmp_path / "state.bin"
    _fitted(rng).save(str(path))
    assert sorted(os.listdir(tmp_path)) == ["state.bin"]  # no ".npz" added
    assert isinstance(StateMixin.load(path), BatchNormalizer)


def test_failed_save_keeps_old_file(tmp_path, rng):
    path = tmp_path / "state.npz"
    bn = _fitted(rng)
    bn.save(path)
    before = path.read_bytes()
    bn.unsupported_ = {"a": 1}
    with pytest.raises(TypeError, match="unsupported_"):
        bn.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.npz"]


class _Marker:
    """Unpickling this would create a file: the test checks it never happens."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_crafted_pickle_executes_nothing(tmp_path):
    marker = tmp_path / "marker"
    state = tmp_path / "state.npz"
    state.write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(ValueError, match="not an skbn state file"):
        BatchNormalizer.load(state)
    assert not marker.exists()
    # The same payload inside an archive member is refused as well.
    buf = io.BytesIO()
    np.savez(buf, meta=np.array([_Marker(str(marker))], dtype=object))
    state.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="not an skbn state file"):
        BatchNormalizer.load(state)
    assert not marker.exists()


def test_pickled_estimator_is_refused(tmp_path, rng):
    path = tmp_path / "bn.pkl"
    path.write_bytes(pickle.dumps(_fitted(rng)))
    with pytest.raises(ValueError, match="not an skbn state file"):
        BatchNormalizer.load(path)


def _write_state(path, meta, **arrays):
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, meta=raw, **arrays)


def _meta(tmp_path, rng):
    path = tmp_path / "good.npz"
    _fitted(rng).save(path)
    with np.load(path) as data:
        meta = json.loads(data["meta"].tobytes())
        arrays = {k: data[k] for k in data.files if k != "meta"}
    return meta, arrays


def _edit(meta, dotted, value):
    *parents, last = dotted.split(".")
    target = meta
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value


@pytest.mark.parametrize(
    "edit, match",
    [
        (("format", "other"), "format"),
        (("format_version", FORMAT_VERSION + 1), "upgrade skbn"),
        (("format_version", "1"), "format_version"),
        (("class", "os.system"), "not an skbn estimator"),
        (("params.momentum", 2.0), "momentum"),
        (("params.unknown", 1), "unknown"),
        (("params.eps", {"weird": 1}), "unknown encoding"),
        (("attributes.n_features_in_", 5), r"shape \(5,\)"),
        (("attributes.n_features_in_", "4"), "positive int"),
        (("attributes.n_samples_seen_", -1), "non-negative"),
        (("attributes._checked_params", None), "not state"),
        (("attributes._secret", 1), "not state"),
        (("attributes.__class__", 1), "not an attribute name"),
        (("attributes.batch_stats_", 1), "shadow"),
        (("attributes._axes", {"tuple": [0]}), "does not match"),
        (("attributes._ndim", 1), "_ndim"),
        (("attributes.running_mean_", {"array": "missing"}), "missing"),
        (("attributes.n_features_in_", KeyError), "no n_features_in_"),
    ],
)
def test_malformed_meta(tmp_path, rng, edit, match):
    meta, arrays = _meta(tmp_path, rng)
    _edit(meta, *edit)
    path = tmp_path / "bad.npz"
    _write_state(path, meta, **arrays)
    with pytest.raises(ValueError, match=match):
        BatchNormalizer.load(path)


def test_malformed_arrays(tmp_path, rng):
    meta, arrays = _meta(tmp_path, rng)
    path = tmp_path / "bad.npz"
    bad = dict(arrays)
    bad["attributes.running_var_"] = np.full(4, np.nan)
    _write_state(path, meta, **bad)
    with pytest.raises(ValueError, match="finite"):
        BatchNormalizer.load(path)
    bad["attributes.running_var_"] = np.array(["a", "b", "c", "d"])
    _write_state(path, meta, **bad)
    with pytest.raises(ValueError, match="numbers"):
        BatchNormalizer.load(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a state file at all",
        b"PK\x03\x04 truncated zip",
        b"\x93NUMPY\x01\x00garbage",
    ],
)
def test_garbage_files(tmp_path, content):
    path = tmp_path / "state.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not an skbn state file"):
        BatchNormalizer.load(path)


def test_other_archives(tmp_path, rng):
    path = tmp_path / "state.npz"
    with open(path, "wb") as f:
        np.save(f, np.ones(3))  # a plain .npy under an .npz name
    with pytest.raises(ValueError, match="single array"):
        BatchNormalizer.load(path)
    np.savez(tmp_path / "x.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="no 'meta'"):
        BatchNormalizer.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", meta=np.ones(3))
    with pytest.raises(ValueError, match="not JSON"):
        BatchNormalizer.load(tmp_path / "y.npz")
    good = tmp_path / "good.npz"
    _fitted(rng).save(good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match="not an skbn state file"):
        BatchNormalizer.load(cut)
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("meta.npy", b"\x93NUMPY not really")
    with pytest.raises(ValueError, match="not an skbn state file"):
        BatchNormalizer.load(tmp_path / "z.npz")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        BatchNormalizer.load(tmp_path / "nope.npz")


def test_class_mismatch(tmp_path, rng):
    class Sub(BatchNormalizer):
        pass

    BatchNormalizer().fit(rng.normal(size=(5, 2))).save(tmp_path / "bn.npz")
    with pytest.raises(ValueError, match="not a Sub"):
        Sub.load(tmp_path / "bn.npz")


@pytest.mark.parametrize("fitted", [False, True])
def test_per_sample_round_trip(tmp_path, rng, fitted):
    from skbn import GroupNormalizer

    est = GroupNormalizer(2, eps=1e-3, gamma=np.arange(1.0, 5.0), beta=0.5)
    X = rng.normal(size=(6, 4, 3))
    if fitted:
        est.fit(X)
    est.save(tmp_path / "g.npz")
    loaded = StateMixin.load(tmp_path / "g.npz")
    _assert_same(est, loaded)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    with pytest.raises(ValueError, match="not a BatchNormalizer"):
        BatchNormalizer.load(tmp_path / "g.npz")
