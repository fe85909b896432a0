"""The examples run, in their quick mode, and save their plots."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

# script: lines its table must print
CASES = {
    "train_mlp.py": ["steps to target", "highest learning rate"],
    "small_batches.py": ["batch renorm", "group norm", "layer norm"],
    "drift.py": ["mean abs error of the mean", "next batch standardized"],
    "small_batch_variance.py": ["mean running var / true var", "ema=mixture"],
}


@pytest.mark.parametrize("script", CASES)
def test_example_runs_and_saves_its_plot(script, tmp_path):
    pytest.importorskip("matplotlib")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for text in CASES[script]:
        assert text in out.stdout
    png = tmp_path / script.replace(".py", ".png")
    assert png.stat().st_size > 10_000
