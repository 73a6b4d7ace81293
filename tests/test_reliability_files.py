"""Nothing lost, one line per error: files moved aside, the render cache, hw2's renderer stopped by Ctrl-C, a
cell's syntax error, a dead kernel or a slow cell, the PDF replaced whole, and text from authors.yml shown as written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# --- moving aside keeps every file ----------------------------------------------------------------------------

def test_checkpoints_moved_aside_in_the_same_second_are_all_kept(tmp_path, capsys):
    from hw2.engine import store

    experiment = tmp_path / "results" / "q2_cnn"
    moved = []
    for lr in ("0.1", "0.01", "0.001"):  # a sweep's three runs, moved aside together
        checkpoint = experiment / f"lr{lr}-quick-abc.partial" / "checkpoint.pt"
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_text(f"weights of lr {lr}")
        moved.append(store._move_aside(checkpoint, "test"))
    again = experiment / "lr0.1-quick-abc.partial" / "checkpoint.pt"
    again.write_text("a later checkpoint of lr 0.1")  # the same run, the same second
    moved.append(store._move_aside(again, "test"))

    assert len(set(moved)) == 4 and all(path.parent == experiment / ".trash" for path in moved)
    assert [path.read_text() for path in moved] == ["weights of lr 0.1", "weights of lr 0.01",
                                                    "weights of lr 0.001", "a later checkpoint of lr 0.1"]
    assert moved[1].name.startswith("lr0.01-quick-abc.checkpoint.pt.")
    assert sorted((experiment / ".trash").iterdir()) == sorted(moved)
    err = capsys.readouterr().err
    assert all(f"was moved to {path}: test" in err for path in moved)


def test_a_run_folder_moved_aside_never_replaces_one_kept_before(tmp_path):
    from hw2.engine import store

    moved = []
    for content in ("first", "second"):
        run = tmp_path / "demo" / "lr0.1-quick-abc"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(content)
        moved.append(store._move_aside(run, "test"))
    assert moved[0] != moved[1] and moved[0].name.startswith("lr0.1-quick-abc.")
    assert [(path / "summary.json").read_text() for path in moved] == ["first", "second"]


# --- the render cache -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    b"\x80\x63 not a pickle",  # unpickling raises ValueError (unsupported pickle protocol)
    b"\x80\x04\x95",  # a truncated pickle
    __import__("pickle").dumps((1, 2, 3)),  # another value's valid pickle, written over it
], ids=["foreign-protocol", "truncated", "another-pickle"])
def test_a_damaged_cache_entry_is_discarded_rebuilt_and_said_so(tmp_path, monkeypatch, capsys, damage):
    from hw2.reporting.cache import cached

    (tmp_path / "_quarto.yml").write_text("project: {}\n")
    monkeypatch.chdir(tmp_path)
    computed = []

    def compute():
        computed.append(1)
        return {"params": 42}

    assert cached("q2-params", ["hw2.reporting.format"], compute) == {"params": 42}
    (entry,) = (tmp_path / ".hw2_cache").iterdir()
    assert cached("q2-params", ["hw2.reporting.format"], compute) == {"params": 42} and len(computed) == 1
    entry.write_bytes(damage)
    assert cached("q2-params", ["hw2.reporting.format"], compute) == {"params": 42} and len(computed) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"[hw2] the render cache entry {entry} was damaged (")
    assert err[0].endswith("discarded it and computed q2-params again")
    assert cached("q2-params", ["hw2.reporting.format"], compute) == {"params": 42} and len(computed) == 2



def test_what_hw2_says_from_inside_a_report_cell_reaches_the_console(tmp_path, capsys):
    """The cache's line (and the run store's) is written on the kernel's stderr, which the PDF leaves out."""
    from hw2.engine.render import execute, inline_expressions, parse, read_document

    (tmp_path / "doc.qmd").write_text("```{python}\nimport sys\nprint('a warning', file=sys.stderr)\n"
                                      "print('[hw2] the render cache entry x was damaged', file=sys.stderr)\n```\n")
    _, lines = read_document(tmp_path / "doc.qmd", tmp_path)
    execute(inline_expressions(parse(lines, tmp_path), tmp_path), tmp_path, tmp_path,
            {"width": 5, "height": 3, "dpi": 50})
    assert capsys.readouterr().err == "[hw2] the render cache entry x was damaged\n"


# --- text from authors.yml is shown as written ------------------------------------------------------------------

TRICKY = """group: 7
students:
  - name: "1. Rui | Sá"
    number: "#2"
    email: rui@example.org
    contribution: "Reviewed everything"
  - name: "<Mia> Costa"
    number: 99001
    email: mia@example.org
    contribution: "wrote @fig-x, #set text(red) and $x$ in *Q1* & Q2 <b>"
"""


def _typst_text(markdown: str, tmp_path: Path) -> str:
    """What a reader sees of `markdown` once pandoc made it Typst and typst compiled it (a Typst error raises)."""
    import pypandoc
    import typst

    typ = tmp_path / "doc.typ"
    typ.write_text(subprocess.run([pypandoc.get_pandoc_path(), "--from=markdown", "--to=typst"], input=markdown,
                                  capture_output=True, text=True, check=True).stdout)
    typst.compile(str(typ), output=str(tmp_path / "doc.pdf"), ignore_system_fonts=True)
    out = subprocess.run(["pdftotext", str(tmp_path / "doc.pdf"), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())


def test_author_fields_reach_the_title_page_and_the_contribution_paragraph_as_written(tmp_path):
    from hw2.reporting import authors, wording
    from hw2.reporting.markdown import markdown_text

    (tmp_path / "_quarto.yml").write_text("project: {}\n")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "authors.yml").write_text(TRICKY)
    group = authors.load_authors(tmp_path / "report" / "authors.yml")
    table = _typst_text(authors.students_table(group).data, tmp_path)
    for shown in ("<Mia> Costa", "1. Rui | Sá", "#2", "mia@example.org"):
        assert shown in table, (shown, table)
    paragraph = _typst_text(markdown_text(wording.contribution_paragraph(group)), tmp_path)
    assert paragraph == ("1. Rui | Sá (#2) reviewed everything. "  # a paragraph, not a numbered list
                         "<Mia> Costa (99001) wrote @fig-x, #set text(red) and $x$ in *Q1* & Q2 <b>."), paragraph


# --- hw2's renderer: Ctrl-C while cells run, the PDF replaced whole, a cell's syntax error at its line -----------

def test_ctrl_c_while_a_cell_runs_stops_the_render_in_one_line_and_keeps_the_previous_pdf(tmp_path):
    (tmp_path / "_quarto.yml").write_text("project:\n  output-dir: _out\n  render: [index.qmd]\n")
    (tmp_path / "index.qmd").write_text("# A\n\n```{python}\nimport os, time\n"
                                        "open('started', 'w').write(str(os.getpid()))\ntime.sleep(60)\n```\n")
    previous = tmp_path / "_out" / "index.pdf"
    previous.parent.mkdir()
    previous.write_bytes(b"%PDF-1.7 the previous report\n")
    proc = subprocess.Popen([sys.executable, "-m", "hw2", "render", "--engine", "hw2", "--root", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    started = tmp_path / "started"
    deadline = time.time() + 120
    while not (started.exists() and started.read_text()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert started.exists(), proc.communicate(timeout=60)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.split() == "hw2 render: stopped by Ctrl-C; no PDF was written".split(), err
    assert previous.read_bytes() == b"%PDF-1.7 the previous report\n"
    kernel = int(started.read_text())
    deadline = time.time() + 10
    while _running(kernel) and time.time() < deadline:
        time.sleep(0.1)
    assert not _running(kernel), "the kernel was left running"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_pdf_is_replaced_only_by_a_whole_new_one(tmp_path, monkeypatch):
    import typst

    from hw2.engine.render import compile_typst

    pdf = tmp_path / "_out" / "index.pdf"
    pdf.parent.mkdir()
    pdf.write_bytes(b"%PDF-1.7 the previous report\n")
    (tmp_path / "index.typ").write_text("Hello\n")

    def cut_short(source, output, **_):  # Ctrl-C halfway through writing the PDF
        Path(output).write_bytes(b"%PDF-1.7 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(typst, "compile", cut_short)
    with pytest.raises(KeyboardInterrupt):
        compile_typst(tmp_path / "index.typ", pdf, tmp_path)
    assert pdf.read_bytes() == b"%PDF-1.7 the previous report\n"
    assert sorted(p.name for p in pdf.parent.iterdir()) == ["index.pdf"]  # no temporary file left
    monkeypatch.undo()
    compile_typst(tmp_path / "index.typ", pdf, tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF") and b"previous" not in pdf.read_bytes()


@pytest.mark.parametrize("code, line, words", [
    ("#| echo: false\nx = 1\ny = (2 +\nz = 3\n", 7, "'(' was never closed: y = (2 +"),
    ("x = 1\n\nfor i in range(3)\n    print(i)\n", 7, "expected ':': for i in range(3)"),
    ('s = """never\nclosed\n', 5, 'unterminated triple-quoted string literal (detected at line 6): s = """never'),
])
def test_a_syntax_error_in_a_cell_names_the_line_of_the_file(tmp_path, code, line, words):
    from hw2.engine.render import RenderError, parse, read_document

    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.qmd").write_text("# A\n\n{{< include _part.qmd >}}\n")
    (tmp_path / "report" / "_part.qmd").write_text(f"Text.\n\n```{{python}}\n#| label: x\n{code}```\n")
    _, lines = read_document(tmp_path / "report" / "index.qmd", tmp_path)
    with pytest.raises(RenderError) as caught:
        parse(lines, tmp_path)
    assert str(caught.value) == f"report/_part.qmd:{line}: SyntaxError in the code cell at line 3: {words}"


def test_ipython_syntax_in_a_cell_is_no_syntax_error(tmp_path):
    from hw2.engine.render import Cell, parse, read_document

    (tmp_path / "doc.qmd").write_text("```{python}\n%matplotlib inline\n!true\nawait_me = 1\n```\n")
    _, lines = read_document(tmp_path / "doc.qmd", tmp_path)
    (cell,) = parse(lines, tmp_path)
    assert isinstance(cell, Cell) and cell.code.startswith("%matplotlib")


@pytest.mark.parametrize("code, timeout, words", [
    ("import os\nos._exit(1)\n", 60, "the Python kernel died running this code cell"),
    ("import time\ntime.sleep(30)\n", 2, "the code cell ran longer than the renderer's limit of 2 s"),
], ids=["kernel-died", "timeout"])
def test_a_cell_that_kills_its_kernel_or_runs_too_long_is_named_in_one_line(tmp_path, code, timeout, words):
    from hw2.engine.render import RenderError, execute, inline_expressions, parse, read_document

    (tmp_path / "doc.qmd").write_text(f"# A\n\n```{{python}}\n{code}```\n")
    _, lines = read_document(tmp_path / "doc.qmd", tmp_path)
    with pytest.raises(RenderError) as caught:
        execute(inline_expressions(parse(lines, tmp_path), tmp_path), tmp_path, tmp_path,
                {"width": 5, "height": 3, "dpi": 50}, timeout=timeout)
    assert str(caught.value).startswith(f"doc.qmd:3: {words}") and "\n" not in str(caught.value)
