"""Shared fixtures: every test writes data and results under tmp folders, never into the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    path = tmp_path / "results"
    monkeypatch.setenv("HW2_RESULTS_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def octmnist_standin(tmp_path_factory):
    """The full-size stand-in OCTMNIST file, generated once per test session."""
    from hw2.data import octmnist

    data = tmp_path_factory.mktemp("octmnist")
    octmnist.write_standin(data / octmnist.FILE, seed=0)
    return data / octmnist.FILE


@pytest.fixture
def octmnist_dir(octmnist_standin, monkeypatch):
    """HW2_DATA_DIR pointing at the session's stand-in OCTMNIST."""
    monkeypatch.setenv("HW2_DATA_DIR", str(octmnist_standin.parent))
    return octmnist_standin.parent


@pytest.fixture(autouse=True)
def _no_network_downloads(monkeypatch):
    # Tests never fetch data: an attempt would mean a fixture is missing.
    monkeypatch.setenv("HW2_OFFLINE", "1")
    yield


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env
