"""Ctrl-C during `python -m hw2 runs`: one Ctrl-C stops the notebook being executed (its runs keep the checkpoint
of their last finished epoch) and the runner, with one line saying what was kept, and exit status 130; a second
Ctrl-C while it stops changes nothing of that (no traceback)."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, subprocess_env

from hw2.engine import store
from hw2.q2 import experiment as q2_experiment

# Every epoch of Question 2 lasts at least this long in the processes started with SLOW_EPOCHS on their path
# (the runner and the notebook's kernel, which inherits the environment), so that Ctrl-C falls mid-run.
EPOCH_SECONDS = 3.0
SLOW_EPOCHS = '''
import os
import sys
import time

if os.environ.get("HW2_TEST_EPOCH_SECONDS"):
    sys.path.insert(0, os.environ["HW2_TEST_ROOT"])  # the checkout under test, not whatever else is installed
    import hw2.q2.train as q2

    _train_epoch = q2.train_epoch

    def train_epoch(*args, **kwargs):
        time.sleep(float(os.environ["HW2_TEST_EPOCH_SECONDS"]))
        return _train_epoch(*args, **kwargs)

    q2.train_epoch = train_epoch
'''


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2], ids=["ctrl-c", "ctrl-c-twice"])
def test_ctrl_c_stops_the_notebook_and_the_runner_keeping_the_last_checkpoint(
        octmnist_dir, results_dir, tmp_path, capsys, presses):
    """Once: the kernel is interrupted and the training code unwinds. Twice (impatient, while it stops): the
    kernel is killed at once; the checkpoints are whole either way."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_EPOCHS)
    env = subprocess_env(HW2_DATA_DIR=octmnist_dir, HW2_RESULTS_DIR=results_dir, HW2_TEST_EPOCH_SECONDS=EPOCH_SECONDS,
                         HW2_TEST_ROOT=ROOT, PYTHONPATH=hooks)
    source = q2_experiment.prepare_data("smoke")
    first = q2_experiment.plan("smoke")[0]  # the execution the runner starts first (--jobs 1)
    specs = q2_experiment.specs(first, "smoke", source)
    checkpoints = [spec.partial_path / store.Run.CHECKPOINT for spec in specs]

    # Its own session, as a shell's job: Ctrl-C signals the whole group, as a terminal does.
    runner = subprocess.Popen([sys.executable, "-m", "hw2", "runs", "q2", "--profile", "smoke"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not all(path.exists() for path in checkpoints):  # epoch 1 finished: epoch 2 is under way
            assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
            time.sleep(0.05)
        for _ in range(presses):
            os.killpg(runner.pid, signal.SIGINT)
            time.sleep(0.3)
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    names = ", ".join(f"q2_cnn/{spec.name}" for spec in specs)
    line = f"[hw2] stopped by Ctrl-C: {names} keep the checkpoint of epoch 1; run the same command again to resume"
    assert (runner.returncode, err.splitlines()[-1]) == (130, line), out[-2000:] + err[-3000:]
    assert (out + err).count("[hw2] stopped by Ctrl-C") == 1 and "Traceback" not in out + err
    assert "FAILED" not in err and "done in" not in out  # nothing else was run or reported
    # The notebook's kernel is gone (it held the runs' locks), and it left nothing half-written.
    for spec in specs:
        with open(spec.lock_path) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not spec.path.exists() and store.Run(spec).checkpoints().keys() == {1}
    assert not [p for p in results_dir.rglob("*") if store.TEMPORARY_RE.match(p.name)]

    # The same command again resumes from there (here in this process, without the slow epochs).
    capsys.readouterr()
    runs = q2_experiment.run(**first, profile="smoke", progress=False)
    assert all(len(run.history) == 2 for run in runs)
    out = capsys.readouterr().out
    assert all(f"resuming {spec.name} after epoch 1" in out for spec in specs)


@pytest.mark.slow
def test_a_notebooks_output_is_streamed_once_and_its_temporary_copy_removed(results_dir, tmp_path):
    import nbformat

    notebook = tmp_path / "prints.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys\nprint('to stdout once')\nprint('to stderr once', file=sys.stderr)")]), notebook)
    script = ("import sys\nfrom pathlib import Path\nfrom hw2.engine import runner as runs, store\n"
              "spec = store.RunSpec.create('demo', {}, 'smoke', 'synthetic', slug='demo')\n"
              "try:\n    runs.execute_notebook(Path(sys.argv[1]), {}, [spec])\n"
              "except store.RunError as error:\n    print(error)\n")
    done = subprocess.run([sys.executable, "-c", script, str(notebook)], cwd=ROOT, capture_output=True, text=True,
                          env=subprocess_env(HW2_RESULTS_DIR=results_dir), timeout=120)
    assert "finished but " in done.stdout and ": missing; the notebook must call" in done.stdout  # it wrote no run
    assert (done.stdout.count("to stdout once"), done.stderr.count("to stderr once")) == (1, 1), done.stderr
    assert list((results_dir / "demo").iterdir()) == []  # the executed notebook's temporary copy is gone
