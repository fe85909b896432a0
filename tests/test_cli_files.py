"""Issue 13, classes 10 and 8 (bench): files the command line writes and reads.

Every output honours the umask; a malformed ``.npy`` header, a file of no
values, ``-o`` a directory and a bad ``skbn bench`` argument are one line on
stderr and a non-zero exit with nothing left behind; SIGTERM / SIGHUP during a
write leave no temporary file (checked in real child processes).
"""

import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import skbn
from skbn import BatchNormalizer
from skbn.cli import main

ROOT = str(Path(skbn.__file__).parents[1])


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line_error(status, err, *words):
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skbn "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], err


def _listing(directory):
    return sorted(p.name for p in Path(directory).iterdir())


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.random.default_rng(0).normal(size=(50, 3)))
    return path


@pytest.fixture
def state(tmp_path, data):
    path = tmp_path / "state.npz"
    BatchNormalizer().fit(np.load(data)).save(path)
    return path


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077, 0o027, 0o000])
@pytest.mark.parametrize("writer", ["fit", "transform", "save"])
def test_outputs_honour_the_umask(tmp_path, data, state, capsys, umask, writer):
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        if writer == "save":
            BatchNormalizer().fit(np.load(data)).save(out)
        else:
            args = (
                [data, "-o", out]
                if writer == "fit"
                else ["--state", state, data, "-o", out]
            )
            assert _run(capsys, writer, *args)[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def _npy_with_header(path, header: bytes, payload=b"\0" * 48):
    header = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    path.write_bytes(
        b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload
    )


_BAD_HEADERS = [
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3",  # TokenError
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3),",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': [[[[",
    b"{'descr': '<f8' 'fortran_order': False, 'shape': (2, 3)}",
    b"{'descr': '<f8', 'fortran_order': False}",
    b"{'descr': 'zz', 'fortran_order': False, 'shape': (2, 3)}",
    b"{'descr': '<f8', 'fortran_order': 2, 'shape': (2, 3)}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (-2, 3)}",
    b"[1, 2, 3]",
    b"\xff\xfe garbage",
    b"",
    b"(" * 200,
]


@pytest.mark.parametrize("header", _BAD_HEADERS)
@pytest.mark.parametrize("command", ["fit", "transform"])
def test_malformed_npy_header_is_one_line(tmp_path, state, capsys, header, command):
    bad = tmp_path / "bad.npy"
    _npy_with_header(bad, header)
    out = tmp_path / "out"
    args = [bad, "-o", out] if command == "fit" else ["--state", state, bad, "-o", out]
    before = _listing(tmp_path)
    status, _, err = _run(capsys, command, *args)
    _one_line_error(status, err, "bad.npy")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (5, 0), (4, 0, 2)])
@pytest.mark.parametrize("quiet", [False, True])
@pytest.mark.parametrize("command", ["fit", "transform"])
def test_file_of_no_values_is_refused(tmp_path, state, capsys, shape, quiet, command):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros(shape))
    out = tmp_path / "out"
    args = (
        [empty, "-o", out] if command == "fit" else ["--state", state, empty, "-o", out]
    )
    before = _listing(tmp_path)
    status, stdout, err = _run(capsys, command, *args, *(["-q"] if quiet else []))
    _one_line_error(status, err, "empty.npy", "no values")
    assert stdout == ""
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("command", ["fit", "transform"])
def test_output_that_is_a_directory(tmp_path, data, state, capsys, command):
    target = tmp_path / "existing"
    target.mkdir()
    args = (
        [data, "-o", target]
        if command == "fit"
        else ["--state", state, data, "-o", target]
    )
    before = _listing(tmp_path)
    status, _, err = _run(capsys, command, *args)
    _one_line_error(status, err, str(target))
    assert ".part" not in err and ".tmp" not in err
    assert _listing(tmp_path) == before and _listing(target) == []


def test_save_into_a_directory_or_a_missing_one(tmp_path):
    bn = BatchNormalizer().fit(np.eye(3))
    with pytest.raises(IsADirectoryError) as info:
        bn.save(tmp_path)
    assert info.value.filename == str(tmp_path)
    missing = tmp_path / "no" / "bn.npz"
    with pytest.raises(FileNotFoundError) as info:
        bn.save(missing)
    assert info.value.filename == str(missing)
    assert _listing(tmp_path) == []


# A child that streams a file one row per batch, so that it is still writing
# when the signal comes; the test waits for its temporary file to appear.
CHILD = textwrap.dedent(
    """
    import sys
    from skbn.cli import main
    print("ready", flush=True)  # imports done: main installs its handlers next
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(
    "signum, command",
    [
        (signal.SIGTERM, "transform"),
        (signal.SIGHUP, "transform"),
        (signal.SIGTERM, "fit"),
    ],
)
def test_signal_during_a_write_leaves_nothing(tmp_path, signum, command):
    rows = 400_000
    big = tmp_path / "big.npy"
    np.save(big, np.ones((rows, 2), np.float32))
    state = tmp_path / "state.npz"
    BatchNormalizer().fit(np.ones((4, 2))).save(state)
    out = tmp_path / "out"
    args = [big, "-o", out] if command == "fit" else ["--state", state, big, "-o", out]
    before = _listing(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, command, *map(str, args), "--batch-size", "1"],
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        assert child.stdout.readline() == b"ready\n"
        if command == "transform":
            # Wait until the output is being written.
            while not any(n.endswith(".part") for n in _listing(tmp_path)):
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.02)
        else:
            time.sleep(2)  # the fit streams for long at one row per batch
            assert child.poll() is None, child.communicate()
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signum, err
    assert b"Traceback" not in err
    assert _listing(tmp_path) == before


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--axis", "5"], "--axis"),
        (["--axis", "-3"], "--axis"),
        (["--shape", "10x3", "--axis", "2"], "--axis"),
        (["--shape", "1x1"], "--shape"),
        (["--shape", "1x4x1", "--axis", "1"], "--shape"),
        (["--shape", "8x8", "--shape", "1x8"], "--shape"),
        (["--shape", "100000000000x100000000"], "--shape"),
        (["--operations", ","], "--operations"),
    ],
)
def test_bad_bench_arguments(capsys, argv, option):
    status, stdout, err = _run(
        capsys, "bench", *argv, "--repeats", "1", "--no-accuracy"
    )
    assert status == 2 and stdout == ""
    _one_line_error(status, err, option)


@pytest.mark.parametrize(
    "argv",
    [
        ["--shape", "0x3"],
        ["--shape", "1x"],
        ["--shape", "axb"],
        ["--axis", "one"],
        ["--repeats", "0"],
        ["--threads", "-1"],
    ],
)
def test_bad_bench_arguments_argparse(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["bench", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "skbn bench: error:"
    )


# -- what a user gives instead of a .npy file, or where output cannot go ---------------


@pytest.mark.parametrize(
    "content, kind, how",
    [
        (b"a,b\n1.0,2.0\n3.0,4.0\n", "it is text (CSV?)", "pandas.read_csv("),
        (b"PAR1\x15\x04\x15\x10" + bytes(40), "a Parquet file", "read_parquet("),
        (b"PK\x03\x04" + bytes(40), "zip archive", "numpy.load("),
        (bytes(range(200, 256)) * 2, "does not start as one", "numpy.save("),
    ],
)
@pytest.mark.parametrize("command", ["fit", "transform"])
def test_not_an_npy_file_says_what_it_is_and_how_to_convert(
    capsys, tmp_path, state, content, kind, how, command
):
    path = tmp_path / "table.csv"
    path.write_bytes(content)
    before = _listing(tmp_path)
    if command == "fit":
        argv = ["fit", path, "-o", tmp_path / "new.npz"]
    else:
        argv = ["transform", path, "--state", state, "-o", tmp_path / "out.npy"]
    status, _, err = _run(capsys, *argv)
    _one_line_error(
        status, err, f"{path} is not a readable .npy file", kind, how, "data.npy"
    )
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("command", ["fit", "transform"])
def test_missing_output_folder_is_named(capsys, tmp_path, data, state, command):
    target = tmp_path / "no" / "such" / "out.npy"
    if command == "fit":
        argv = ["fit", data, "-o", target]
    else:
        argv = ["transform", data, "--state", state, "-o", target]
    status, _, err = _run(capsys, *argv)
    _one_line_error(
        status, err, str(target), f"the folder {target.parent} does not exist"
    )
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("name", ["out.csv", "out.NPZ", "out.parquet"])
def test_transform_output_must_be_named_npy(capsys, tmp_path, data, state, name):
    before = _listing(tmp_path)
    status, _, err = _run(
        capsys, "transform", data, "--state", state, "-o", tmp_path / name
    )
    _one_line_error(status, err, name, "ends in .npy", "not .")
    assert _listing(tmp_path) == before


def test_fit_summary_counts_rows_and_batches(capsys, tmp_path):
    X = np.random.default_rng(1).normal(size=(30, 2))
    X[3, 1] = np.nan  # n_samples_seen_ is per feature then; the rows are 30
    path = tmp_path / "x.npy"
    np.save(path, X)
    status, out, _ = _run(capsys, "fit", path, "-o", tmp_path / "s.npz")
    assert status == 0 and "on 30 rows in 1 batch;" in out
    status, out, _ = _run(
        capsys, "fit", path, "-o", tmp_path / "s.npz", "--batch-size", "10"
    )
    assert status == 0 and "on 30 rows in 3 batches;" in out
