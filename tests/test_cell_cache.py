"""The renderer's cell cache: a cell runs again exactly when something it depends on changed (its code, the cells
before it, the files and run folders it read, the project modules it imported, the profile), every other cell is
reused, and a render with nothing to run starts no kernel.

One small project is rendered once (module fixture); each test copies it, cache included, changes one thing and
checks which cells ran and that the output they affect changed.
"""
import os
import shutil
import subprocess
import sys

import pytest

import runfolders
from hw2.engine import cellcache, render
from hw2.engine.render import Cell, inline_expressions, load_project, parse, read_document, run_cells

DOCUMENT = """# A document

```{python}
import helper
from pathlib import Path

words = Path("words.txt").read_text().split()
```

The helper says `{python} helper.greet(words[0])`.

```{python}
from hw2.engine import store

n_runs = len(store.list_runs("q2_cnn", "smoke", current_code=False))
print(f"runs: {n_runs}")
```

```{python}
print(f"words: {len(words)}")
Path("count.txt").write_text(str(len(words)))
```

Twice the runs: `{python} 2 * n_runs`.
"""
# The document's cells and paragraphs of inline expressions, by the line they start on.
UNITS = GREET, HELLO, RUNS, WORDS, TWICE = 3, 10, 12, 19, 24


def cells(project) -> tuple[list[int], list[str]]:
    """Render the document's cells: (the lines of the units that ran, every unit's output as text)."""
    proj = load_project(project)
    doc = proj.documents[0]
    _, lines = read_document(doc, project)
    items = inline_expressions(parse(lines, project), project)
    ran = run_cells(proj, doc, items, {"width": 4, "height": 3, "dpi": 50}, log=lambda *a: None)
    shown = []
    for item in items:
        if isinstance(item, Cell):
            shown.append("".join(o.get("text", "") for o in item.outputs))
        elif isinstance(item, list):
            shown.append(" ".join(i.value for i in item))
    return [render._line_of(u).number for u in ran], shown


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """The project rendered once (every cell ran, into its cache), with a run store of Question 2's smoke sweep
    (its `results/`)."""
    base = tmp_path_factory.mktemp("cellcache")
    project = base / "project"
    (project / "report").mkdir(parents=True)
    (project / "_quarto.yml").write_text("project:\n  render: [report/index.qmd]\nformat: typst\n")
    (project / "report" / "index.qmd").write_text(DOCUMENT)
    (project / "report" / "helper.py").write_text("def greet(word):\n    return f'hello {word}'\n")
    (project / "report" / "words.txt").write_text("alpha beta gamma\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("HW2_RESULTS_DIR", str(project / "results"))
    runfolders.q2_runs()
    mp.setenv("HW2_RESULTS_DIR", "results")  # the project's own, as a copy of it keeps it
    mp.setenv("PROFILE", "smoke")
    mp.setenv("HW2_OFFLINE", "1")  # as every test has it (hw2's variables are part of every cell's key)
    ran, shown = cells(project)
    mp.undo()
    assert ran == list(UNITS)  # every cell and paragraph ran
    assert shown == ["", "hello alpha", "runs: 6\n", "words: 3\n", "12"]
    return base


@pytest.fixture
def copy(warm, tmp_path, monkeypatch):
    """A copy of the warm project, its run store and cache included, this test's environment pointing at it."""
    shutil.copytree(warm / "project", tmp_path / "project")
    monkeypatch.setenv("HW2_RESULTS_DIR", "results")
    monkeypatch.setenv("PROFILE", "smoke")
    monkeypatch.chdir(tmp_path / "project")  # where the store takes a relative HW2_RESULTS_DIR from
    return tmp_path


def no_kernel(*args, **kwargs):
    raise AssertionError("a kernel was started")


def test_nothing_changed_or_prose_edited_runs_nothing_starts_no_kernel_and_writes_what_the_cells_wrote(copy, monkeypatch):
    monkeypatch.setattr(render, "execute", no_kernel)
    project = copy / "project"
    assert cells(project) == ([], ["", "hello alpha", "runs: 6\n", "words: 3\n", "12"])
    doc = project / "report" / "index.qmd"
    doc.write_text(doc.read_text().replace("# A document", "# A document\n\nA new sentence of prose."))
    os.utime(project / "report" / "words.txt")  # touched, content unchanged
    (project / "report" / "count.txt").unlink()
    assert cells(project)[0] == []
    assert (project / "report" / "count.txt").read_text() == "3"  # what the reused cell wrote, written again


@pytest.mark.parametrize("change, first, shown", [
    # a cell's code: it and every cell after it run again (the cells before it are reused)
    (lambda p: _edit(p / "report/index.qmd", 'print(f"words: {len(words)}")', 'print(f"words: {len(words) + 1}")'),
     WORDS, {3: "words: 4\n"}),
    # an inline expression: only its paragraph
    (lambda p: _edit(p / "report/index.qmd", "2 * n_runs", "3 * n_runs"), TWICE, {4: "18"}),
    # a file a cell read
    (lambda p: (p / "report/words.txt").write_text("omega beta gamma delta\n"), GREET, {1: "hello omega", 3: "words: 4\n"}),
    # a project module a cell imported
    (lambda p: _edit(p / "report/helper.py", "hello", "hi"), GREET, {1: "hi alpha"}),
], ids=["cell-code", "inline-code", "file-read", "module-imported"])
def test_a_change_runs_the_cell_that_depends_on_it_and_every_cell_after_it(copy, change, first, shown):
    project = copy / "project"
    change(project)
    ran, now = cells(project)
    assert ran == [u for u in UNITS if u >= first]
    expected = ["", "hello alpha", "runs: 6\n", "words: 3\n", "12"]
    for index, text in shown.items():
        expected[index] = text
    assert now == expected
    assert len(list((project / cellcache.FOLDER).rglob("*.json"))) == len(UNITS)  # the earlier versions removed


def test_a_run_added_to_the_store_runs_the_cells_that_read_the_store(copy):
    runfolders.q2_runs(seeds=(43,))  # the same sweep with another seed: six more runs
    ran, now = cells(copy / "project")
    assert ran == [RUNS, WORDS, TWICE]
    assert now == ["", "hello alpha", "runs: 12\n", "words: 3\n", "24"]


def test_another_profile_runs_every_cell(copy, monkeypatch):
    monkeypatch.setenv("PROFILE", "quick")
    assert cells(copy / "project")[0] == list(UNITS)


def test_only_the_statements_whose_names_a_rerun_cell_uses_run_again_for_state():
    codes = ["import helper\nwords = helper.load()\nshown = helper.show(3)", "total = 0",
             "notes = []\n[n for n in range(3)]", "notes.append(len(words))", "print(len(notes))"]
    # the last cell needs `notes`, made in cell 2 and changed by cell 3, which needs `words` (cell 0); `n` is
    # the comprehension's own, and `shown` and `total` are needed by nothing
    assert cellcache.state_code(codes, 4) == {0: "import helper\nwords = helper.load()", 2: "notes = []",
                                              3: "notes.append(len(words))"}
    assert cellcache.state_code(codes + ["exec('x = 1')"], 5) == dict(enumerate(codes))  # names no parse can see


def test_a_damaged_entry_is_discarded_said_and_its_cell_runs(copy):
    project = copy / "project"
    said = []
    entries = sorted((project / cellcache.FOLDER).rglob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    entries[0].write_bytes(entries[0].read_bytes()[:-10])  # the first cell's: truncated
    proj = load_project(project)
    _, lines = read_document(proj.documents[0], project)
    items = inline_expressions(parse(lines, project), project)
    ran = run_cells(proj, proj.documents[0], items, {"width": 4, "height": 3, "dpi": 50}, log=said.append)
    assert len(ran) == len(UNITS) and "was damaged (its content differs from its recorded sha256)" in said[0]


def test_a_git_command_a_cell_runs_is_run_again_to_check_its_output(tmp_path):
    from hw2.engine.cellreads import command_output

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    before = command_output(["git", "status", "--porcelain"], str(tmp_path))
    (tmp_path / "new.txt").write_text("x")
    assert command_output(["git", "status", "--porcelain"], str(tmp_path)) != before
    record = {"files": {}, "commands": [{"args": [sys.executable, "-c", "1"], "cwd": str(tmp_path), "output": None}]}
    assert "whose output cannot be checked" in cellcache.stale_reason(record, tmp_path)


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
