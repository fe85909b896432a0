"""The compiled-kernel cache works from a read-only install, and import is lazy."""

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
        "assert ds; "
        "print(sum(len(d.signatures) for d in ds))"
    )
    out = _run(code, dict(os.environ), ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
