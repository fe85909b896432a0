"""Fuzz targets on skbn's public entry points and its state-file loader.

Each target takes raw bytes and must either succeed or raise one of the
documented exceptions (``ValueError``, ``TypeError``, ``FileNotFoundError``);
anything else (a Numba error, ``IndexError``, a segfault, a NaN where the
input had none) is a bug.  Run under atheris (coverage-guided)::

    python tests/fuzz_targets.py state -atheris_runs=20000
    python tests/fuzz_targets.py estimator -max_total_time=60

``tests/test_fuzz.py`` runs them for a bounded time (slow) and replays
``tests/fuzz_corpus`` (regression inputs) in the default run.
"""

import importlib.util
import os
import sys
import tempfile
import warnings

import numpy as np


def _kernel_modules():
    """Every module of ``skbn._kernels``, found without importing skbn."""
    (root,) = importlib.util.find_spec("skbn").submodule_search_locations
    base = os.path.join(root, "_kernels")
    names = []
    for folder, _, files in os.walk(base):
        rel = os.path.relpath(folder, base)
        package = "skbn._kernels" + (
            "" if rel == "." else "." + rel.replace(os.sep, ".")
        )
        for f in files:
            if f.endswith(".py"):
                names.append(package if f == "__init__.py" else f"{package}.{f[:-3]}")
    return sorted(names)


if __name__ == "__main__":
    # Coverage feedback from skbn's own code only: instrumenting every loaded
    # function (atheris.instrument_all) takes minutes.
    import atheris

    # Numba compiles the kernels from their bytecode: leave those uninstrumented.
    with atheris.instrument_imports(include=["skbn"], exclude=_kernel_modules()):
        from skbn import BatchNormalizer, InstanceNormalizer, LayerNormalizer
else:
    from skbn import BatchNormalizer, InstanceNormalizer, LayerNormalizer

EXPECTED = (ValueError, TypeError, FileNotFoundError)
_TMP = tempfile.mkdtemp(prefix="skbn-fuzz-")


def state_target(data: bytes) -> None:
    """Load arbitrary bytes as a state file, and as a mutated valid one."""
    path = os.path.join(_TMP, "state.npz")
    for blob in (data, _mutated_state(data)):
        with open(path, "wb") as f:
            f.write(blob)
        try:
            est = BatchNormalizer.load(path)
        except EXPECTED:
            continue
        # A file that loads gives a usable estimator, or a clean error.
        if hasattr(est, "running_mean_"):
            X = np.ones((2, est.n_features_in_))
            try:
                est.transform(X)
            except EXPECTED:
                pass


_VALID = None


def _valid_state():
    global _VALID
    if _VALID is None:
        buf = os.path.join(_TMP, "valid.npz")
        BatchNormalizer().fit(np.arange(12.0).reshape(4, 3)).save(buf)
        with open(buf, "rb") as f:
            _VALID = f.read()
    return _VALID


def _mutated_state(data):
    """A valid state file with bytes of ``data`` written over it."""
    valid = bytearray(_valid_state())
    if not data:
        return bytes(valid)
    pos = int.from_bytes(data[:2].ljust(2, b"\0"), "little") % len(valid)
    chunk = data[2:34]
    valid[pos : pos + len(chunk)] = chunk
    return bytes(valid[: len(valid)])


def _array_from(data):
    """A 2-D to 4-D float array, its shape and values taken from ``data``."""
    if len(data) < 4:
        raise ValueError("short input")
    ndim = 2 + data[0] % 3
    dims = [1 + b % 5 for b in data[1 : 1 + ndim]]
    dtype = np.float32 if data[0] & 0x80 else np.float64
    n = int(np.prod(dims))
    raw = data[1 + ndim :]
    width = np.dtype(dtype).itemsize
    raw = (raw * (n * width // max(len(raw), 1) + 1))[: n * width] if raw else b""
    if len(raw) < n * width:
        raise ValueError("short input")
    return np.frombuffer(raw, dtype=dtype).reshape(dims).copy()


def estimator_target(data: bytes) -> None:
    """Fit, transform and invert arbitrary arrays (any bit pattern)."""
    try:
        X = _array_from(data)
    except ValueError:
        return
    axis = (-1, 1, (1, 2))[data[-1] % 3] if X.ndim > 2 else -1
    mode = data[-1] // 3 % 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = [
            BatchNormalizer(axis=axis),
            BatchNormalizer(axis=axis, momentum=None),
            LayerNormalizer(),
            InstanceNormalizer() if X.ndim > 2 else LayerNormalizer(),
        ][mode]
        try:
            Y = est.fit_transform(X)
        except EXPECTED:
            return
        # No silent NaN: output NaN only where the input is NaN.
        bad = np.isnan(Y) & ~np.isnan(X)
        if bad.any():
            raise AssertionError(f"NaN from finite input {X!r} -> {Y!r}")
        if isinstance(est, BatchNormalizer):
            half = X[: max(1, X.shape[0] // 2)]
            try:
                est.partial_fit(half)
                est.inverse_transform(est.transform(X))
            except EXPECTED:
                pass


TARGETS = {"state": state_target, "estimator": estimator_target}


def main(argv):
    name = argv[1]
    target = TARGETS[name]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
