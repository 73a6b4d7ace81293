"""The renderer's reading of the Quarto subset: cell options, includes, and the errors that name file:line."""
import re
from pathlib import Path

import pytest

from hw2.engine.render import (
    Cell,
    Markdown,
    RenderError,
    check_references,
    inline_expressions,
    load_project,
    parse,
    read_document,
)


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def blocks_of(tmp_path: Path, text: str, name: str = "doc.qmd"):
    write(tmp_path, {name: text})
    _, lines = read_document(tmp_path / name, tmp_path)
    return parse(lines, tmp_path)


def test_cell_options_are_read_and_stripped_from_the_code(tmp_path):
    blocks = blocks_of(tmp_path, "Intro.\n\n```{python}\n#| label: fig-a\n#| fig-cap: \"A: caption\"\n"
                                 "#| echo: true\n#| output: false\n#| include: true\nx = 1\n```\n")
    cell = blocks[1]
    assert isinstance(blocks[0], Markdown) and isinstance(cell, Cell)
    assert cell.options == {"label": "fig-a", "fig-cap": "A: caption", "echo": True, "output": False,
                            "include": True}
    assert cell.code == "x = 1"
    assert cell.start.number == 3


@pytest.mark.parametrize("text, line, words", [
    ("a\n\n```{python}\n#| fig-width: 3\nx = 1\n```\n", 4, "cell option 'fig-width' is not supported"),
    ("a\n```{python}\n#| echo: fenced\n```\n", 3, "must be true or false"),
    ("a\n```{python}\n#| fig-cap: no label\nplot()\n```\n", 2, "fig-cap needs a `label: fig-...`"),
    ("a\n```{python}\n#| label: tbl-x\nt()\n```\n", 2, "needs a tbl-cap"),
    ("x\n\n::: {.callout-note}\nNote\n:::\n", 3, "fenced divs"),
    ("x\n{{< video https://example.org/v.mp4 >}}\n", 2, "shortcode {{< video >}}"),
    ("x\n\n```{r}\n1 + 1\n```\n", 3, "only ```{python} cells"),
    ("x\n\n```{python echo=FALSE}\n1\n```\n", 3, "only ```{python} cells"),
    ("x `{r} 1 + 1` y\n", 1, "inline `{r} ...` is not supported"),
    ("x\n\n```{=latex}\n\\newpage\n```\n", 3, "raw block {=latex}"),
    ("x\n\n```{python}\n1\n", 3, "never closed"),
])
def test_unsupported_syntax_names_file_and_line(tmp_path, text, line, words):
    with pytest.raises(RenderError) as err:
        blocks_of(tmp_path, text, "report/_part.qmd")
    assert str(err.value).startswith(f"report/_part.qmd:{line}: ")
    assert words in str(err.value)


def test_include_splices_lines_with_their_origin(tmp_path):
    write(tmp_path, {"report/index.qmd": "---\ntitle: T\n---\n\n# One\n\n{{< include _a.qmd >}}\n\nEnd\n",
                     "report/_a.qmd": "# Two\n\n{{< include sub/_b.qmd >}}\n",
                     "report/sub/_b.qmd": "Deep `{python} 1 + 1`.\n"})
    meta, lines = read_document(tmp_path / "report/index.qmd", tmp_path)
    assert meta == {"title": "T"}
    origin = {ln.text: (ln.file.name, ln.number) for ln in lines}
    assert origin["# One"] == ("index.qmd", 5)
    assert origin["# Two"] == ("_a.qmd", 1)
    assert origin["Deep `{python} 1 + 1`."] == ("_b.qmd", 1)
    assert origin["End"] == ("index.qmd", 9)
    items = inline_expressions(parse(lines, tmp_path))
    assert [i.expr for group in items if isinstance(group, list) for i in group] == ["1 + 1"]


def test_include_errors(tmp_path):
    write(tmp_path, {"a.qmd": "{{< include b.qmd >}}\n", "b.qmd": "{{< include a.qmd >}}\n",
                     "c.qmd": "x\n{{< include missing.qmd >}}\n", "d.qmd": "{{< include e.qmd >}}\n",
                     "e.qmd": "---\ntitle: no\n---\n"})
    with pytest.raises(RenderError, match="include cycle"):
        read_document(tmp_path / "a.qmd", tmp_path)
    with pytest.raises(RenderError, match="^c.qmd:2: the included file missing.qmd does not exist"):
        read_document(tmp_path / "c.qmd", tmp_path)
    with pytest.raises(RenderError, match="e.qmd:1: an included file cannot have front matter"):
        read_document(tmp_path / "d.qmd", tmp_path)


def test_inline_syntax_error_names_the_line(tmp_path):
    blocks = blocks_of(tmp_path, "Fine `{python} 1`.\n\nBroken `{python} 1 +`.\n")
    with pytest.raises(RenderError, match=r"^doc.qmd:3: inline expression `1 \+` is not a Python expression"):
        inline_expressions(blocks, tmp_path)


def test_code_blocks_are_not_checked_or_executed(tmp_path):
    blocks = blocks_of(tmp_path, "```\n::: not a div {{< nor a shortcode >}} `{r} x`\n```\n\n```python\nx = 1\n```\n")
    assert len(blocks) == 1 and isinstance(blocks[0], Markdown)
    assert inline_expressions(blocks) == blocks


def test_a_longer_fence_showing_a_code_block_is_read_as_one_block_everywhere(tmp_path):
    """A ```` fence may show a ``` block: every pass (includes, inline values, references) sees one block."""
    shown = "````markdown\n```{python}\n{{< include missing.qmd >}} `{python} 1 +` @fig-none\n```\n````\n"
    blocks = blocks_of(tmp_path, shown + "\nAfter: `{python} 2`.\n")
    assert [type(b) for b in blocks] == [Markdown]
    (_, inlines) = inline_expressions(blocks, tmp_path)
    assert [i.expr for i in inlines] == ["2"]  # the shown `{python} 1 +` is text, not a broken expression
    _, lines = read_document(tmp_path / "doc.qmd", tmp_path)
    check_references(lines, "", set(), tmp_path)  # @fig-none inside the block is not a reference


def test_unresolved_references_and_citations_name_the_line(tmp_path):
    write(tmp_path, {"d.qmd": "# A {#sec-a}\n\nSee @sec-a and @fig-b.\n"})
    _, lines = read_document(tmp_path / "d.qmd", tmp_path)
    markdown = "# A {#sec-a}\n\nSee @sec-a and @fig-b.\n"
    with pytest.raises(RenderError, match=r"^d.qmd:3: unresolved cross-reference @fig-b"):
        check_references(lines, markdown, set(), tmp_path)
    check_references(lines, markdown + "![x](x.png){#fig-b}\n", set(), tmp_path)
    write(tmp_path, {"e.qmd": "Mail me@example.org; cite @known, `@code` and \\@literal.\n\nCite @unknown.\n"})
    _, lines = read_document(tmp_path / "e.qmd", tmp_path)
    with pytest.raises(RenderError, match=r"^e.qmd:3: unresolved citation @unknown"):
        check_references(lines, "", {"known"}, tmp_path)


def test_project_reads_render_list_and_output_dir(tmp_path):
    write(tmp_path, {"_quarto.yml": "project:\n  output-dir: _out\n  render:\n    - report/index.qmd\n",
                     "report/index.qmd": "x\n"})
    project = load_project(tmp_path)
    assert project.documents == [tmp_path / "report/index.qmd"]
    assert project.output_dir == tmp_path / "_out"
    write(tmp_path, {"_quarto.yml": "project:\n  render:\n    - nope.qmd\n"})
    with pytest.raises(RenderError, match="nope.qmd, which does not exist"):
        load_project(tmp_path)


def test_render_uses_quarto_when_on_path_and_copies_the_pdf(tmp_path, monkeypatch, capsys):
    from hw2.engine.render import main

    write(tmp_path, {"_quarto.yml": "project:\n  output-dir: _output\n  render: [report/index.qmd]\n"
                                    "format:\n  typst:\n    output-file: hw2-report.pdf\n",
                     "report/index.qmd": "# A\n",
                     "bin/quarto": FAKE_QUARTO.format(version="1.8.27")})
    (tmp_path / "bin/quarto").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    assert main(str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "renderer: Quarto 1.8.27 (quarto render)" in out and "PDF: _output/hw2-report.pdf" in out
    assert (tmp_path / "_output/hw2-report.pdf").read_text() == "%PDF-quarto\n"


# A stand-in for the Quarto CLI: answers --version, and writes the PDF where Quarto puts it.
FAKE_QUARTO = ("#!/bin/sh\nif [ \"$1\" = --version ]; then echo {version}; exit 0; fi\n"
               "mkdir -p _output/report && echo '%PDF-quarto' > _output/report/hw2-report.pdf\n")


def test_an_old_quarto_is_named_and_hw2s_renderer_used(tmp_path, monkeypatch):
    from hw2.engine.render import choose_engine

    write(tmp_path, {"bin/quarto": FAKE_QUARTO.format(version="1.6.40")})
    (tmp_path / "bin/quarto").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    engine, why = choose_engine("auto")
    assert engine == "hw2" and "Quarto 1.6.40 is on PATH, but the report needs Quarto >= 1.7" in why
    with pytest.raises(RenderError, match="not on PATH"):
        monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
        choose_engine("quarto")


def test_pre_render_steps_run_in_the_project_root_and_stop_on_failure(tmp_path):
    from hw2.engine.render import run_pre_render

    write(tmp_path, {"_quarto.yml": "project:\n  pre-render:\n    - python -c \"open('ran', 'w').write('yes')\"\n"
                                    "    - exit 3\n"})
    with pytest.raises(RenderError, match=r"pre-render step `exit 3` failed \(exit status 3\)"):
        run_pre_render(load_project(tmp_path), log=lambda *a: None)
    assert (tmp_path / "ran").read_text() == "yes"  # `python` is the environment's, run from the root


@pytest.mark.parametrize("config, words", [
    ("format: html\n", "format html is not supported"),
    ("format:\n  typst:\n    columns: 2\n", "typst option(s) columns are not supported"),
    ("execute:\n  freeze: auto\n", "execute option(s) freeze are not supported"),
    ("filters: [foo.lua]\n", "_quarto.yml: filters not supported"),
    ("engine: knitr\n", "only the Jupyter engine"),
])
def test_unsupported_project_options_are_refused(tmp_path, config, words):
    from hw2.engine.render import document_metadata

    write(tmp_path, {"_quarto.yml": "project:\n  render: [index.qmd]\n" + config, "index.qmd": "x\n"})
    project = load_project(tmp_path)
    with pytest.raises(RenderError, match=re.escape(words)):
        document_metadata(project, {}, tmp_path / "index.qmd")


def test_ctrl_c_lets_the_pre_render_step_finish_its_last_line_then_stops_the_render(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    # A step that, like the runner, takes a moment after Ctrl-C to say what it kept, then exits 130.
    (tmp_path / "step.py").write_text(
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(1.0)\n"
        "    open('kept', 'w').write('yes')\n"
        "    print('step: kept its checkpoint', flush=True)\n"
        "    sys.exit(130)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "open('started', 'w').write('yes')\n"
        "time.sleep(60)\n")
    write(tmp_path, {"_quarto.yml": "project:\n  pre-render:\n    - python step.py\n", "index.qmd": "x\n"})
    proc = subprocess.Popen([sys.executable, "-m", "hw2", "render", "--engine", "hw2", "--root", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert (tmp_path / "kept").read_text() == "yes" and "step: kept its checkpoint" in out
    assert "Traceback" not in err and err.strip().endswith("hw2 render: stopped by Ctrl-C; no PDF was written")
