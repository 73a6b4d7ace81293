"""Shared fixtures: every test writes data and results under tmp folders, never into the checkout."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A suite started in the background by a shell without job control (`(nohup make test &)`) inherits Ctrl-C
# ignored, and so would every process it starts: `hw2 preview` would never stop. The tests that press Ctrl-C
# need it delivered, as in a terminal; a process started with Python's handler gets the default on exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    path = tmp_path / "results"
    monkeypatch.setenv("HW2_RESULTS_DIR", str(path))
    return path


# The smoke profile trains on 400 images and validates on 200: a small stand-in file is enough for tests.
SMALL_OCTMNIST = {"train": 0.006, "val": 0.02}


@pytest.fixture(scope="session")
def octmnist_standin(tmp_path_factory):
    """A small stand-in OCTMNIST file (583 training, 215 validation, all 1,000 test images), made once per
    test session."""
    from hw2.q2 import octmnist

    data = tmp_path_factory.mktemp("octmnist")
    octmnist.write_standin(data / octmnist.FILE, seed=0, fractions=SMALL_OCTMNIST)
    return data / octmnist.FILE


@pytest.fixture
def octmnist_dir(octmnist_standin, monkeypatch):
    """HW2_DATA_DIR pointing at the session's stand-in OCTMNIST."""
    monkeypatch.setenv("HW2_DATA_DIR", str(octmnist_standin.parent))
    return octmnist_standin.parent


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory, octmnist_standin):
    """Every question's smoke runs, made ONCE per test session by the runner through the papermill notebooks,
    as `PROFILE=smoke make runs` makes them; shared by the runner, notebook and report tests. `env` points
    HW2_DATA_DIR and HW2_RESULTS_DIR at them; `output` is what the runner printed."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from hw2.q2 import octmnist

    root = tmp_path_factory.mktemp("smoke")
    data = root / "data"
    data.mkdir()
    (data / octmnist.FILE).symlink_to(octmnist_standin)
    env = {"HW2_DATA_DIR": str(data), "HW2_RESULTS_DIR": str(root / "results"), "HW2_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "hw2", "runs", "all", "--profile", "smoke", "--jobs", "2"],
                          cwd=ROOT, env=subprocess_env(**env), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return SimpleNamespace(env=env, output=done.stdout + done.stderr, results=root / "results", data=data)


@pytest.fixture
def with_smoke_runs(smoke_runs, monkeypatch):
    """The session's smoke runs, with this test's environment pointing at them."""
    for key, value in smoke_runs.env.items():
        monkeypatch.setenv(key, value)
    return smoke_runs


@pytest.fixture(autouse=True)
def _no_network_downloads(monkeypatch):
    # Tests never fetch data: an attempt would mean a fixture is missing.
    monkeypatch.setenv("HW2_OFFLINE", "1")
    yield


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env
