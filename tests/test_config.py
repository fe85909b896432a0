"""The compiled-kernel cache works from a read-only install, import is lazy and
changes no Numba setting, and the threading layer decides serial or threaded."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import skbn

ROOT = Path(skbn.__file__).resolve().parent


def _run(code, env, cwd):
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_read_only_package_caches_to_user_dir(tmp_path):
    pkg = tmp_path / "site" / "skbn"
    shutil.copytree(ROOT, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for p in [pkg, *pkg.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    # Permission bits do not stop root (CI runs as root): a plain file named
    # __pycache__ makes the in-tree cache folder impossible for anyone.
    kernels = pkg / "_kernels"
    for folder in [kernels, *(p for p in kernels.iterdir() if p.is_dir())]:
        folder.chmod(folder.stat().st_mode | stat.S_IWUSR)
        (folder / "__pycache__").write_text("")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    env["PYTHONPATH"] = str(pkg.parent)
    code = (
        "import numpy as np, skbn; "
        f"assert skbn.__file__.startswith({str(pkg.parent)!r}); "
        "print(skbn.BatchNormalizer().fit_transform(np.ones((3, 2))).sum())"
    )
    try:
        first = _run(code, env, tmp_path)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == "0.0"
        # Nothing was written into the package, the cache went to the user dir.
        assert (kernels / "__pycache__").is_file()
        assert not list(pkg.rglob("*.nbi"))
        cached = list((home / ".cache").rglob("*.nbi"))
        assert cached, "no numba cache index in the user-wide cache directory"
    finally:
        for p in [pkg, *pkg.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_import_compiles_nothing():
    code = (
        "import skbn, skbn._kernels.cpu as k; "
        "from numba.core.registry import CPUDispatcher; "
        "ds = [v for v in vars(k).values() if isinstance(v, CPUDispatcher)]; "
        "ds += [d.serial for d in ds if hasattr(d, 'serial')]; "
        "assert ds; "
        "print(sum(len(d.signatures) for d in ds))"
    )
    out = _run(code, dict(os.environ), ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_import_changes_no_numba_setting():
    # Importing a library must not change the process: the threading layer
    # stays what the program (or NUMBA_THREADING_LAYER) made it, also after
    # skbn decided whether its kernels may run threaded.
    code = (
        "import numba; before = numba.config.THREADING_LAYER; "
        "import skbn, skbn._config as c; "
        "assert numba.config.THREADING_LAYER == before, numba.config.THREADING_LAYER; "
        "c.use_parallel(1 << 40); "
        "assert numba.config.THREADING_LAYER == before, numba.config.THREADING_LAYER; "
        "print(before)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = _run(code, env, ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "default"
    env["NUMBA_THREADING_LAYER"] = "workqueue"
    out = _run(code, env, ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "workqueue"


def test_expected_layer_is_the_one_numba_starts():
    # The prediction, made before Numba starts its threads, names the layer
    # Numba then loads; after that, Numba's own answer is used.
    code = (
        "import numba, numpy as np, skbn._config as c; "
        "predicted = c.expected_threading_layer(); "
        "f = numba.njit(parallel=True)(lambda x: x + 1); f(np.ones(4)); "
        "assert c.expected_threading_layer() == numba.threading_layer(); "
        "print(predicted, numba.threading_layer())"
    )
    for layer in (None, "workqueue", "threadsafe"):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
        if layer is not None:
            env["NUMBA_THREADING_LAYER"] = layer
        out = _run(code, env, ROOT.parent)
        if layer == "threadsafe" and "No threading layer" in out.stderr:
            continue  # neither tbb nor omp here: Numba refuses, as predicted
        assert out.returncode == 0, out.stderr
        predicted, started = out.stdout.split()
        assert predicted == started


def test_workqueue_runs_serial_kernels_from_threads():
    # Numba's workqueue layer aborts on concurrent launches: with it, skbn
    # takes the serial kernels, so a thread pool of large fits exits cleanly.
    code = (
        "import numpy as np, skbn, skbn._config as c; "
        "from concurrent.futures import ThreadPoolExecutor; "
        "assert not c.parallel_is_threadsafe(); "
        "n = 2 * c.MIN_PARALLEL_ELEMENTS; assert not c.use_parallel(n); "
        "X = np.ones((n // 8, 8)); "
        "pool = ThreadPoolExecutor(4); "
        "fits = [pool.submit(skbn.BatchNormalizer().fit, X) for _ in range(8)]; "
        "print(sum(f.result().n_samples_seen_ for f in fits))"
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    out = _run(code, env, ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(8 * (1 << 18) // 8)


def test_use_parallel_reads_the_threshold_at_call_time(monkeypatch):
    from skbn import _config

    monkeypatch.setattr(_config, "parallel_is_threadsafe", lambda: True)
    n = _config.MIN_PARALLEL_ELEMENTS
    assert _config.use_parallel(n) and not _config.use_parallel(n - 1)
    monkeypatch.setattr(_config, "MIN_PARALLEL_ELEMENTS", 1)
    assert _config.use_parallel(1) and not _config.use_parallel(0)
    # No thread-safe layer: never threaded, whatever the size.
    monkeypatch.setattr(_config, "parallel_is_threadsafe", lambda: False)
    assert not _config.use_parallel(1 << 40)


def test_parallel_is_threadsafe_matches_the_layer():
    from skbn import _config

    expected = _config.expected_threading_layer() in ("tbb", "omp")
    assert _config.parallel_is_threadsafe() is expected
