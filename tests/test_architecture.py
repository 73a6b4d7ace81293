"""The package's shape: no import cycle anywhere in hw2 (imports inside functions count), leaf modules for
configuration and the experiment registry, and every registered experiment following one contract."""
import ast
import importlib
import inspect
from pathlib import Path

import pytest

from hw2.engine import registry as experiments
from hw2.engine import store

PACKAGE = Path(__file__).resolve().parent.parent / "hw2"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def hw2_imports(path: Path, known: set[str]) -> set[str]:
    """The hw2 modules a file imports, at the top or inside functions (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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


def test_configuration_and_registry_are_leaves_that_import_nothing_heavy():
    graph = import_graph()
    for leaf in ("hw2.configs", "hw2.engine.registry"):
        assert graph[leaf] == set(), leaf
        source = (PACKAGE / f"{leaf.split('.')[1]}.py").read_text()
        assert "import torch" not in source and "import numpy" not in source
    # the profile table reads configurations only: no experiment module, no data code
    assert graph["hw2.engine.profiles"] <= {"hw2.configs"}


@pytest.mark.parametrize("experiment", experiments.EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_follows_the_contract(experiment):
    module = importlib.import_module(experiment.module)
    assert module.EXPERIMENT == experiment.name and module.NOTEBOOK == experiment.notebook
    assert (PACKAGE.parent / experiment.notebook).is_file()
    for name in ("prepare_data", "plan", "specs", "run"):
        assert callable(getattr(module, name, None)), f"{experiment.module} has no {name}()"
    contract = inspect.signature(experiments.ExperimentModule.specs)
    assert list(inspect.signature(module.specs).parameters) == list(contract.parameters)[1:]
    assert list(inspect.signature(module.plan).parameters) == ["profile"]
    assert list(inspect.signature(module.prepare_data).parameters) == ["profile"]


def test_a_config_class_edit_changes_no_runs_identity_but_a_shared_constant_does(tmp_path):
    configs = store.PACKAGE_DIR / "configs.py"
    text = configs.read_text()
    assert "class AttentionBenchConfig" in text and "SHORT_MAX_FRAMES" in text
    extra = "class AttentionBenchConfig:\n    def extra(self):\n        return 1\n"
    method = text.replace("class AttentionBenchConfig:", extra, 1)
    constant = text.replace("SHORT_MAX_FRAMES = ", "SHORT_MAX_FRAMES = 1 + ", 1)
    for name, body in {"method": method, "constant": constant}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "configs.py").write_text(body)
    # A config is keyed by its values; its class's code (validation, labels) cannot change a result.
    assert store.normalized_code(tmp_path / "method" / "configs.py") == store.normalized_code(configs)
    # Module-level constants (frames, decoders, input kinds) are used by experiment code: they stay in the identity.
    assert store.normalized_code(tmp_path / "constant" / "configs.py") != store.normalized_code(configs)
