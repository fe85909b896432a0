"""The asv suites in benchmarks/ import, and every benchmark runs once.

Each benchmark's ``setup`` and one call of each of its ``time_``,
``peakmem_`` and ``track_`` methods run for every parameter combination, on
arrays cut to a few thousand values (``benchmarks._data.MAX_ELEMENTS``), so a
suite that no longer matches skbn's API fails here rather than an hour into
an asv run.  Then asv itself discovers every suite and runs one benchmark
(``asv run --quick --dry-run``).
"""

import importlib
import inspect
import itertools
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SUITES = sorted(p.stem for p in BENCHMARKS.glob("bench_*.py"))
PREFIXES = ("time_", "peakmem_", "track_")


@pytest.fixture
def small(monkeypatch):
    """The ``benchmarks`` package, importable, with its arrays cut small."""
    monkeypatch.syspath_prepend(str(ROOT))
    data = importlib.import_module("benchmarks._data")
    monkeypatch.setattr(data, "MAX_ELEMENTS", 4096)
    data._DATA.clear()
    yield
    data._DATA.clear()


def benchmark_classes(module):
    for name, cls in vars(module).items():
        if (
            not name.startswith("_")  # asv skips these too: shared bases
            and inspect.isclass(cls)
            and cls.__module__ == module.__name__
            and any(m.startswith(PREFIXES) for m in dir(cls))
        ):
            yield name, cls


def combinations(cls):
    params = getattr(cls, "params", [])
    if params and not isinstance(params[0], list):
        params = [params]  # asv's spelling of a single parameter
    return list(itertools.product(*params))


@pytest.mark.parametrize("suite", SUITES)
def test_every_benchmark_runs_once(suite, small):
    module = importlib.import_module(f"benchmarks.{suite}")
    classes = dict(benchmark_classes(module))
    assert classes, f"{suite} has no benchmarks"
    for name, cls in classes.items():
        methods = [m for m in dir(cls) if m.startswith(PREFIXES)]
        if hasattr(cls, "runs"):  # ColdStart: one new process, not three
            cls = type(name, (cls,), {"runs": 1})
        ran = 0
        for args in combinations(cls):
            for method in methods:
                bench = cls()
                try:
                    bench.setup(*args)
                except NotImplementedError:
                    # asv skips such a case too: torch not installed, or an
                    # operation or shape a peer does not cover.
                    continue
                value = getattr(bench, method)(*args)
                if method.startswith("track_"):
                    assert value > 0, (name, method, args)
                ran += 1
        assert ran, f"{suite}.{name}: every combination was skipped"


def test_skbn_suite_is_skbn_alone(small):
    """skbn's own history has no peers in it: those are in bench_peers."""
    module = importlib.import_module("benchmarks.bench_skbn")
    for name, cls in benchmark_classes(module):
        assert "peer" not in getattr(cls, "param_names", []), name
    peers = importlib.import_module("benchmarks.bench_peers")
    assert peers.PEER_NAMES == ["skbn", "numpy", "StandardScaler", "torch"]


def test_asv_discovers_the_suites_and_runs_one(tmp_path, small):
    """asv itself finds every suite's benchmarks and runs one, quick."""
    pytest.importorskip("asv")
    import skbn

    conf = {
        "version": 1,
        "project": "skbn",
        "repo": str(ROOT),
        "environment_type": "virtualenv",  # required, though unused here
        "benchmark_dir": str(BENCHMARKS),
        "env_dir": str(tmp_path / "env"),
        "results_dir": str(tmp_path / "results"),
        "html_dir": str(tmp_path / "html"),
    }
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    env = {
        **os.environ,
        # asv keeps its machine description in ~/.asv-machine.json: a
        # throwaway home keeps this test's out of the user's.
        "HOME": str(tmp_path),
        # asv drops PYTHONPATH; ASV_PYTHONPATH puts the skbn these tests
        # import (the installed wheel in CI, a source tree in development)
        # first, as it is for them.
        "ASV_PYTHONPATH": str(pathlib.Path(skbn.__file__).resolve().parents[1]),
    }

    def asv(*args):
        out = subprocess.run(
            [sys.executable, "-m", "asv", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    asv("machine", "--yes")
    one = "bench_skbn.SmallBatches.time_transform"
    stdout = asv("run", "--python=same", "--quick", "--dry-run", "--bench", f"^{one}$")
    # A time, not "failed" or "n/a": the benchmark ran.
    assert re.search(re.escape(one) + r"\s+[0-9.]+±[0-9.]+[mu]?s", stdout), stdout
    found = json.loads((tmp_path / "results" / "benchmarks.json").read_text())
    for suite in SUITES:
        module = importlib.import_module(f"benchmarks.{suite}")
        for name, _ in benchmark_classes(module):
            assert any(key.startswith(f"{suite}.{name}.") for key in found), name
