"""The code of the report's documents is linted like the package: every ```{python} cell and inline expression of
report/*.qmd, read as the renderer reads them (includes expanded, `#|` options left out) and concatenated in the
order they run, since later cells use earlier names, goes through `ruff check` with the project's rules; a finding
names the .qmd file and line."""
import json
import subprocess
import sys
from pathlib import Path

from hw2.engine.render import Cell, Inline, Markdown, inline_expressions, parse, read_document

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "report"
# Each chapter imports what it uses in its first cell, below the cells of the chapters before it: E402 does not
# apply. An inline expression sits in a line of prose, whose length is the prose's business.
HEADER = "# ruff: noqa: E402\n"
INLINE = "  # noqa: E501"


def python_of(document: Path) -> tuple[str, list[tuple[Path, int]]]:
    """The document's code as one module, and for each of its lines the .qmd file and line it comes from."""
    _, lines = read_document(document, ROOT)
    code, origin = [HEADER], [(document, 1)]
    for block in inline_expressions(parse(lines, ROOT), ROOT):
        if isinstance(block, Cell):
            first = block.start.number + 1 + len(block.options)  # the options are the cell's first lines
            code += [line + "\n" for line in block.code.splitlines()] + ["\n"]
            origin += [(block.start.file, first + i) for i in range(len(block.code.splitlines()))]
            origin.append((block.start.file, first + len(block.code.splitlines())))
        elif not isinstance(block, Markdown):
            for item in block:
                assert isinstance(item, Inline)
                code.append(f"({item.expr}){INLINE}\n")
                origin.append((item.line.file, item.line.number))
    return "".join(code), origin


def test_every_cell_of_the_report_passes_ruff(tmp_path):
    documents = [p for p in sorted(REPORT.glob("*.qmd")) if not p.name.startswith("_")]  # the rest are included
    reached, findings = set(), []
    for document in documents:
        code, origin = python_of(document)
        reached |= {path.resolve() for path, _ in origin} | {line.file for line in read_document(document, ROOT)[1]}
        module = tmp_path / f"{document.stem}.py"
        module.write_text(code)
        done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                               "--output-format", "json", str(module)], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode in (0, 1), done.stderr
        for finding in json.loads(done.stdout):
            path, line = origin[finding["location"]["row"] - 1]
            findings.append(f"{path.relative_to(ROOT)}:{line}: {finding['code']} {finding['message']}")
    assert not findings, "ruff finds in the report's code cells:\n" + "\n".join(findings)
    assert reached >= {p.resolve() for p in REPORT.glob("*.qmd")}, "a .qmd file that no document includes"
