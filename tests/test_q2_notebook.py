"""Question 2 through papermill: the runner's plan, the notebook's parameters and its run folders."""
from __future__ import annotations

import subprocess
import sys

import papermill
import pytest

from hw2.engine import store
from tests.conftest import ROOT, subprocess_env


@pytest.mark.slow
def test_runs_q2_smoke_leaves_six_complete_runs_with_their_notebooks(with_smoke_runs):
    cmd = [sys.executable, "-m", "hw2", "runs", "q2", "--profile", "smoke", "--jobs", "2"]
    out = with_smoke_runs.output  # the session's `runs all --profile smoke`
    assert "6 runs planned, 0 complete, 6 to run" in out
    assert "profile=smoke data=standin-" in out  # the banner, streamed from the kernel
    runs = store.list_runs("q2_cnn", "smoke")
    assert sorted((r.config["config"]["lr"], r.config["config"]["no_maxpool"]) for r in runs) == sorted(
        (lr, v) for lr in (0.1, 0.01, 0.001) for v in (False, True))
    for r in runs:
        assert store.check_complete(r.path) is None and (r.path / "run.ipynb").exists()
        assert "run.ipynb" in r.summary["files"] and (r.path / "model.pt").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert "6 runs planned, 6 complete, 0 to run" in again.stdout


def test_notebook_rejects_a_negative_learning_rate(tmp_path, octmnist_dir, results_dir):
    with pytest.raises(papermill.PapermillExecutionError, match="lr must be a positive number"):
        papermill.execute_notebook(str(ROOT / "analysis/q2_cnn.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"lr": -0.01, "profile": "smoke"}, cwd=str(ROOT),
                                   kernel_name="python3", progress_bar=False)
    assert not (results_dir / "q2_cnn").exists()
