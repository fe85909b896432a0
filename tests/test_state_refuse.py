"""Issue 13, class 9: ``load`` refuses every state its methods could not use.

Each case edits one part of a good state file (a required attribute removed,
a count, a vector's length or sign, an unknown attribute, a member's header)
and checks that ``load`` raises ``ValueError``; and that whatever ``load`` or
``from_keras_weights`` / ``from_torch_state_dict``-like paths accept saves and
loads again and transforms like the original.
"""

import json
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skbn import BatchNormalizer, GroupNormalizer, LayerNormalizer

_X = np.random.default_rng(0).normal(1.0, 2.0, size=(40, 3))


def _good(tmp_path, est=None):
    """(meta, arrays) of a saved fitted estimator."""
    path = tmp_path / "good.npz"
    (est if est is not None else BatchNormalizer().fit(_X)).save(path)
    with np.load(path) as data:
        meta = json.loads(data["meta"].tobytes())
        arrays = {k: data[k] for k in data.files if k != "meta"}
    return meta, arrays


def _write(path, meta, arrays):
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, meta=raw, **arrays)


_REQUIRED_BN = [
    "n_features_in_",
    "n_samples_seen_",
    "n_batches_seen_",
    "_ndim",
    "_axes",
    "_fit_axis",
    "_seen",
    "gamma_",
    "beta_",
    "running_mean_",
    "running_var_",
]


@pytest.mark.parametrize("key", _REQUIRED_BN)
def test_missing_required_attribute(tmp_path, key):
    meta, arrays = _good(tmp_path)
    del meta["attributes"][key]
    arrays.pop(f"attributes.{key}", None)
    _write(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(
        ValueError, match="n_features_in_" if key == "n_features_in_" else key
    ):
        BatchNormalizer.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("key", ["_ndim", "_axes", "_fit_axis"])
@pytest.mark.parametrize("cls", [LayerNormalizer, GroupNormalizer])
def test_per_sample_missing_layout(tmp_path, cls, key):
    est = cls(**({"n_groups": 1} if cls is GroupNormalizer else {})).fit(_X)
    meta, arrays = _good(tmp_path, est)
    del meta["attributes"][key]
    _write(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(ValueError, match=key):
        cls.load(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_samples_seen_", -1),
        ("n_samples_seen_", -1.5),
        ("n_samples_seen_", float("inf")),
        ("n_samples_seen_", "3"),
        ("n_samples_seen_", float("nan")),
        ("n_samples_seen_", True),
        ("n_batches_seen_", -3),
        ("n_batches_seen_", "2"),
        ("evil_", 1),
        ("_evil", 1),
        ("transform_", 1),
    ],
)
def test_bad_scalar_attribute(tmp_path, key, value):
    meta, arrays = _good(tmp_path)
    meta["attributes"][key] = value
    _write(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(ValueError, match=key):
        BatchNormalizer.load(tmp_path / "bad.npz")


_VECTORS = ["gamma_", "beta_", "running_mean_", "running_var_", "_seen"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    key=st.sampled_from(_VECTORS),
    kind=st.sampled_from(["length", "2d", "nan", "inf", "negative", "strings"]),
    length=st.integers(0, 6).filter(lambda n: n != 3),
)
def test_bad_vector_is_refused(tmp_path, key, kind, length):
    meta, arrays = _good(tmp_path)
    name = f"attributes.{key}"
    vec = arrays[name].copy()
    if kind == "length":
        vec = np.ones(length)
    elif kind == "2d":
        vec = vec.reshape(1, 3)
    elif kind == "nan":
        vec[length % 3] = np.nan
    elif kind == "inf":
        vec[length % 3] = -np.inf
    elif kind == "negative":
        if key not in ("running_var_", "_seen"):
            return  # a negative mean, gamma or beta is valid state
        vec[length % 3] = -1e-300
    else:
        vec = np.array(["a", "b", "c"])
    arrays[name] = vec
    _write(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(ValueError, match="not a valid skbn state file"):
        BatchNormalizer.load(tmp_path / "bad.npz")


def _npy_member(shape, payload=b"\0" * 8):
    header = repr({"descr": "<f8", "fortran_order": False, "shape": shape})
    header = header.encode() + b" " * (118 - len(header) - 10) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


@pytest.mark.parametrize("shape", [(10**12,), (2**62,), (10**6, 10**6), (2,), (1, 2)])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_member_header_claiming_more_than_it_holds(tmp_path, shape, compression):
    """The claim is refused before anything of that size is allocated."""
    meta, arrays = _good(tmp_path)
    path = tmp_path / "bad.npz"
    _write(path, meta, arrays)
    with zipfile.ZipFile(path, "a", compression=compression) as z:
        z.writestr("attributes.big.npy", _npy_member(shape))
    with pytest.raises(ValueError, match="claims"):
        BatchNormalizer.load(path)


def test_nothing_is_set_before_everything_is_checked(tmp_path, monkeypatch):
    """A refused file leaves no half-loaded estimator behind: the estimator
    is built, and every attribute set, only after the whole check."""
    meta, arrays = _good(tmp_path)
    arrays["attributes.running_var_"] = -np.ones(3)
    _write(tmp_path / "bad.npz", meta, arrays)
    made = []
    original = BatchNormalizer.__init__

    def spy(self, **kw):
        made.append(self)
        original(self, **kw)

    monkeypatch.setattr(BatchNormalizer, "__init__", spy)
    with pytest.raises(ValueError, match="running_var_"):
        BatchNormalizer.load(tmp_path / "bad.npz")
    assert made and not hasattr(made[0], "n_features_in_")


@pytest.mark.parametrize(
    "weights",
    [
        [np.ones(0)] * 4,
        [np.ones(3), np.ones(3), np.ones(3), np.ones(2)],
        [np.ones(3), np.ones(3), np.ones(2), np.ones(3)],
        [np.ones(2), np.ones(3), np.ones(3), np.ones(3)],
        [np.ones(3), np.ones(3), np.zeros(3), -np.ones(3)],
        [np.ones(3), np.ones(3), np.zeros(3), np.full(3, np.nan)],
    ],
)
def test_from_keras_weights_refuses_unusable_arrays(weights):
    with pytest.raises(ValueError):
        BatchNormalizer.from_keras_weights(weights)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    n=st.integers(1, 5),
    var=st.floats(0, 1e300),
    mean=st.floats(-1e300, 1e300),
    center=st.booleans(),
    scale=st.booleans(),
)
def test_accepted_keras_weights_save_and_load(tmp_path, n, var, mean, center, scale):
    """What from_keras_weights accepts, save and load accept too."""
    weights = [np.full(n, 2.0)] if scale else []
    weights += [np.full(n, 0.5)] if center else []
    weights += [np.full(n, mean), np.full(n, var)]
    bn = BatchNormalizer.from_keras_weights(weights, center=center, scale=scale)
    path = tmp_path / "k.npz"
    bn.save(path)
    back = BatchNormalizer.load(path)
    X = np.full((2, n), 1.0)
    np.testing.assert_array_equal(back.transform(X), bn.transform(X))
    np.testing.assert_array_equal(back.running_var_, bn.running_var_)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seen=st.integers(0, 2**62),
    batches=st.integers(0, 2**62),
    var=st.floats(0, 1e300),
    mean=st.floats(-1e300, 1e300),
)
def test_whatever_load_accepts_saves_and_loads_again(
    tmp_path, seen, batches, var, mean
):
    meta, arrays = _good(tmp_path)
    meta["attributes"]["n_samples_seen_"] = seen
    meta["attributes"]["n_batches_seen_"] = batches
    arrays["attributes.running_var_"] = np.full(3, var)
    arrays["attributes.running_mean_"] = np.full(3, mean)
    _write(tmp_path / "edited.npz", meta, arrays)
    first = BatchNormalizer.load(tmp_path / "edited.npz")
    first.save(tmp_path / "again.npz")
    second = BatchNormalizer.load(tmp_path / "again.npz")
    for key in ("n_samples_seen_", "n_batches_seen_", "running_var_", "running_mean_"):
        np.testing.assert_array_equal(getattr(second, key), getattr(first, key))
    np.testing.assert_array_equal(second.transform(_X), first.transform(_X))
