"""``skbn fit`` / ``skbn transform``: out of core over .npy files."""

import os
import subprocess
import sys
import textwrap
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


@pytest.fixture
def data(tmp_path, rng):
    X = rng.normal(5.0, 2.0, size=(1003, 6)).astype(np.float32)
    path = tmp_path / "data.npy"
    np.save(path, X)
    return X, path


def test_fit_then_transform_exact(tmp_path, data, capsys):
    X, path = data
    state, out = tmp_path / "state.npz", tmp_path / "out.npy"
    status, stdout, err = _run(capsys, "fit", path, "-o", state, "--batch-size", 100)
    assert status == 0, err
    assert "11 batches" in stdout and err == ""  # no progress bar off a terminal
    bn = BatchNormalizer.load(state)
    want = BatchNormalizer(momentum=None).fit(X)  # the default: exact statistics
    np.testing.assert_allclose(bn.running_mean_, want.running_mean_, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var_, want.running_var_, rtol=1e-12)
    status, _, err = _run(capsys, "transform", path, "--state", state, "-o", out, "-q")
    assert status == 0, err
    Y = np.load(out)
    assert Y.dtype == np.float32 and Y.shape == X.shape
    np.testing.assert_array_equal(Y, bn.transform(X))
    assert sorted(os.listdir(tmp_path)) == ["data.npy", "out.npy", "state.npz"]


def test_momentum_streams_like_partial_fit(tmp_path, data, capsys):
    X, path = data
    state = tmp_path / "s.npz"
    argv = ["fit", path, "-o", state, "--batch-size", 300, "--momentum", 0.5, "-q"]
    assert _run(capsys, *argv) == (0, "", "")
    want = BatchNormalizer(momentum=0.5)
    for start in range(0, len(X), 300):
        want.partial_fit(X[start : start + 300])
    got = BatchNormalizer.load(state)
    assert got.momentum == 0.5 and got.n_batches_seen_ == 4
    np.testing.assert_array_equal(got.running_var_, want.running_var_)


def test_nd_fortran_and_integer_files(tmp_path, rng, capsys):
    images = rng.normal(size=(20, 3, 4, 5))
    np.save(tmp_path / "img.npy", np.asfortranarray(images))
    argv = ["fit", tmp_path / "img.npy", "-o", tmp_path / "s", "--axis", "1", "-q"]
    assert _run(capsys, *argv)[0] == 0
    want = BatchNormalizer(axis=1).fit(images)
    got = BatchNormalizer.load(tmp_path / "s")
    np.testing.assert_allclose(got.running_var_, want.running_var_, rtol=1e-12)
    argv = ["fit", tmp_path / "img.npy", "-o", tmp_path / "s2", "--axis", "1,3", "-q"]
    assert _run(capsys, *argv)[0] == 0
    assert BatchNormalizer.load(tmp_path / "s2").n_features_in_ == 15
    ints = rng.integers(0, 100, size=(50, 2))
    np.save(tmp_path / "int.npy", ints)
    assert (
        _run(capsys, "fit", tmp_path / "int.npy", "-o", tmp_path / "s3", "-q")[0] == 0
    )
    argv = ["transform", tmp_path / "int.npy", "--state", tmp_path / "s3"]
    assert _run(capsys, *argv, "-o", tmp_path / "o.npy", "-q")[0] == 0
    out = np.load(tmp_path / "o.npy")
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, BatchNormalizer().fit(ints).transform(ints))


def _assert_one_line_error(status, err, *words):
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skbn "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], err


def test_fit_errors(tmp_path, rng, capsys):
    state = tmp_path / "s.npz"
    missing = _run(capsys, "fit", tmp_path / "missing.npy", "-o", state)
    _assert_one_line_error(missing[0], missing[2], "missing.npy", "No such file")
    np.save(tmp_path / "str.npy", np.array([["a", "b"]]))
    strings = _run(capsys, "fit", tmp_path / "str.npy", "-o", state)
    _assert_one_line_error(strings[0], strings[2], "numeric")
    np.save(tmp_path / "obj.npy", np.array([[1, None]], dtype=object))
    objects = _run(capsys, "fit", tmp_path / "obj.npy", "-o", state)
    _assert_one_line_error(objects[0], objects[2], "numeric")
    (tmp_path / "text.npy").write_text("1,2,3\n")
    text = _run(capsys, "fit", tmp_path / "text.npy", "-o", state)
    _assert_one_line_error(text[0], text[2], "not a readable .npy")
    np.save(tmp_path / "one.npy", np.ones(5))
    one_d = _run(capsys, "fit", tmp_path / "one.npy", "-o", state)
    _assert_one_line_error(one_d[0], one_d[2], "1-D")
    np.save(tmp_path / "two.npy", np.ones((5, 2)))
    axis0 = _run(capsys, "fit", tmp_path / "two.npy", "-o", state, "--axis", "0")
    _assert_one_line_error(axis0[0], axis0[2], "axis 0")
    cut = tmp_path / "cut.npy"
    cut.write_bytes((tmp_path / "two.npy").read_bytes()[:-8])
    truncated = _run(capsys, "fit", cut, "-o", state)
    _assert_one_line_error(truncated[0], truncated[2], "truncated")
    bad = rng.normal(size=(10, 2))
    bad[7, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    inf = _run(capsys, "fit", tmp_path / "inf.npy", "-o", state)
    _assert_one_line_error(inf[0], inf[2], "infinity in feature 1")
    assert not state.exists()


@pytest.mark.parametrize("bad", [["--momentum", "1.5"], ["--axis", "x"]])
def test_fit_usage_errors(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s"), *bad])
    assert exc.value.code == 2


def test_transform_errors_leave_no_output(tmp_path, data, rng, capsys):
    X, path = data
    state, out = tmp_path / "s.npz", tmp_path / "out.npy"
    assert _run(capsys, "fit", path, "-o", state, "-q")[0] == 0
    out.write_bytes(b"previous result")  # a failed run must not touch it
    np.save(tmp_path / "narrow.npy", X[:, :4])
    wrong = _run(
        capsys, "transform", tmp_path / "narrow.npy", "--state", state, "-o", out
    )
    _assert_one_line_error(wrong[0], wrong[2], "4 features", "expecting 6")
    (tmp_path / "pickle.npz").write_bytes(b"\x80\x04\x95cos\nsystem\n")
    pickled = _run(
        capsys, "transform", path, "--state", tmp_path / "pickle.npz", "-o", out
    )
    _assert_one_line_error(pickled[0], pickled[2], "not an skbn state file")
    missing = _run(capsys, "transform", path, "--state", tmp_path / "nope", "-o", out)
    _assert_one_line_error(missing[0], missing[2], "nope")
    # Fails in the last batch, after most of the output was written.
    late = X.copy()
    late[-1, 3] = np.inf
    np.save(tmp_path / "late.npy", late)
    argv = ["transform", tmp_path / "late.npy", "--state", state, "-o", out]
    failed = _run(capsys, *argv, "--batch-size", "100")
    _assert_one_line_error(failed[0], failed[2], "infinity")
    nowhere = _run(
        capsys, "transform", path, "--state", state, "-o", tmp_path / "no/o.npy"
    )
    _assert_one_line_error(nowhere[0], nowhere[2], "No such file")
    assert out.read_bytes() == b"previous result"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_progress_bar_on_a_terminal(tmp_path, data, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    X, path = data
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert (
        main(["fit", str(path), "-o", str(tmp_path / "s"), "--batch-size", "100"]) == 0
    )
    assert "rows" in capsys.readouterr().err
    argv = ["fit", str(path), "-o", str(tmp_path / "s"), "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr() == ("", "")
    # Without tqdm, a plain percentage.
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert (
        main(
            [
                "transform",
                str(path),
                "--state",
                str(tmp_path / "s"),
                "-o",
                str(tmp_path / "o.npy"),
            ]
        )
        == 0
    )
    assert "transform: 100%" in capsys.readouterr().err


def test_error_exits_without_traceback_in_a_real_process(tmp_path):
    # In-process tests see main's return value; this checks what a shell sees.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "skbn",
            "fit",
            str(tmp_path / "missing.npy"),
            "-o",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "missing.npy" in result.stderr


# A file several times larger than the address space the process may still
# take: the child measures its own size after a warm-up (interpreter, numba,
# compiled kernels, threads), caps RLIMIT_AS at that plus BUDGET, checks that
# loading the file whole now fails, and runs fit and transform on it.
BUDGET = 200 << 20
FILE_ROWS = (600 << 20) // (16 * 4)  # 600 MiB of float32, 16 features

CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from skbn.cli import main

    def address_space():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    small, big, state, out, budget = sys.argv[1:6]
    assert main(["fit", small, "-o", state, "-q"]) == 0
    assert main(["transform", small, "--state", state, "-o", out, "-q"]) == 0
    base = address_space()
    limit = base + int(budget)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        np.load(big)
    except MemoryError:
        pass
    else:
        sys.exit("the file fits in memory: the test proves nothing")
    assert main(["fit", big, "-o", state, "-q"]) == 0
    assert main(["transform", big, "--state", state, "-o", out, "-q"]) == 0
    print(base, address_space(), limit)
    """
)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS"
)
def test_file_larger_than_the_address_space_limit(tmp_path):
    rng = np.random.default_rng(0)
    big = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(
        big, mode="w+", dtype=np.float32, shape=(FILE_ROWS, 16)
    )
    # 16 MiB of noise, shifted per block: cheap to write, far from zero.
    block = rng.normal(0.0, 1.0, size=(1 << 18, 16)).astype(np.float32)
    for i, start in enumerate(range(0, FILE_ROWS, len(block))):
        rows = X[start : start + len(block)]
        rows[...] = block[: len(rows)] + np.float32(100 + i)
    X.flush()
    del X
    np.save(tmp_path / "small.npy", block[:20_000])
    state, out = tmp_path / "state.npz", tmp_path / "out.npy"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "small.npy"),
            str(big),
            str(state),
            str(out),
            str(BUDGET),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    base, peak, limit = map(int, result.stdout.split())
    assert big.stat().st_size > 2.5 * (limit - base)
    # The right numbers: the state against the exact statistics, the output
    # against transform, both checked here, in memory, in slices.
    X = np.load(big, mmap_mode="r")
    want = BatchNormalizer(momentum=None).fit(X)
    bn = BatchNormalizer.load(state)
    np.testing.assert_allclose(bn.running_mean_, want.running_mean_, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var_, want.running_var_, rtol=1e-12)
    Y = np.load(out, mmap_mode="r")
    assert Y.shape == X.shape and Y.dtype == np.float32
    for start in range(0, FILE_ROWS, 1 << 20):
        rows = slice(start, start + (1 << 20))
        np.testing.assert_array_equal(Y[rows], bn.transform(X[rows]))
