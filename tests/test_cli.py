"""The ``skbn`` command line: ``main``, ``python -m skbn`` and the script."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import skbn
from skbn.cli import main

# A small timed array keeps the test fast; the speed table is not checked,
# only that the demo runs end to end and the models learn.
QUICK_DEMO = ["demo", "--rows", "2000", "--repeats", "1"]


def test_demo_reports_accuracies_and_speed_table(capsys):
    assert main(QUICK_DEMO) == 0
    out = capsys.readouterr().out
    held_out = re.search(r"held-out accuracy: (\d\.\d+)", out)
    cross_val = re.search(r"accuracy: (\d\.\d+) \+/-", out)
    assert held_out and cross_val, out
    # Linear models on standardized digits score ~0.92-0.96; 0.85 leaves room
    # for a different sklearn version but fails a broken normalizer.
    assert float(held_out.group(1)) > 0.85
    assert float(cross_val.group(1)) > 0.85
    # skbn's row is the reference; each peer's row gives its time / skbn.
    assert re.search(r"BatchNormalizer\(\).*float32\s+\d", out), out
    for contender in ("StandardScaler", "NumPy"):
        assert re.search(rf"{contender}.*\d+\.\d+x \(", out), out


@pytest.mark.parametrize("bad", [["--rows", "0"], ["--epochs", "x"]])
def test_demo_rejects_bad_counts(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", *bad])
    assert exc.value.code == 2
    assert "must be an integer >= 1" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_skbn():
    # The child must import the skbn under test, wherever pytest was started.
    env = {**os.environ, "PYTHONPATH": str(Path(skbn.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "skbn", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout


def test_console_script():
    # The script exists only where skbn was pip-installed into this
    # interpreter's environment, not when tests run from a bare checkout.
    script = Path(sys.executable).parent / "skbn"
    if not script.exists():
        pytest.skip("the skbn console script is not installed here")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skbn ")


def test_bench_prints_peer_table_and_memory_bound(capsys):
    from skbn.cli import main

    status = main(
        [
            "bench",
            "--shape",
            "300x8",
            "--shape",
            "4x3x5x5",
            "--axis",
            "1",
            "--repeats",
            "1",
            "--operations",
            "fit,transform,inverse_transform",
            "--no-accuracy",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "300 x 8 float32" in out and "4 x 3 x 5 x 5 float32, axis=1" in out
    for op in ("fit", "transform", "inverse_transform"):
        assert f"skbn {op}" in out
    assert "/ bound" in out and "copy bandwidth" in out


def test_bench_rejects_unknown_operation(capsys):
    from skbn.cli import main

    assert main(["bench", "--shape", "10x2", "--operations", "fly"]) == 2
    assert "unknown operation(s) fly" in capsys.readouterr().err
