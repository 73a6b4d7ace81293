"""A fourth experiment joins through the registry and the contract alone: a package, a registry entry and a
notebook, and the runner, `status` and the Makefile's run targets take it up (the README's steps)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import nbformat
import pytest

from hw2.engine import registry, runner, store
from hw2.engine.paths import project_root

TOY = '''
"""A toy experiment: fits the mean of n numbers, one epoch a number, checkpointing every epoch."""
from hw2.engine import registry, store
from hw2.engine.errors import ConfigError
from hw2.engine.profiles import banner, resolve_profile

ENTRY = registry.Experiment("q4_toy", "q4", "Question 4 (toy)", __name__, notebook={notebook!r})
PARAMETERS = {{"n": 3, "profile": None}}
CHECKPOINT_UNIT = "epoch"


def plan(profile):
    return [{{"n": 2}}, {{"n": 3}}]


def data_source(profile):
    return "synthetic"


prepare_data = data_source


def verify_data(profile):
    return []


def data_status(profile):
    return registry.DataStatus("synthetic")


def fetch_data():
    return None


def configs(params, profile):
    n = {{**PARAMETERS, **params}}["n"]
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a whole number of at least 1, got {{n!r}}")
    return [{{"n": n}}]


def specs(params, profile, data_source):
    return [store.RunSpec.of(ENTRY, c, resolve_profile(profile), data_source, slug=f"n{{c['n']}}")
            for c in configs(params, profile)]


def train(run, n):
    total = 0.0
    for epoch in range(1, n + 1):
        total += epoch
        run.log_epoch({{"epoch": epoch, "mean": total / epoch}})
        run.save_checkpoint({{"total": total}})
    return {{"mean": total / n}}


def run(n=3, profile=None):
    profile = resolve_profile(profile)
    (spec,) = specs({{"n": n}}, profile, "synthetic")
    print(banner(ENTRY.name, profile, "synthetic", "cpu"), flush=True)
    return store.execute(spec, lambda r: train(r, n), "cpu")
'''


@pytest.fixture
def toy(tmp_path, monkeypatch, results_dir):
    package = tmp_path / "code" / "hw2_toy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    notebook = tmp_path / "q4_toy.ipynb"
    (package / "experiment.py").write_text(textwrap.dedent(TOY.format(notebook=str(notebook))))
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"},
                                            "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("from hw2_toy import experiment\n\nglobals().update(experiment.PARAMETERS)",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from hw2.engine.runner import notebook_parameters\n\n"
                                          "params = notebook_parameters(globals(), experiment)"),
                nbformat.v4.new_code_cell("run = experiment.run(**params)")]
    nbformat.write(nb, notebook)
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setenv("PYTHONPATH", str(package.parent))  # the notebook's kernel imports it too
    from hw2_toy import experiment

    monkeypatch.setattr(registry, "EXPERIMENTS", [*registry.EXPERIMENTS, experiment.ENTRY])
    monkeypatch.setattr(registry, "by_module", lambda module: {e.module: e for e in registry.EXPERIMENTS}[module])
    yield experiment
    store.code_fingerprints.cache_clear()


@pytest.mark.slow
def test_a_registered_toy_experiment_runs_through_the_runner_and_status(toy, results_dir, capsys):
    from hw2.__main__ import main

    assert main(["status", "--profile", "smoke"]) == 0
    assert "q4 (profile smoke, data synthetic): 2 planned: 0 current, 0 stale, 2 missing" in capsys.readouterr().out
    assert runner.run_question("q4", "smoke", jobs=2) == 0
    for n in (2, 3):
        (spec,) = toy.specs({"n": n}, "smoke", "synthetic")
        run = store.load(spec.path)
        assert run.summary["mean"] == (n + 1) / 2 and "run.ipynb" in run.summary["files"]
        assert json.loads((spec.path / "config.json").read_text())["command"] == "make runs-q4"
        # its code identity is its own package's module (and the hw2 modules it imports, outside the engine)
        assert list(run.config["code_files"]) == ["hw2_toy/experiment.py"]
    assert main(["status", "--profile", "smoke"]) == 0
    assert "q4 (profile smoke, data synthetic): 2 planned: 2 current, 0 stale, 0 missing" in capsys.readouterr().out


def test_the_notebook_check_and_the_run_targets_come_from_the_contract_and_the_registry(toy):
    from hw2.engine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) nn; it takes n, profile"):
        runner.notebook_parameters({"n": 3, "nn": 4, "profile": None}, toy)
    assert runner.notebook_parameters({"n": 5, "profile": "smoke"}, toy) == {"n": 5, "profile": "smoke"}
    # the Makefile's run targets loop over the registry (here the real one: q1 q2 q3)
    listed = subprocess.run(["make", "-n", "runs", "PROFILE=smoke"], cwd=project_root(), capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    for question in registry.questions():
        if question != "q4":
            assert f"-m hw2 runs {question} " in listed.stdout, listed.stdout + listed.stderr
