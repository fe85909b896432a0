"""``skbn demo`` and ``skbn bench`` time like against like, state each row's
threads and spread, and name their peers plainly."""

import re

import numba
import numpy as np
import pytest

from skbn import _bench, functional
from skbn.cli import main

BENCH = ["bench", "--shape", "300x8", "--repeats", "2", "--no-accuracy"]
DEMO = ["demo", "--rows", "2000", "--repeats", "2", "--epochs", "1"]
# A table row: a label, then two spaces or more, the threads, the output dtype.
ROW = re.compile(r"^\s*(?P<label>\S.*?)\s{2,}(?P<threads>\d+|-)\s{2,}(?P<out>\S+)\s")
# "seed" as a word of the project ("the seed formula"); the demo's --seed
# option, a random seed, is the ordinary meaning.
PROJECT_SEED = re.compile(r"(?<!random )(?<!-)\bseed\b", re.IGNORECASE)


@pytest.fixture(autouse=True)
def keep_numba_threads():
    # --threads sets Numba's process-wide count; later tests expect the default.
    threads = numba.get_num_threads()
    yield
    numba.set_num_threads(threads)


def _rows(out):
    """The rows of every timing table in ``out``: (label, threads, out dtype)."""
    rows, inside = [], False
    for line in out.splitlines():
        if re.match(r"^\s*case\s{2,}threads\s{2,}out\s", line):
            inside = True
        elif inside and (m := ROW.match(line)):
            rows.append((m["label"], m["threads"], m["out"]))
        else:
            inside = False
    return rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 1])
def test_numpy_peer_keeps_the_dtype_and_computes_its_label(dtype, axis):
    X = (np.random.default_rng(0).standard_normal((40, 3, 5)) + 3).astype(dtype)
    peer = _bench.NumpyPeer(X, axis)
    reduce = tuple(a for a in range(3) if a != axis % 3)
    mean, var = X.mean(reduce, keepdims=True), X.var(reduce, keepdims=True)
    expected = (X - mean) / np.sqrt(var + dtype(1e-5))
    for op in ("transform", "fit_transform", "partial_fit_transform"):
        Y = getattr(peer, op)(X)
        assert Y.dtype == dtype, op
        np.testing.assert_array_equal(Y, expected, err_msg=op)
    assert peer.inverse_transform(expected).dtype == dtype
    # Statistics in the input's dtype too: NumPy's own float32 reductions.
    assert peer.mean.dtype == dtype and peer.running_var.dtype == dtype


def test_every_peer_returns_the_input_dtype():
    X = np.random.default_rng(0).standard_normal((500, 8), dtype=np.float32) + 3
    named = _bench.cases(
        X,
        ("transform", "fit_transform"),
        peers=(*_bench.PEERS, *_bench.EXTRA_PEERS),
    )
    results = _bench.run(named, repeats=1)
    assert {"skbn", "NumPy", "NumPy f64 stats", "StandardScaler"} <= {
        k.rsplit(" ", 1)[0] for k in results
    }
    for name, r in results.items():
        if name != "np.copyto (preallocated)":
            assert r.out_dtype == "float32", name
        assert isinstance(r.threads, int) and r.threads >= 1, name


def test_ratio_is_of_medians_with_the_per_round_range():
    a = _bench.Result("NumPy fit", 4.0, [2.0, 4.0, 9.0])
    b = _bench.Result("skbn fit", 2.0, [1.0, 2.0, 2.0])
    assert _bench.ratio(a, b) == (2.0, 2.0, 4.5)
    table = _bench.timing_table({"skbn fit": b, "NumPy fit": a})
    assert "2.00x (2.00-4.50)" in table and "2000-9000" in table


def test_bench_rows_name_threads_dtype_and_spread(capsys):
    assert main(BENCH) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    labels = {label.rsplit(" ", 1)[0] for label, _, _ in rows}
    assert {"skbn", "NumPy", "StandardScaler", "X.copy()"} <= labels, out
    threads = numba.get_num_threads()
    for label, t, dtype in rows:
        assert t.isdigit(), label
        expected = threads if label.startswith("skbn ") else None
        if label.startswith(("NumPy ", "StandardScaler ", "X.copy()")):
            expected = 1
        if expected is not None:
            assert int(t) == expected, label
        if label.endswith("transform"):
            assert dtype == "float32", label
    assert f"skbn on {threads} Numba thread" in out
    assert "NumPy and StandardScaler on 1" in out
    assert re.search(r"NumPy fit_transform .* \d+\.\d+x \(\d+\.\d+-\d+\.\d+\)", out)


def test_bench_threads_1(capsys):
    assert main([*BENCH, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "skbn on 1 Numba thread (--threads 1)" in out
    skbn_rows = [r for r in _rows(out) if r[0].startswith("skbn ")]
    assert skbn_rows and all(t == "1" for _, t, _ in skbn_rows), out


def test_bench_sparse_rows_name_threads(capsys):
    argv = ["bench", "--sparse", "0.1", "--shape", "200x20", "--format", "csr"]
    assert main([*argv, "--repeats", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert any(r[0] == "StandardScaler fit_transform" for r in rows), out
    assert all(t == "1" for _, t, _ in rows), out
    assert "skbn on 1 Numba thread (--threads 1), StandardScaler on 1" in out


def test_demo_rows_name_threads_and_threads_1(capsys):
    assert main([*DEMO, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    starts = [r[0].split("(")[0].split()[0] for r in rows]
    assert starts == ["skbn", "NumPy", "StandardScaler"], out
    assert all(t == "1" and dtype == "float32" for _, t, dtype in rows), out
    assert "skbn on 1 Numba thread (--threads 1)" in out


def test_no_project_jargon_in_output_help_or_docstrings(capsys):
    texts = []
    for argv in (BENCH, DEMO, ["bench", "--help"], ["demo", "--help"]):
        try:
            main(argv)
        except SystemExit:
            pass
        texts.append(capsys.readouterr().out)
    texts += [_bench.__doc__, functional.batch_norm_forward.__doc__]
    texts += [p.__doc__ + p.description for p in _bench.PEERS.values()]
    for text in texts:
        # The demo's option and its metavar: a random seed, as its help says.
        assert not PROJECT_SEED.search(text.replace("--seed SEED", "")), text
        for jargon in ("project's goals", "seed formula", "seed numpy"):
            assert jargon not in text.lower(), text
