"""hw2's own renderer for the Quarto subset the report is written in (`python -m hw2 render`).

Where Quarto is absent, this produces the same PDF from the same files, as Quarto does:
  1. read `_quarto.yml` (and the document's front matter) and expand `{{< include file >}}`;
  2. execute the `{python}` cells and inline `` `{python} expr` `` expressions in document order in ONE
     Jupyter kernel (nbclient) whose working directory is the document's folder;
  3. splice the outputs into Markdown (figures and tables with their labels and captions);
  4. convert with pandoc to Typst (a Lua filter adds the cross-references pandoc lacks) inside our
     template, and compile with the `typst` package.

The subset (anything else stops the render with the file and line): cell options `label`, `fig-cap`,
`tbl-cap`, `echo`, `output`, `include`; `@fig-`/`@tbl-`/`@eq-`/`@sec-` cross-references and `@key`
citations of the bibliography; `$$ ... $$ {#eq-...}`; headings with `{#sec-...}`; raw `{=typst}` blocks;
plain (non-executed) code blocks. Not supported: fenced divs (`:::`, callouts included: Quarto's
callouts need a package download at compile time), shortcodes other than include, other engines.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hw2.engine import cellcache
from hw2.engine.errors import USER_ERROR_MARK
from hw2.engine.runner import quiet_kernel_manager
from hw2.engine.store import temporary_path

TYPST_DIR = Path(__file__).resolve().parent / "typst"
CELL_OPTIONS = {"label", "fig-cap", "tbl-cap", "echo", "output", "include"}
EXECUTE_OPTIONS = {"echo", "output", "warning"}
TYPST_OPTIONS = {"toc", "toc-depth", "toc-title", "number-sections", "keep-typ", "output-file", "papersize",
                 "fig-format", "fig-width", "fig-height", "fig-dpi", "template-partials"}
PARTIALS = {"typst-template.typ", "typst-show.typ"}
# Document metadata the renderer understands (in _quarto.yml or front matter); anything else is refused.
METADATA = {"project", "title", "subtitle", "author", "authors", "date", "format", "execute", "bibliography",
            "lang", "jupyter", "engine"}
XREF_KINDS = ("fig", "tbl", "eq", "sec")

INCLUDE_RE = re.compile(r"^\{\{<\s*include\s+(\S+)\s*>\}\}\s*$")
SHORTCODE_RE = re.compile(r"\{\{<\s*([\w-]+)")
FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(.*)$")


def fenced(texts: Iterable[str]) -> Iterator[bool]:
    """For each line, whether it belongs to a fenced code block (its fence lines included). A fence closes
    only on a line of its own character, at least as long, and nothing else, as `parse` reads blocks."""
    marker = None
    for text in texts:
        if marker is None:
            fence = FENCE_RE.match(text)
            marker = fence.group(2) if fence else None
            yield fence is not None
        else:
            stripped = text.strip()
            if stripped.startswith(marker) and not stripped.strip(marker[0]):
                marker = None
            yield True
INLINE_RE = re.compile(r"`\{(\w+)\}\s+([^`]+?)`")
OPTION_RE = re.compile(r"^#\|\s?(.*)$")
REF_RE = re.compile(r"(?<![\w@\\])@((?:fig|tbl|eq|sec)-[\w-]*\w)")
CITE_RE = re.compile(r"(?<![\w@`\\])@(\w[\w:.#$%&+?<>~/-]*\w|\w)")
LABEL_RE = re.compile(r"\{#((?:fig|tbl|eq|sec)-[\w-]*\w)")


# Errors raised on purpose by the report's helpers (a missing run, a missing contribution, a bad config).
EXPECTED_ERRORS = {"RunError", "ContributionError", "ConfigError"}
# Such an error that starts with the file and line at fault (report/authors.yml:3:5: ...) is reported there.
LOCATED_RE = re.compile(r"^[\w./-]+:\d+(?::\d+)?: ")


class RenderError(Exception):
    """A document the renderer cannot produce, with where (file:line) and what to do."""


@dataclass(frozen=True)
class Line:
    text: str
    file: Path
    number: int

    def where(self, root: Path) -> str:
        return f"{_rel(self.file, root)}:{self.number}"


@dataclass
class Markdown:
    lines: list[Line]


@dataclass
class Cell:
    code: str
    options: dict
    start: Line  # the ```{python} line
    outputs: list = field(default_factory=list)


@dataclass
class Inline:
    """An inline `{python} expr`, evaluated in the kernel right after the cells before it."""

    expr: str
    line: Line
    value: str | None = None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# --- project and documents ----------------------------------------------------------------------------------

@dataclass
class Project:
    root: Path
    config: dict
    documents: list[Path]
    output_dir: Path


def load_project(root: Path | str = ".") -> Project:
    root = Path(root).resolve()
    path = root / "_quarto.yml"
    if not path.is_file():
        raise RenderError(f"{path}: no _quarto.yml here; run the renderer from the project root")
    config = _yaml_file(path)
    for name in reversed(active_profiles()):  # as Quarto: the first profile listed wins
        overlay = next((root / f"_quarto-{name}{ext}" for ext in (".yml", ".yaml")
                        if (root / f"_quarto-{name}{ext}").is_file()), None)
        if overlay is not None:  # Quarto ignores a profile without a file
            config = merge_config(config, _yaml_file(overlay))
    project = config.get("project") or {}
    render = project.get("render") or sorted(p.relative_to(root).as_posix() for p in root.rglob("*.qmd")
                                             if not p.name.startswith("_") and "_output" not in p.parts)
    documents = []
    for name in render:
        doc = root / name
        if not doc.is_file():
            raise RenderError(f"_quarto.yml: project.render lists {name}, which does not exist")
        documents.append(doc)
    output_dir = root / project["output-dir"] if project.get("output-dir") else root
    return Project(root, config, documents, output_dir)


def _yaml_file(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RenderError(f"{path.name}: not valid YAML: {exc}") from None


def active_profiles() -> list[str]:
    """Quarto's active project profiles: $QUARTO_PROFILE, comma-separated (`--profile` sets it)."""
    return [name.strip() for name in os.environ.get("QUARTO_PROFILE", "").split(",") if name.strip()]


def merge_config(base: dict, overlay: dict) -> dict:
    """`overlay` merged into `base` as Quarto merges a profile's configuration: maps key by key, a list with a
    list or a value joined (without repeats), any other value replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge_config(old, value)
        elif (isinstance(old, list) or isinstance(value, list)) and old is not None and value is not None:
            old, value = (x if isinstance(x, list) else [x] for x in (old, value))
            merged[key] = old + [v for v in value if v not in old]
        else:
            merged[key] = value
    return merged


def front_matter(lines: list[str]) -> tuple[dict, int]:
    """The YAML front matter of a document and the number of lines it takes."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            try:
                return yaml.safe_load("\n".join(lines[1:i])) or {}, i + 1
            except yaml.YAMLError as exc:
                raise RenderError(f"front matter is not valid YAML: {exc}") from None
    raise RenderError("front matter starts with --- but never ends")


def read_document(path: Path, root: Path, _stack: tuple = ()) -> tuple[dict, list[Line]]:
    """Front matter and the lines of `path` with every `{{< include >}}` expanded (each line keeps its origin)."""
    path = path.resolve()
    if path in _stack:
        raise RenderError(f"{_rel(path, root)}: included from itself (include cycle)")
    if not path.is_file():
        raise RenderError(f"{_rel(path, root)}: file not found")
    text = path.read_text().splitlines()
    try:
        meta, skip = front_matter(text)
    except RenderError as exc:
        raise RenderError(f"{_rel(path, root)}:1: {exc}") from None
    if _stack and skip:
        raise RenderError(f"{_rel(path, root)}:1: an included file cannot have front matter")
    out: list[Line] = []
    for (number, raw), in_fence in zip(enumerate(text[skip:], start=skip + 1), fenced(text[skip:])):
        m = INCLUDE_RE.match(raw.strip()) if not in_fence else None
        if m:
            if not (path.parent / m.group(1)).is_file():
                raise RenderError(f"{_rel(path, root)}:{number}: the included file {m.group(1)} does not exist")
            _, included = read_document(path.parent / m.group(1), root, _stack + (path,))
            out.extend(included)
            continue
        out.append(Line(raw, path, number))
    return meta, out


# --- parsing ------------------------------------------------------------------------------------------------

def parse(lines: list[Line], root: Path) -> list:
    """Split into Markdown runs and `{python}` cells, rejecting what the subset does not hold."""
    blocks: list = []
    prose: list[Line] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE_RE.match(line.text)
        if not fence:
            _check_prose(line, root)
            prose.append(line)
            i += 1
            continue
        marker, info = fence.group(2), fence.group(3).strip()
        end = _fence_end(lines, i, marker)
        if end is None:
            raise RenderError(f"{line.where(root)}: code block never closed (no matching {marker})")
        body = lines[i + 1:end]
        if info.startswith("{") and not info.startswith("{="):
            m = re.fullmatch(r"\{(\w+)\}", info)
            if not m or m.group(1) != "python":
                raise RenderError(f"{line.where(root)}: only ```{{python}} cells are supported "
                                  f"(found ```{info}); other engines and chunk options in braces are not")
            if prose:
                blocks.append(Markdown(prose))
                prose = []
            blocks.append(_cell(line, body, root))
        else:
            if info.startswith("{=") and info != "{=typst}":
                raise RenderError(f"{line.where(root)}: raw block {info} is not supported: only {{=typst}}")
            prose.extend(lines[i:end + 1])
        i = end + 1
    if prose:
        blocks.append(Markdown(prose))
    return blocks


def _fence_end(lines: list[Line], start: int, marker: str) -> int | None:
    """The index of the line closing the fence opened at `start` with `marker`, or None."""
    return next((j for j in range(start + 1, len(lines))
                 if lines[j].text.strip().startswith(marker) and not lines[j].text.strip().strip(marker[0])), None)


def raw_typst_bodies(lines: list[Line]) -> list[list[Line]]:
    """The lines inside each raw ```{=typst} block, in order (not those shown inside another code block)."""
    bodies, i = [], 0
    while i < len(lines):
        fence = FENCE_RE.match(lines[i].text)
        end = _fence_end(lines, i, fence.group(2)) if fence else None
        if end is None:
            i += 1
            continue
        if fence.group(3).strip() == "{=typst}":
            bodies.append(lines[i + 1:end])
        i = end + 1
    return bodies


def _check_prose(line: Line, root: Path) -> None:
    text = line.text
    if text.lstrip().startswith(":::"):
        raise RenderError(f"{line.where(root)}: fenced divs (:::, callouts included) are not supported by "
                          f"hw2's renderer (Quarto's callouts also need a package download); use plain "
                          f"paragraphs or **bold** lead-ins")
    m = SHORTCODE_RE.search(text)
    if m:
        what = m.group(1)
        hint = "put {{< include file >}} alone on its line" if what == "include" else "only include is supported"
        raise RenderError(f"{line.where(root)}: shortcode {{{{< {what} >}}}} is not supported here: {hint}")
    for engine, _ in INLINE_RE.findall(text):
        if engine != "python":
            raise RenderError(f"{line.where(root)}: inline `{{{engine}}} ...` is not supported: only "
                              f"`{{python}} expr`")


def _cell(start: Line, body: list[Line], root: Path) -> Cell:
    option_lines = []
    for line in body:
        m = OPTION_RE.match(line.text)
        if not m:
            break
        option_lines.append((line, m.group(1)))
    options: dict = {}
    for line, text in option_lines:
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, dict) or len(parsed) != 1:
            raise RenderError(f"{line.where(root)}: cannot read the cell option {text!r} (write `#| key: value`)")
        key, value = next(iter(parsed.items()))
        if key not in CELL_OPTIONS:
            raise RenderError(f"{line.where(root)}: cell option {key!r} is not supported "
                              f"(supported: {', '.join(sorted(CELL_OPTIONS))})")
        if key in ("echo", "output", "include") and not isinstance(value, bool):
            raise RenderError(f"{line.where(root)}: cell option {key!r} must be true or false, not {value!r}")
        if key in ("label", "fig-cap", "tbl-cap") and not isinstance(value, str):
            raise RenderError(f"{line.where(root)}: cell option {key!r} must be a string")
        options[key] = value
    label = options.get("label", "")
    for kind in ("fig", "tbl"):
        if f"{kind}-cap" in options and not label.startswith(f"{kind}-"):
            raise RenderError(f"{start.where(root)}: {kind}-cap needs a `label: {kind}-...` in the same cell")
        if label.startswith(f"{kind}-") and f"{kind}-cap" not in options:
            raise RenderError(f"{start.where(root)}: the cell labelled {label} needs a {kind}-cap")
    code_lines = body[len(option_lines):]
    code = "\n".join(line.text for line in code_lines)
    _check_syntax(code, code_lines, start, root)
    return Cell(code, options, start)


def _check_syntax(code: str, lines: list[Line], start: Line, root: Path) -> None:
    """Refuse a cell that is not Python (IPython's `%magic` and `!shell` lines allowed) before any cell runs,
    naming the line of the file at fault rather than a line counted inside the cell."""
    import ast
    import warnings

    from IPython.core.inputtransformer2 import TransformerManager

    try:
        with warnings.catch_warnings():  # a SyntaxWarning (an invalid escape) is the kernel's to show
            warnings.simplefilter("ignore")
            compile(TransformerManager().transform_cell(code), "<cell>", "exec", dont_inherit=True,
                    flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        def file_line(number: int) -> Line:
            return lines[number - 1] if 0 < number <= len(lines) else start

        at = file_line(exc.lineno or 0)
        # Python counts lines from the cell's first; the file's own numbers are what an editor shows
        msg = re.sub(r"(?<=\(detected at line )(\d+)(?=\))", lambda m: str(file_line(int(m[1])).number), exc.msg)
        raise RenderError(f"{at.where(root)}: SyntaxError in the code cell at line {start.number}: {msg}"
                          + (f": {at.text.strip()}" if at is not start else "")) from None


def inline_expressions(blocks: list, root: Path | None = None) -> list:
    """Blocks, each Markdown run followed by the list of its inline expressions (evaluated together, in
    document order, right after the cells before them). A syntax error names its line."""
    out: list = []
    for block in blocks:
        out.append(block)
        if isinstance(block, Markdown):
            group = []
            for line, in_fence in zip(block.lines, fenced(line.text for line in block.lines)):
                if not in_fence:
                    group.extend(Inline(expr.strip(), line) for _, expr in INLINE_RE.findall(line.text))
            for item in group:
                try:
                    compile(item.expr, "<inline>", "eval")
                except SyntaxError as exc:
                    raise RenderError(f"{item.line.where(root or Path.cwd())}: inline expression `{item.expr}` is "
                                      f"not a Python expression ({exc.msg})") from None
            if group:
                out.append(group)
    return out


# --- execution ----------------------------------------------------------------------------------------------

SETUP_CODE = """\
%matplotlib inline
import matplotlib.pyplot as __hw2_plt
from matplotlib_inline.backend_inline import set_matplotlib_formats as __hw2_formats
__hw2_formats("png", dpi={dpi})
__hw2_plt.rcParams["figure.figsize"] = ({width}, {height})
def __hw2_inline(thunks):
    import json, traceback
    values = []
    for i, thunk in enumerate(thunks):
        try:
            value = thunk()
        except Exception as exc:
            print(json.dumps({{"error": i, "ename": type(exc).__name__, "evalue": str(exc),
                              "traceback": traceback.format_exc()}}))
            return
        values.append(value._repr_markdown_() if hasattr(value, "_repr_markdown_") else str(value))
    print(json.dumps({{"values": values}}))
"""


RECORDER_CODE = """\
import hw2.engine.cellreads as __hw2_cellreads
__hw2_recorder = __hw2_cellreads.Recorder({watched!r}, {ignored!r})
__hw2_recorder.install(get_ipython())
"""


@dataclass
class Ran:
    """What executing one cell (a Cell, or a group of inline expressions) gave besides its outputs."""

    seconds: float
    notes: list[str]
    record: dict | None = None  # what it read (`hw2.engine.cellreads`), where the reads were recorded


def execute(items: list, cwd: Path, root: Path, fig: dict, timeout: int = 600, replay: tuple = (),
            watched: tuple[list[str], list[str]] | None = None) -> list[Ran]:
    """Run every cell and inline expression in one kernel (cwd = the document's folder), stopping at the first
    error, which names its line. Those in `replay` run only to rebuild the kernel's state: their outputs are not
    kept. With `watched` ((folders, folders left out)), what each reads is recorded. Ctrl-C stops the kernel and
    raises KeyboardInterrupt."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.v4.new_notebook()
    setup = SETUP_CODE.format(**fig)
    if watched is not None:
        setup += RECORDER_CODE.format(watched=watched[0], ignored=watched[1])
    nb.cells.append(nbformat.v4.new_code_cell(setup))
    owners = [None]
    for item in items:
        if isinstance(item, Cell):
            nb.cells.append(nbformat.v4.new_code_cell(item.code))
        elif isinstance(item, list):
            nb.cells.append(nbformat.v4.new_code_cell(inline_code(item)))
        else:
            continue
        owners.append(item)
    if watched is not None:
        nb.cells.append(nbformat.v4.new_code_cell("__hw2_recorder.dump()"))
        owners.append(None)
    replayed = {id(item) for item in replay}
    # The kernel is killed once done or stopped: a graceful shutdown would wait on a cell Ctrl-C cut short.
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(cwd)}}, extra_arguments=["--log-level=ERROR"],
                            kernel_manager_class=quiet_kernel_manager())
    # Cell by cell inside nbclient's kernel context rather than `client.execute()`: that one takes Ctrl-C with a
    # signal handler of its own that shuts the kernel down under the running cell and fails with a traceback.
    ran = []
    with client.setup_kernel(cwd=str(cwd)):
        for index, (cell, owner) in enumerate(zip(nb.cells, owners)):
            where = _line_of(owner).where(root) if owner is not None else "the renderer's kernel setup"
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                raise RenderError(f"{where}: the code cell ran longer than the renderer's limit of {timeout} s; "
                                  f"make it faster") from None
            except DeadKernelError:
                raise RenderError(f"{where}: the Python kernel died running this code cell (out of memory, or a "
                                  f"crash in compiled code); run its code in a Python shell to see why") from None
            notes = _forward_notes(cell) if id(owner) not in replayed else []
            _take_outputs(cell, owner, root, keep=id(owner) not in replayed)
            if owner is not None:
                ran.append(Ran(_seconds(cell), notes))
    if watched is not None:
        records = json.loads(_stdout(nb.cells[-1]).strip().splitlines()[-1])
        for result, record in zip(ran, records):
            result.record = record
    return ran


def inline_code(group: list) -> str:
    """The kernel code evaluating a paragraph's inline expressions."""
    thunks = ", ".join(f"lambda: ({i.expr}\n)" for i in group)
    return f"__hw2_inline([{thunks}])"


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _line_of(owner) -> Line:
    """Where a cell of the kernel's notebook comes from: a code cell's first line, or an inline expression's."""
    return owner.start if isinstance(owner, Cell) else owner[0].line


def _forward_notes(cell) -> list[str]:
    """Pass on what hw2's helpers told the user from inside a cell (their `[hw2] ...` lines on stderr: a run left
    out, a damaged cache entry discarded), which the document leaves out of the PDF; return them."""
    notes = [line for output in cell.get("outputs", [])
             if output.get("output_type") == "stream" and output.get("name") == "stderr"
             for line in output.get("text", "").splitlines() if line.startswith("[hw2] ")]
    for line in notes:
        print(line, file=sys.stderr, flush=True)
    return notes


def _take_outputs(cell, owner, root: Path, keep: bool = True) -> None:
    """Keep the outputs of an executed cell with what it came from (a Cell, or a group of inline expressions
    whose values it printed), unless `keep` is false, or raise its error at its line."""
    error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
    if error is not None:
        trace = _strip_ansi("\n".join(error.get("traceback", [])))
        if owner is None:
            raise RenderError(f"the renderer's kernel setup failed: {error['ename']}: {error['evalue']}\n{trace}")
        where = _line_of(owner)
        if error["ename"] in EXPECTED_ERRORS or trace.startswith(USER_ERROR_MARK):  # the message says what to do
            trace = ""
            if LOCATED_RE.match(error["evalue"]):
                raise RenderError(f"{error['evalue']} (raised by the code cell at {where.where(root)})")
        raise RenderError(f"{where.where(root)}: the code cell raised {error['ename']}: {error['evalue']}"
                          + (f"\n{trace}" if trace else ""))
    if owner is None or not keep:
        return
    if isinstance(owner, Cell):
        owner.outputs = cell.get("outputs", [])
        return
    result = json.loads(_stdout(cell).strip().splitlines()[-1])
    if "error" in result:
        bad = owner[result["error"]]
        raise RenderError(f"{bad.line.where(root)}: inline expression `{bad.expr}` raised {result['ename']}: "
                          f"{result['evalue']}\n{result['traceback']}")
    for inline, value in zip(owner, result["values"]):
        inline.value = value


def _seconds(cell) -> float:
    """How long the kernel took for a cell (nbclient records the timestamps)."""
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = _dt.datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = _dt.datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --- splicing -----------------------------------------------------------------------------------------------

# The first line of each raw {=typst} block in the generated .typ names its .qmd line: a typst error there is
# reported at the .qmd line (`source_map`).
SOURCE_MARK = "// from "


def splice(items: list, figure_dir: Path, doc_dir: Path, root: Path, execute_opts: dict) -> str:
    """The Markdown pandoc reads: prose with inline values, and each cell's code and outputs."""
    values = {}
    for item in items:
        if isinstance(item, list):
            for inline in item:
                values.setdefault((inline.line.file, inline.line.number), []).append(inline.value)
    parts: list[str] = []
    figure_count = 0
    for item in items:
        if isinstance(item, Markdown):
            text = []
            raw_starts = {(body[0].file, body[0].number) for body in raw_typst_bodies(item.lines) if body}
            for line, in_fence in zip(item.lines, fenced(line.text for line in item.lines)):
                if (line.file, line.number) in raw_starts:  # a Typst comment: where the block's lines come from
                    indent = re.match(r"\s*", text[-1]).group()  # the fence's (a block inside a list item)
                    text.append(f"{indent}{SOURCE_MARK}{line.where(root)}")
                if in_fence or not INLINE_RE.search(line.text):
                    text.append(line.text)
                    continue
                queue = list(values.get((line.file, line.number), []))
                text.append(INLINE_RE.sub(lambda m: queue.pop(0), line.text))
            parts.append("\n".join(text))
        elif isinstance(item, Cell):
            figure_count += 1
            parts.append(_cell_markdown(item, figure_dir, doc_dir, figure_count, root, execute_opts))
    return "\n\n".join(p for p in parts if p.strip()) + "\n"


def _cell_markdown(cell: Cell, figure_dir: Path, doc_dir: Path, index: int, root: Path, execute_opts: dict) -> str:
    import base64

    opts = {**execute_opts, **cell.options}
    if opts.get("include") is False:
        return ""
    out: list[str] = []
    if opts.get("echo", True):
        out.append("```python\n" + cell.code.strip("\n") + "\n```")
    if opts.get("output", True) is False:
        return "\n\n".join(out)
    label = opts.get("label", "")
    images, markdowns = [], []
    for k, o in enumerate(cell.outputs):
        kind = o.get("output_type")
        if kind == "stream":
            if o.get("name") == "stdout" or opts.get("warning", True):
                out.append("```\n" + o["text"].rstrip("\n") + "\n```")
            continue
        data = o.get("data", {})
        if "text/markdown" in data:
            markdowns.append(len(out))
            out.append(data["text/markdown"].strip("\n"))
        elif "image/png" in data:
            figure_dir.mkdir(parents=True, exist_ok=True)
            path = figure_dir / f"cell-{index}-output-{k + 1}.png"
            path.write_bytes(base64.b64decode(data["image/png"]))
            images.append((len(out), path.relative_to(doc_dir).as_posix()))
            out.append(f"![]({images[-1][1]})")
        elif "text/plain" in data and kind == "execute_result":
            out.append("```\n" + data["text/plain"].rstrip("\n") + "\n```")
    if label.startswith("fig-"):
        if len(images) != 1:
            raise RenderError(f"{cell.start.where(root)}: the cell labelled {label} produced {len(images)} "
                              f"images; a labelled figure cell must show exactly one (call plt.show() once)")
        position, src = images[0]
        out[position] = f"![{_one_line(opts['fig-cap'])}]({src}){{#{label}}}"
    elif label.startswith("tbl-"):
        tables = [p for p in markdowns if re.search(r"^\s*\|.*\|\s*$", out[p], re.M)]
        if len(tables) != 1:
            raise RenderError(f"{cell.start.where(root)}: the cell labelled {label} must output exactly one "
                              f"Markdown table (e.g. Markdown(df.to_markdown())); it produced {len(tables)}")
        out[tables[0]] += f"\n\n: {_one_line(opts['tbl-cap'])} {{#{label}}}"
    return "\n\n".join(out)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- checks after splicing ----------------------------------------------------------------------------------

def check_references(lines: list[Line], markdown: str, bib_keys: set[str], root: Path) -> None:
    """Every @fig-/@tbl-/@eq-/@sec- reference has its label and every other @key its bibliography entry."""
    labels = set(LABEL_RE.findall(markdown))
    for line, in_fence in zip(lines, fenced(line.text for line in lines)):
        if in_fence:
            continue
        text = re.sub(r"`[^`]*`", "", line.text)
        for ref in REF_RE.findall(text):
            if ref not in labels:
                raise RenderError(f"{line.where(root)}: unresolved cross-reference @{ref}: no figure, table, "
                                  f"equation or section has the label {ref}")
        for key in CITE_RE.findall(text):
            if key.split("-")[0] in XREF_KINDS:
                continue
            if key not in bib_keys:
                raise RenderError(f"{line.where(root)}: unresolved citation @{key}: it is not in the "
                                  f"bibliography (add it there, or write \\@ for a literal @)")


def bibliography_keys(path: Path | None) -> set[str]:
    if path is None:
        return set()
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", path.read_text()))


# --- pandoc and typst ---------------------------------------------------------------------------------------

def document_metadata(project: Project, doc_meta: dict, doc: Path) -> tuple[dict, dict, dict]:
    """(pandoc metadata for the title block, typst format options, execute options), checked."""
    config = {k: v for k, v in project.config.items() if k not in ("project",)}
    for where, meta in (("_quarto.yml", config), (_rel(doc, project.root), doc_meta)):
        unknown = set(meta) - METADATA
        if unknown:
            raise RenderError(f"{where}: {', '.join(sorted(unknown))} not supported by hw2's renderer "
                              f"(supported: {', '.join(sorted(METADATA - {'project'}))})")
        if meta.get("jupyter", "python3") != "python3" or meta.get("engine", "jupyter") != "jupyter":
            raise RenderError(f"{where}: only the Jupyter engine with the python3 kernel is supported")
    merged = {**config, **doc_meta}
    formats = merged.pop("format", {}) or {}
    if isinstance(formats, str):
        formats = {formats: {}}
    if set(formats) - {"typst"}:
        raise RenderError(f"_quarto.yml: format {', '.join(sorted(set(formats) - {'typst'}))} is not supported "
                          f"by hw2's renderer: use format: typst")
    typst_opts = formats.get("typst") or {}
    unknown = set(typst_opts) - TYPST_OPTIONS
    if unknown:
        raise RenderError(f"_quarto.yml: typst option(s) {', '.join(sorted(unknown))} are not supported "
                          f"(supported: {', '.join(sorted(TYPST_OPTIONS))})")
    if typst_opts.get("fig-format", "png") != "png":
        raise RenderError("_quarto.yml: fig-format must be png")
    execute_opts = merged.pop("execute", {}) or {}
    unknown = set(execute_opts) - EXECUTE_OPTIONS
    if unknown:
        raise RenderError(f"_quarto.yml: execute option(s) {', '.join(sorted(unknown))} are not supported "
                          f"(supported: {', '.join(sorted(EXECUTE_OPTIONS))})")
    meta = {k: merged[k] for k in ("title", "subtitle", "date", "lang") if merged.get(k) is not None}
    if meta.get("date") in ("today", "now", "last-modified"):
        meta["date"] = _dt.date.today().isoformat()
    elif isinstance(meta.get("date"), (_dt.date, _dt.datetime)):
        meta["date"] = meta["date"].isoformat()
    authors = merged.get("author") or merged.get("authors") or []
    if isinstance(authors, (str, dict)):
        authors = [authors]
    meta["author"] = [{"name": a, "email": ""} if isinstance(a, str) else
                      {"name": a.get("name", ""), "email": a.get("email", "")} for a in authors]
    for key in ("toc", "toc-depth", "toc-title", "papersize"):
        if key in typst_opts:
            meta[key] = typst_opts[key]
    if typst_opts.get("number-sections"):
        meta["section-numbering"] = "1.1.a"
    bib = merged.get("bibliography")
    if bib:
        bib_path = (doc.parent / bib)
        if not bib_path.is_file():
            bib_path = project.root / bib
        if not bib_path.is_file():
            raise RenderError(f"bibliography {bib} not found next to {_rel(doc, project.root)} or in the project")
        meta["bibliography"] = bib_path
    return meta, typst_opts, execute_opts


def partials(project: Project, typst_opts: dict) -> dict[str, str]:
    found = {name: (TYPST_DIR / name).read_text() for name in PARTIALS}
    for name in typst_opts.get("template-partials") or []:
        path = project.root / name
        if Path(name).name not in PARTIALS:
            raise RenderError(f"_quarto.yml: template partial {name} is not supported "
                              f"(only {', '.join(sorted(PARTIALS))})")
        if not path.is_file():
            raise RenderError(f"_quarto.yml: template partial {name} not found")
        found[Path(name).name] = path.read_text()
    return found


def to_typst(markdown: str, meta: dict, parts: dict[str, str], typ_dir: Path) -> str:
    """The full Typst source: our template, the title block, the body, and the bibliography."""
    import pypandoc  # its bundled pandoc binary

    meta = dict(meta)
    bib = meta.pop("bibliography", None)
    header = "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n\n"
    template = parts["typst-template.typ"] + "\n" + parts["typst-show.typ"] + "\n$body$\n"
    if bib is not None:
        rel = Path(_relpath(bib, typ_dir)).as_posix()
        template += f'\n#bibliography("{rel}")\n'
    with tempfile.TemporaryDirectory() as tmp:
        tpl = Path(tmp) / "template.typst"
        tpl.write_text(template)
        result = subprocess.run(
            [pypandoc.get_pandoc_path(), "--from=markdown", "--to=typst", "--standalone", f"--template={tpl}",
             f"--lua-filter={TYPST_DIR / 'subset.lua'}", "--wrap=preserve"],
            input=header + markdown, capture_output=True, text=True)
    if result.returncode != 0:
        raise RenderError(f"pandoc failed: {result.stderr.strip()}")
    if "Could not convert TeX math" in result.stderr:
        # pandoc would print the TeX source in the PDF: refuse, showing which formula
        raise RenderError("pandoc cannot convert a formula to Typst math (rewrite it with commands pandoc "
                          f"knows):\n{result.stderr.strip()}")
    return result.stdout


def _relpath(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def source_map(typ_text: str, lines: list[Line], root: Path) -> dict[int, Line]:
    """{line number in the .typ: the .qmd line} for the lines of raw {=typst} blocks, found after their
    SOURCE_MARK comment and kept only where pandoc passed the line through unchanged."""
    bodies = {body[0].where(root): body for body in raw_typst_bodies(lines) if body}
    typ_lines = typ_text.splitlines()
    mapping = {}
    for i, text in enumerate(typ_lines):
        text = text.strip()
        body = bodies.get(text[len(SOURCE_MARK):]) if text.startswith(SOURCE_MARK) else None
        for j, line in enumerate(body or [], start=i + 1):  # the block's lines follow its mark
            if j < len(typ_lines) and typ_lines[j].strip() == line.text.strip():
                mapping[j + 1] = line  # typst numbers lines from 1
    return mapping


TYPST_LOCATION_RE = re.compile(r"┌─ (.+?):(\d+):(\d+)\s*$")


def typst_error(exc: Exception, typ: Path, root: Path, source: dict[int, Line], kept: Path | None) -> RenderError:
    """A typst error at its .qmd line where it lies in a raw {=typst} block, else at the line of the generated
    .typ (named where keep-typ keeps it)."""
    diagnostic = (getattr(exc, "diagnostic", "") or f"error: {exc}").rstrip()
    message = getattr(exc, "message", "") or str(exc)
    shown_typ = _rel(kept or typ, root)
    out, first = [], None
    for text in diagnostic.splitlines():
        loc = TYPST_LOCATION_RE.search(text)
        if loc and any((base / loc.group(1)).resolve() == typ.resolve() for base in (Path.cwd(), root)):
            number, line = int(loc.group(2)), source.get(int(loc.group(2)))
            generated = f"{shown_typ}:{number}:{loc.group(3)}"
            text = text[:loc.start(1)] + (f"{line.where(root)} (generated {generated})" if line else generated)
            first = first or (line, number)
        out.append(text)
    details = "\n".join(out)
    if first and first[0]:
        return RenderError(f"{first[0].where(root)}: typst cannot compile this line of a raw {{=typst}} block: "
                           f"{message}. Fix the Typst code there.\n{details}")
    if first:
        keep = "" if kept else " (add `keep-typ: true` under format: typst in _quarto.yml to keep the file)"
        return RenderError(f"{shown_typ}:{first[1]}: typst cannot compile this line of the Typst that hw2 made from "
                           f"the Markdown (not a raw {{=typst}} block: a `...`{{=typst}} inline, a cell's output, the "
                           f"template or pandoc's conversion): {message}. Look at that line{keep}.\n{details}")
    return RenderError(f"typst could not compile {shown_typ}: {message}\n{details}")


def compile_typst(typ: Path, pdf: Path, root: Path, source: dict[int, Line] | None = None,
                  kept: Path | None = None) -> None:
    import typst

    def write(tmp: Path) -> None:
        try:
            typst.compile(str(typ), output=str(tmp), format="pdf", root=str(root), ignore_system_fonts=True)
        except Exception as exc:  # typst raises its own error type with the message and location
            raise typst_error(exc, typ, root, source or {}, kept) from None

    replace_whole(pdf, write)


def replace_whole(path: Path, write) -> None:
    """`write(tmp)` a file, then put it at `path` in one rename: the previous file stays whole until the new one
    is, whatever stops the writing (an error, Ctrl-C)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- the whole render ---------------------------------------------------------------------------------------

def output_path(project: Project, doc: Path, typst_opts: dict) -> Path:
    """Quarto's location: output-dir keeps the document's folder (report/index.qmd -> _output/report/...)."""
    name = typst_opts.get("output-file") or doc.with_suffix(".pdf").name
    return project.output_dir / doc.parent.resolve().relative_to(project.root) / name


def render_document(project: Project, doc: Path, log=print) -> Path:
    root = project.root
    start = time.time()
    doc_meta, lines = read_document(doc, root)
    meta, typst_opts, execute_opts = document_metadata(project, doc_meta, doc)
    parts = partials(project, typst_opts)
    blocks = parse(lines, root)
    items = inline_expressions(blocks, root)
    fig = {"width": typst_opts.get("fig-width", 5.5), "height": typst_opts.get("fig-height", 3.5),
           "dpi": typst_opts.get("fig-dpi", 200)}
    figure_dir = doc.parent / f"{doc.stem}_files" / "figure-typst"
    shutil.rmtree(figure_dir.parent, ignore_errors=True)
    run_cells(project, doc, items, fig, log)
    markdown = splice(items, figure_dir, doc.parent, root, execute_opts)
    check_references(lines, markdown, bibliography_keys(meta.get("bibliography")), root)
    typ = doc.with_suffix(".typ")
    typ_text = to_typst(markdown, meta, parts, doc.parent)
    typ.write_text(typ_text)
    pdf = output_path(project, doc, typst_opts)
    kept = pdf.with_suffix(".typ") if typst_opts.get("keep-typ") else None
    try:
        compile_typst(typ, pdf, root, source_map(typ_text, lines, root), kept)
    finally:
        if kept != typ:  # without an output-dir, the kept file is the generated one itself
            if kept:
                pdf.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(typ, kept)
            typ.unlink(missing_ok=True)
        shutil.rmtree(figure_dir.parent, ignore_errors=True)
    log(f"[hw2 render] {_rel(pdf, root)} written in {time.time() - start:.1f} s")
    return pdf


def _folder(project: Project, variable: str, default: str) -> Path:
    """A folder hw2 reads from the environment, taken from the project root where relative (as `hw2.engine.paths`)."""
    path = Path(os.environ.get(variable) or default)
    return path if path.is_absolute() else project.root / path


def run_cells(project: Project, doc: Path, items: list, fig: dict, log=print) -> list:
    """Give every cell its outputs and every inline expression its value: from the cell cache up to the first cell
    whose code, earlier cells or reads changed, then by running that cell and every one after it (`hw2.engine.
    cellcache`); with nothing to run, no kernel starts. Return the cells that ran, and log which and why."""
    from hw2.engine.errors import ConfigError
    from hw2.engine.profiles import resolve_profile

    root, start = project.root, time.time()
    units = [item for item in items if isinstance(item, (Cell, list))]
    codes = [item.code if isinstance(item, Cell) else inline_code(item) for item in units]
    try:
        profile = resolve_profile()
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    cache = cellcache.CellCache(root, _rel(doc, root), log)
    state = cellcache.seed(_rel(doc, root), profile, SETUP_CODE.format(**fig))
    first, reason = len(units), ""
    for i, (unit, code) in enumerate(zip(units, codes)):
        entry = cache.load(cellcache.lookup_key(state, code))
        reason = "not in the cache" if entry is None else cellcache.stale_reason(entry["record"], root)
        if reason:
            first = i
            break
        if isinstance(unit, Cell):
            unit.outputs = entry["outputs"]
        else:
            for inline, value in zip(unit, entry["values"]):
                inline.value = value
        cellcache.write_again(entry["written"], root)
        for note in entry["notes"]:
            print(note, file=sys.stderr, flush=True)
        state = entry["after"]
    shown = _rel(doc, root)
    if first == len(units):
        log(f"[hw2 render] {shown}: ran no cell, reused all {len(units)} (cells and paragraphs of inline "
            f"expressions) from the cell cache in {time.time() - start:.1f} s" + _pruned(cache))
        return []
    # the earlier cells' statements that rebuild the state the cells to run need, each at its cell's line
    replay = [Cell(code, {}, _line_of(units[i])) for i, code in cellcache.state_code(codes, first).items()]
    # hw2's own folder too, wherever it is imported from: the run store hashes code the report never imports
    watched = [str(root), str(_folder(project, "HW2_RESULTS_DIR", "results")), str(_folder(project, "HW2_DATA_DIR", "data")),
               str(Path(__file__).resolve().parents[1])]
    ignored = [str(root / cellcache.FOLDER), str(root / ".git"), str(doc.parent / f"{doc.stem}_files")]
    if project.output_dir != root:  # the PDFs, which no cell reads
        ignored.append(str(project.output_dir))
    ran = execute(replay + units[first:], doc.parent, root, fig, replay=tuple(replay), watched=(watched, ignored))
    for unit, code, result in zip(units[first:], codes[first:], ran[len(replay):]):
        key = cellcache.lookup_key(state, code)
        written = result.record.pop("written")
        state = cellcache.after(key, {**result.record, "written": sorted(written.items())})
        entry = {"record": result.record, "after": state, "notes": result.notes, "seconds": result.seconds,
                 "where": _line_of(unit).where(root), "written": written}
        if isinstance(unit, Cell):
            entry["outputs"] = unit.outputs
        else:
            entry["values"] = [inline.value for inline in unit]
        cache.save(key, entry)
    slowest = sorted(((r.seconds, _line_of(u).where(root)) for u, r in zip(units[first:], ran[len(replay):])),
                     reverse=True)
    log(f"[hw2 render] {shown}: ran {len(units) - first} of {len(units)} (cells and paragraphs of inline "
        f"expressions) from {_line_of(units[first]).where(root)} on ({reason}), reused {first} from the cell cache, "
        f"ran statements of {len(replay)} of those again for the names they define"
        + (f" ({', '.join(_line_of(u).where(root) for u in replay)})" if replay else "")
        + f"; {time.time() - start:.1f} s (slowest: " + ", ".join(f"{w} {t:.1f} s" for t, w in slowest[:3]) + ")"
        + _pruned(cache))
    return units[first:]


def _pruned(cache) -> str:
    removed = cache.prune()
    return f"; removed {removed} cache entries of earlier versions of its cells" if removed else ""


def pre_render_commands(project: Project) -> list[str]:
    """The project's `pre-render` steps (shell commands, as Quarto runs them), in order."""
    steps = (project.config.get("project") or {}).get("pre-render") or []
    return [steps] if isinstance(steps, str) else [str(step) for step in steps]


def tool_environment() -> dict:
    """The environment for pre-render steps and Quarto: this Python's folder first on PATH (so `python` is the
    project's), and QUARTO_PYTHON naming it unless the user set one."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("QUARTO_PYTHON", sys.executable)
    return env


def run_pre_render(project: Project, log=print) -> None:
    """Run the `pre-render` steps in the project root, as `quarto render` does before rendering."""
    for step in pre_render_commands(project):
        log(f"[hw2 render] pre-render: {step}")
        process = subprocess.Popen(step, shell=True, cwd=project.root, env=tool_environment())
        try:
            returncode = process.wait()
        except KeyboardInterrupt:
            # The step got the same Ctrl-C: let it stop its runs and say what it kept (subprocess.run would kill
            # it a quarter of a second later, mid-sentence), then stop the render too.
            process.wait()
            raise
        if returncode == 130:
            raise KeyboardInterrupt
        if returncode != 0:
            raise RenderError(f"_quarto.yml: the pre-render step `{step}` failed (exit status {returncode}); "
                              f"see its output above")


def render(root: Path | str = ".", log=print, pre_render: bool = True) -> list[Path]:
    """Run the project's pre-render steps (unless told not to: `hw2 preview` runs them once), then render every
    document."""
    project = load_project(root)
    if pre_render:
        run_pre_render(project, log)
    return [render_document(project, doc, log) for doc in project.documents]


def publish(root: Path, pdfs: list[Path], which: str, log=print) -> None:
    """Copy each PDF to the top of the output folder (`_output/hw2-report.pdf`), where the submission and the
    README look for it, in one rename."""
    project = load_project(root)
    for pdf in pdfs:
        if not pdf.is_file():
            raise RenderError(f"{_rel(pdf, root)} was not produced")
        top = project.output_dir / pdf.name
        if top != pdf:
            replace_whole(top, lambda tmp, pdf=pdf: shutil.copyfile(pdf, tmp))
        log(f"[hw2 render] PDF: {_rel(top, root)} (also at {_rel(pdf, root)}), rendered with {which}")


MIN_QUARTO = (1, 7)


def quarto_version(exe: str = "quarto") -> tuple[int, ...] | None:
    """The version of `quarto` on PATH, or None when there is none (or it does not answer)."""
    path = shutil.which(exe)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=120).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def choose_engine(engine: str) -> tuple[str, str]:
    """("quarto" or "hw2", the sentence saying which renderer and why)."""
    own = "hw2's own renderer (nbclient + pandoc + typst)"
    if engine == "hw2":
        return "hw2", own
    version = quarto_version()
    shown = ".".join(map(str, version)) if version else None
    if engine == "quarto":
        if version is None:
            raise RenderError("--engine quarto was asked for, but quarto is not on PATH: install Quarto >= 1.7 "
                              "from quarto.org, or use --engine auto")
        return "quarto", f"Quarto {shown} (quarto render)"
    if version is None:
        return "hw2", f"{own}; quarto is not on PATH"
    if version < MIN_QUARTO:
        return "hw2", (f"{own}: Quarto {shown} is on PATH, but the report needs Quarto >= "
                       f"{'.'.join(map(str, MIN_QUARTO))} (its typst format); update Quarto to render with it")
    return "quarto", f"Quarto {shown} (quarto render)"


def quarto_render(root: Path) -> list[Path]:
    """`quarto render` in the project (which runs the pre-render steps itself); the PDFs it writes."""
    project = load_project(root)
    result = subprocess.run(["quarto", "render"], cwd=project.root, env=tool_environment())
    if result.returncode != 0:
        raise RenderError(f"quarto render failed (exit status {result.returncode}); see its output above")
    pdfs = []
    for doc in project.documents:
        doc_meta, _ = read_document(doc, project.root)
        _, typst_opts, _ = document_metadata(project, doc_meta, doc)
        pdfs.append(output_path(project, doc, typst_opts))
    return pdfs


def main(root: str = ".", engine: str = "auto", profile: str | None = None) -> int:
    """`python -m hw2 render`: Quarto when it is on PATH (or asked for), else hw2's own renderer. `profile` is
    Quarto's `--profile`: it becomes $QUARTO_PROFILE for both renderers, the pre-render step and the kernel."""
    root_path = Path(root).resolve()
    if profile:
        os.environ["QUARTO_PROFILE"] = profile
    try:
        engine, which = choose_engine(engine)
        print(f"[hw2 render] renderer: {which}", flush=True)
        pdfs = quarto_render(root_path) if engine == "quarto" else render(root_path)
        publish(root_path, pdfs, which)
    except RenderError as exc:
        print(f"hw2 render: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the runs' own line (what each kept) is already printed above
        print("\nhw2 render: stopped by Ctrl-C; no PDF was written", file=sys.stderr)
        return 130
    return 0
