"""State files: ``save(path)`` / ``load(path)`` without pickle.

A state file is an ``.npz`` archive (an uncompressed zip of ``.npy`` arrays)
that holds every numeric array of the estimator, plus one member, ``meta``,
with the rest as JSON: format name and version, the class, its parameters and
its scalar fitted attributes.  Loading uses ``np.load(allow_pickle=False)``
and ``json``, neither of which can run code; the class comes from a registry
of skbn's own classes, never from an import path written in the file.  A
pickle, a truncated archive, an unknown class, an unknown attribute or
parameter, or arrays of the wrong shape all raise ``ValueError``.
"""

import json
import os
import re
import zipfile
import zlib

import numpy as np

from . import _monitor, _npy
from ._core.views import normalize_axis
from ._fitted import check_samples_seen, check_vector_state

FORMAT = "skbn-state"
FORMAT_VERSION = 1
_META = "meta"

# Classes a state file may name, filled by StateMixin.__init_subclass__.
_REGISTRY: dict = {}

# A private attribute that caches a check is never state: a file must not be
# able to mark invalid parameters as already checked.
_NOT_STATE = {"_checked_params"}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*_|_[a-z][a-z0-9_]*[a-z0-9]")


class StateMixin:
    """``save`` / ``load`` for skbn estimators (see the module docstring).

    A subclass names its private fitted attributes in ``_state_private`` (the
    public ones, ending in ``_``, are found by name) and the fitted float
    vectors that hold one value per feature in ``_state_vectors``, which
    ``load`` checks.
    """

    _state_private: tuple = ()
    _state_vectors: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[_class_name(cls)] = cls

    def save(self, path: "str | os.PathLike[str]") -> None:
        """Write the parameters and fitted state to ``path`` (a ``.npz`` file).

        The file is written next to ``path`` under a temporary name and then
        renamed, so ``path`` never holds a half-written state.  It is read
        back with :meth:`load`, which never unpickles anything.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write; the name is used as given (no suffix is added).

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> X = np.arange(12.0).reshape(4, 3)
        >>> bn = BatchNormalizer().fit(X)
        >>> path = os.path.join(tempfile.mkdtemp(), "bn.npz")
        >>> bn.save(path)
        >>> BatchNormalizer.load(path).running_mean_
        array([4.5, 5.5, 6.5])
        """
        arrays = {}
        params = {
            k: _encode(v, f"params.{k}", arrays)
            for k, v in self.get_params(deep=False).items()
        }
        attributes = {
            k: _encode(v, f"attributes.{k}", arrays)
            for k, v in vars(self).items()
            if (k.endswith("_") and not k.startswith("_")) or k in self._state_private
        }
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": _class_name(type(self)),
            "params": params,
            "attributes": attributes,
        }
        arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        _write_atomic(os.fspath(path), arrays)

    @classmethod
    def load(cls, path: "str | os.PathLike[str]"):
        """Read an estimator written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        estimator
            A new instance of the saved class (which must be this class or a
            subclass of it), fitted if it was saved fitted.

        Raises
        ------
        ValueError
            If ``path`` is not an skbn state file (a pickle, a plain ``.npy``,
            a damaged archive), was written by a newer skbn, or holds another
            class or inconsistent data.  Nothing in the file is executed.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> path = os.path.join(tempfile.mkdtemp(), "bn.npz")
        >>> BatchNormalizer(momentum=None).fit(np.eye(3)).save(path)
        >>> bn = BatchNormalizer.load(path)
        >>> bn.momentum, bn.n_samples_seen_
        (None, 3)
        """
        path = os.fspath(path)
        meta, arrays = _read(path)
        try:
            est = _build(cls, meta, arrays)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ValueError(f"{path} is not a valid skbn state file: {exc}") from None
        return est


# -- writing --------------------------------------------------------------------


def _class_name(cls):
    """``skbn.Name`` for skbn's classes (stable if a class changes module),
    ``module.Name`` for others, so that a user's subclass that happens to
    share a name with an skbn class cannot take its place."""
    module = cls.__module__
    if module == "skbn" or module.startswith("skbn."):
        module = "skbn"
    return f"{module}.{cls.__qualname__}"


def _encode(value, key, arrays):
    """JSON for ``value``; arrays go to ``arrays[key]`` and leave a reference."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        arrays[key] = value
        return {"array": key}
    if isinstance(value, np.ndarray) and value.dtype.kind in "OU":
        # Feature names: stored as a unicode array, which needs no pickle.
        if not all(isinstance(v, str) for v in value.flat):
            raise TypeError(f"cannot save {key}: it holds objects other than str.")
        arrays[key] = value.astype(str)
        return {"array": key, "object": True}
    if key == "attributes._batch_stats":
        n_features = len(value[0][2]) if value else 0
        stats = _monitor.stack(value, n_features)
        return {
            "batch_stats": {
                f: _encode(getattr(stats, f), f"{key}.{f}", arrays)
                for f in stats._fields
            }
        }
    if isinstance(value, (tuple, list)):
        items = [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
        return {"tuple": items} if isinstance(value, tuple) else items
    raise TypeError(
        f"cannot save {key} of type {type(value).__name__}: a state file holds "
        "numbers, strings, None, tuples and numeric arrays."
    )


def _write_atomic(path, arrays):
    # The temporary file has the mode a plain open() would give, and is
    # removed if the write fails or a signal ends the CLI (skbn._npy).
    fd, tmp = _npy.create_temp(path, ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # A file object keeps np.savez from appending ".npz" to the name.
            np.savez(f, **arrays)
    except BaseException:
        _npy.discard(tmp)
        raise
    _npy.publish(tmp, path)


# -- reading --------------------------------------------------------------------


def _read(path):
    """Return ``(meta, arrays)`` of a state file, or raise ``ValueError``."""
    not_state = f"{path} is not an skbn state file"
    try:
        # allow_pickle=False: a pickle raises instead of being unpickled, and
        # so does an archive member with an object dtype.
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (
        ValueError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        NotImplementedError,  # zipfile: "zip file version 20.4" (fuzzing)
    ) as exc:
        raise ValueError(f"{not_state}: {exc}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{not_state}: it holds a single array, not an archive.")
    try:
        with data:
            if _META not in data.files:
                raise ValueError("it has no 'meta' member.")
            _check_member_size(data.zip, _META)
            raw = data[_META]
            # A member without the .npy header comes back as bytes.
            if (
                not isinstance(raw, np.ndarray)
                or raw.dtype != np.uint8
                or raw.ndim != 1
            ):
                raise ValueError("its 'meta' member is not JSON text.")
            meta = json.loads(raw.tobytes().decode("utf-8"))
            for k in data.files:
                _check_member_size(data.zip, k)
            arrays = {k: data[k] for k in data.files if k != _META}
            for k, v in arrays.items():
                if not isinstance(v, np.ndarray):
                    raise ValueError(f"its member {k!r} is not an .npy array.")
    except (
        ValueError,
        KeyError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        # A mutated member header: an unknown compression method, or the
        # "encrypted" flag (zipfile raises these two; found by fuzzing).
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise ValueError(f"{not_state}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{not_state}: its format is not {FORMAT!r}.")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{not_state}: format_version {version!r} is invalid.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has state format version {version}, but this skbn reads "
            f"versions up to {FORMAT_VERSION}; upgrade skbn to load it."
        )
    return meta, arrays


# Deflate cannot compress by more than about 1032:1, so a member whose zip
# entry claims more than this many bytes per compressed byte is damaged.
_MAX_DEFLATE_RATIO = 1032


def _check_member_size(archive, name):
    """Refuse a member whose ``.npy`` header claims more data than it holds.

    ``np.load`` allocates the array the header describes before it reads the
    data, so a header claiming ``(10**12,)`` values would raise ``MemoryError``
    (or take the machine's memory) instead of being refused.  The claim is
    compared with the member's uncompressed size, which is itself bounded by
    its compressed size; both are read from the zip directory, not allocated.
    """
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type == zipfile.ZIP_STORED:
        limit = info.compress_size
    else:
        limit = info.compress_size * _MAX_DEFLATE_RATIO
    if info.file_size > limit:
        raise ValueError(
            f"its member {name!r} claims {info.file_size} bytes but stores "
            f"{info.compress_size}."
        )
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError:
            # Not an .npy member: np.load returns its bytes, refused below.
            return
        try:
            shape, _, dtype = _npy.read_header(f, version)
        except _npy.UnsupportedVersionError:
            message = f"its member {name!r} has .npy version {version}."
            raise ValueError(message) from None
        except _npy.HEADER_ERRORS as exc:
            raise ValueError(
                f"its member {name!r} has a malformed header: {exc}"
            ) from None
        header_size = f.tell()
    claimed = dtype.itemsize
    for n in shape:
        claimed *= n
    if claimed > info.file_size - header_size:
        raise ValueError(
            f"its member {name!r} claims shape {shape} of {dtype} "
            f"({claimed} bytes) but holds {info.file_size - header_size} bytes."
        )


def _decode(value, arrays, key):
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, arrays, key) for v in value]
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise ValueError(f"{key} has an unknown encoding.")
    if "tuple" in value and len(value) == 1:
        return tuple(_decode(v, arrays, key) for v in value["tuple"])
    if "array" in value:
        arr = arrays[value["array"]]
        if value.get("object"):
            if arr.dtype.kind != "U":
                raise ValueError(f"{key} must hold strings.")
            return arr.astype(object)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{key} must hold numbers, not {arr.dtype}.")
        return arr
    if "batch_stats" in value and len(value) == 1:
        fields = value["batch_stats"]
        if not isinstance(fields, dict) or set(fields) != set(
            _monitor.BatchStats._fields
        ):
            raise ValueError(f"{key} has an unknown encoding.")
        stats = _monitor.BatchStats(
            **{f: _decode(fields[f], arrays, key) for f in _monitor.BatchStats._fields}
        )
        return _monitor.unstack(stats)
    raise ValueError(f"{key} has an unknown encoding.")


def _build(cls, meta, arrays):
    name = meta["class"]
    target = _REGISTRY.get(name) if isinstance(name, str) else None
    if target is None:
        raise ValueError(f"class {name!r} is not an skbn estimator.")
    if not issubclass(target, cls):
        raise ValueError(
            f"it holds a {target.__name__}, not a {cls.__name__}; load it with "
            f"{target.__name__}.load."
        )
    params = {
        k: _decode(v, arrays, f"parameter {k}") for k, v in meta["params"].items()
    }
    est = target(**params)
    # sklearn's own checks of the parameters, as in fit.
    est._validate_params()
    attributes = meta["attributes"]
    if not isinstance(attributes, dict):
        raise ValueError("its attributes are not a mapping.")
    state = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not an attribute name.")
        if hasattr(target, key) or key in params:
            raise ValueError(f"{key!r} would shadow a method or parameter of {name}.")
        known = key in target._state_private or key in _known_public(target)
        if not known or key in _NOT_STATE:
            raise ValueError(f"{key!r} is not state of {name}.")
        state[key] = _decode(value, arrays, f"attribute {key}")
    # Checked as a whole before any of it is set: a file is loaded entirely
    # or not at all.
    _check_fitted_state(target, state)
    est.__dict__.update(state)
    return est


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _required_state(target):
    """The attributes a fitted ``target`` always has.

    Those that ``fit`` sets on every estimator (the layout of the data), the
    per-feature vectors of ``_state_vectors`` and the public attributes the
    class annotates (the sample counts of ``BatchNormalizer``).
    """
    required = {"n_features_in_", "_axes", "_fit_axis", "_ndim"}
    required.update(target._state_vectors)
    for klass in target.__mro__:
        for key in vars(klass).get("__annotations__", {}):
            if key.endswith("_") and not key.startswith("_"):
                required.add(key)
    return required


def _known_public(target):
    """The public fitted attributes a ``target`` may have: the required ones
    and ``feature_names_in_`` (set only by a fit on named columns)."""
    return {"feature_names_in_"} | {
        k for k in _required_state(target) if not k.startswith("_")
    }


def _check_fitted_state(target, attrs):
    """Reject fitted state ``attrs`` that ``target``'s methods could not use.

    Vectors are converted to float64 in ``attrs``; nothing else is changed.
    """
    if "n_features_in_" not in attrs:
        if attrs:
            raise ValueError(f"it has {sorted(attrs)[0]} but no n_features_in_.")
        return
    missing = sorted(_required_state(target) - set(attrs))
    if missing:
        raise ValueError(
            f"it is fitted but lacks {', '.join(missing)}; a fitted "
            f"{target.__name__} has all of them."
        )
    n = attrs["n_features_in_"]
    if not _is_int(n) or n < 1:
        raise ValueError(f"n_features_in_ must be a positive int, got {n!r}.")
    if "n_batches_seen_" in attrs and (
        not _is_int(attrs["n_batches_seen_"]) or attrs["n_batches_seen_"] < 0
    ):
        raise ValueError(
            f"n_batches_seen_ must be a non-negative int, got "
            f"{attrs['n_batches_seen_']!r}."
        )
    if "n_samples_seen_" in attrs:
        check_samples_seen(attrs["n_samples_seen_"], n)
    names = attrs.get("feature_names_in_")
    if names is not None and (
        not isinstance(names, np.ndarray) or names.ndim != 1 or len(names) != n
    ):
        raise ValueError(f"feature_names_in_ must hold {n} names.")
    for key in target._state_vectors:
        # A file holds whole arrays (save writes nothing else): no scalar is
        # broadcast here, unlike an assignment by a training loop.
        vec = attrs[key]
        if not isinstance(vec, np.ndarray) or vec.shape != (n,):
            shape = getattr(vec, "shape", type(vec).__name__)
            raise ValueError(f"{key} must be an array of shape ({n},), got {shape}.")
    if target._state_vectors:
        # The rules every kernel call checks (finite; variances and counts
        # non-negative), converted to float64 in attrs.
        check_vector_state(attrs, target.__name__)
    # The layout of the data the estimator was fitted on (validate_X).
    ndim, axis, axes = attrs["_ndim"], attrs["_fit_axis"], attrs["_axes"]
    if not _is_int(ndim) or ndim < 2:
        raise ValueError(f"_ndim must be an int >= 2, got {ndim!r}.")
    if normalize_axis(axis, ndim) != axes:
        raise ValueError(f"_axes {axes!r} does not match axis {axis!r}.")
    if "_batch_stats" in attrs:
        # Stacking checks that every record holds n_features values.
        _monitor.stack(attrs["_batch_stats"], n)
