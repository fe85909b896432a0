"""Fuzzing the public entry points and the state-file loader.

* hypothesis feeds random bytes to the targets of ``tests/fuzz_targets.py``
  (default run, a few hundred inputs each);
* atheris, coverage-guided, runs each target for a few seconds (default run)
  or two minutes (``-m slow``); skipped when atheris is not installed;
* ``REGRESSIONS`` replays every input a fuzzer found to crash.
"""

import importlib.util
import os
import subprocess
import sys

import fuzz_targets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
FUZZ_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=list(HealthCheck)
)
HAS_ATHERIS = importlib.util.find_spec("atheris") is not None

# Inputs the fuzzers found to crash, kept as regression tests (target, bytes).
REGRESSIONS = [
    # A mutated zip whose member header promises more bytes than there are.
    ("state", b"\x1e\x00PK\x03\x04\xff\xff\xff\xff"),
    ("state", b""),
    ("state", b"PK\x05\x06" + b"\0" * 18),
    # A float32 NaN/inf bit pattern in a 1-sample 3-D array.
    ("estimator", b"\x81\x00\x00\x00\x00\x00\xc0\x7f\x00\x00\x80\x7f"),
    # Mutated member headers: zipfile raised NotImplementedError (compression
    # method) and RuntimeError ("encrypted"), not ValueError; fixed in _state.
    ("state", b"\x0e^\x01"),
    ("state", b"\x0c^\x01"),
    # atheris: a member header with "zip file version 20.4" made np.load raise
    # NotImplementedError; fixed in _state.
    ("state", b"\x02//\xcc"),
    # atheris: a member whose .npy header was overwritten comes back from
    # np.load as bytes: AttributeError on raw.dtype; fixed in _state.
    ("state", b"\x1a\xff\n\x00\x00\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00"),
    # atheris: NaN payloads next to huge values: inf * 0 = NaN in chan_merge
    # for |mean| > 1.3e154 with an empty side; fixed in skbn/_kernels/cpu/formulas.py.
    ("estimator", b"0\xff0\xf6\x7fz"),
    # hypothesis: X = [[1.76e156]] gave a NaN variance (the same bug).
    ("estimator", b"\x00\x00\x00`"),
]


@FUZZ_SETTINGS
@given(data=st.binary(max_size=600))
def test_state_loader_random_bytes(data):
    fuzz_targets.state_target(data)


@FUZZ_SETTINGS
@given(data=st.binary(min_size=4, max_size=400))
def test_estimators_random_bytes(data):
    fuzz_targets.estimator_target(data)


@pytest.mark.parametrize("target, data", REGRESSIONS)
def test_fuzz_regressions(target, data):
    fuzz_targets.TARGETS[target](data)


def _atheris(target, seconds, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "fuzz_targets.py"),
            target,
            f"-max_total_time={seconds}",
            "-rss_limit_mb=4096",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=HERE,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stderr


@pytest.mark.skipif(not HAS_ATHERIS, reason="atheris is not installed")
@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_atheris_short(target, tmp_path):
    _atheris(target, 5, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ATHERIS, reason="atheris is not installed")
@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_atheris_long(target, tmp_path):
    _atheris(target, 120, tmp_path)
