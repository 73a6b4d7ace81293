"""The package's shape: no import cycle anywhere in hw2 (imports inside functions and under TYPE_CHECKING count),
an engine that knows the questions only through the registry's contract, questions that do not import each
other, light configuration modules, and every registered experiment following the contract."""
import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from hw2.engine import registry, store

PACKAGE = Path(__file__).resolve().parent.parent / "hw2"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def hw2_imports(path: Path, known: set[str]) -> set[str]:
    """The hw2 modules a file imports, anywhere (at the top, inside functions, under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: hw2_imports(path, set(files)) - {name} for name, path in files.items()}


def test_no_import_cycle_in_hw2():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


QUESTIONS = ("hw2.q1", "hw2.q2", "hw2.q3")


def test_the_registry_is_a_leaf_and_the_configurations_are_light():
    graph = import_graph()
    assert graph["hw2.engine.registry"] == set()
    for question in QUESTIONS:
        allowed = {"hw2.engine.errors", "hw2.engine.machine", "hw2.engine.profiles", f"{question}.constants"}
        assert graph[f"{question}.config"] <= allowed, question
        for light in ("config", "constants"):
            path = PACKAGE / question.split(".")[1] / f"{light}.py"
            if path.exists():
                assert "import torch" not in path.read_text() and "import numpy" not in path.read_text(), path


def test_the_engine_knows_no_question_and_no_question_imports_another():
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith("hw2.engine"):
            assert not {i for i in imports if i.startswith(QUESTIONS)}, module
        for question in QUESTIONS:
            if module.startswith(question + "."):
                others = {i for i in imports if i.startswith(QUESTIONS) and not i.startswith(question)}
                assert not others, f"{module} imports {others}"


@pytest.mark.parametrize("experiment", registry.EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_follows_the_contract(experiment):
    module = importlib.import_module(experiment.module)
    assert (PACKAGE.parent / experiment.notebook).is_file()
    assert isinstance(module.PARAMETERS, dict) and "profile" in module.PARAMETERS
    assert module.CHECKPOINT_UNIT in ("epoch", "step")
    for name in ("plan", "data_source", "prepare_data", "verify_data", "data_status", "fetch_data", "configs", "specs",
                 "run"):
        contract = inspect.signature(getattr(registry.ExperimentModule, name))
        assert callable(getattr(module, name, None)), f"{experiment.module} has no {name}()"
        if name != "run":
            assert list(inspect.signature(getattr(module, name)).parameters) == list(contract.parameters)[1:], name
    # run takes exactly the notebook's parameters (and may add keyword-only conveniences with defaults)
    run_parameters = inspect.signature(module.run).parameters
    assert set(module.PARAMETERS) <= set(run_parameters)
    assert all(p.default is not inspect.Parameter.empty for n, p in run_parameters.items() if n not in module.PARAMETERS)


def test_a_config_edit_changes_no_runs_identity_but_a_shared_constant_does(tmp_path):
    """A configuration enters a run's key by value: its module (validation, labels, the profile table) is outside
    the code identity; constants the code computes with are inside."""
    fingerprints = store.code_fingerprints("hw2.q3.experiment")
    assert "q3/constants.py" in fingerprints and "q3/config.py" not in fingerprints
    assert "q1/constants.py" in store.code_fingerprints("hw2.q1.experiment")


def test_the_readmes_layout_table_names_every_file_of_the_package_and_nothing_else():
    readme = (PACKAGE.parent / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(hw2/[^`]+)`", table))
    files = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
             if p.suffix in (".py", ".c") and p.name != "__init__.py" and "__pycache__" not in p.parts}
    assert files - named == set(), "files the layout table does not name"
    assert {n for n in named if not (PACKAGE.parent / n).exists()} == set(), "names in the table with no file"
