"""The examples run, in their quick mode, and save their plots where told.

Each runs in an empty working folder, which must stay empty: a plot goes to
``--out`` (or, without it, to ``skbn-output/``, which the repository's
.gitignore lists), never beside the user's files.
"""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

# script: (lines its output must print, the PNGs it saves)
CASES = {
    "train_mlp.py": (["steps to target", "highest learning rate"], ["train_mlp.png"]),
    "small_batches.py": (
        ["batch renorm", "group norm", "layer norm"],
        ["small_batches.png"],
    ),
    "drift.py": (
        ["mean abs error of the mean", "next batch standardized"],
        ["drift.png", "drift_batch_stats.png"],
    ),
    "small_batch_variance.py": (
        ["mean running var / true var", "ema=mixture"],
        ["small_batch_variance.png"],
    ),
    "streaming_pipeline.py": (["held-out accuracy", "cross-validated"], []),
}


def run(script, cwd, *args):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_example_is_tested():
    assert sorted(CASES) == sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("script", CASES)
def test_example_runs_and_saves_its_plots_in_out(script, tmp_path):
    pytest.importorskip("matplotlib")
    lines, pngs = CASES[script]
    cwd, out = tmp_path / "cwd", tmp_path / "plots"
    cwd.mkdir()
    args = ["--quick", "--out", str(out)] if pngs else []
    stdout = run(script, cwd, *args)
    for text in lines:
        assert text in stdout
    for png in pngs:
        assert (out / png).stat().st_size > 10_000
        assert f"plot: {out / png}" in stdout  # it says where the plot went
    assert list(cwd.iterdir()) == []


def test_plots_go_to_skbn_output_by_default(tmp_path):
    pytest.importorskip("matplotlib")
    stdout = run("small_batch_variance.py", tmp_path, "--quick")
    png = pathlib.Path("skbn-output") / "small_batch_variance.png"
    assert f"plot: {png}" in stdout
    assert (tmp_path / png).stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["skbn-output"]
