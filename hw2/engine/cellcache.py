"""The cell cache of hw2's renderer: a cell's outputs (or a prose paragraph's inline values) are reused while
nothing they depend on changed, as knitr's chunk cache does, so a prose edit executes nothing and starts no kernel.

What a cell depends on, and how each is checked:
- its code and the code of every cell that ran before it in the same kernel, with what those cells read: each
  cell's key chains the one before (`lookup_key`, `after`), so changing or re-running a cell re-runs every cell
  after it (the state they share is the kernel's);
- what it read while it ran (`hw2.engine.cellreads`): files opened, folders listed and paths checked in the project,
  the run store and the data folder, the source of the modules it imported that are not installed packages
  (hw2's), and what the `git` commands it ran printed;
- what it wrote (a figure, the render record) is kept too, and written again when the cell is reused;
- everything around the kernel (`seed`): the profile, hw2's environment variables, Python and the installed
  packages, the renderer's kernel setup and figure size.

When a cell must run, the cells before it are reused, but the kernel needs the names they defined: only the
statements that bind (or may change) those names are run again first, to rebuild that state (`state_code`), and
their outputs are not used. A call on a name bound by assignment counts as a change (`notes.append(x)` and
`q1.figure()` alike: which calls mutate cannot be known), so this replays more than needed, never less.

Entries live in `.hw2_cache/cells/<document>/`, one per key, in the checked format of the render cache
(`write_checked`): a damaged entry is discarded, said, and its cell runs. After a render, the entries it did not
use (those of cells edited since) are removed.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import sys
from pathlib import Path

from hw2.engine import cellreads, store

MAGIC = b"hw2-cache "
FORMAT = "hw2-cells-1"  # part of every key: entries of an older format are simply not found
FOLDER = Path(".hw2_cache") / "cells"
# The environment variables that choose what a report shows (the profile, the run store, the data, stale runs).
ENVIRONMENT = ("PROFILE", "QUARTO_PROFILE")
ENVIRONMENT_PREFIX = "HW2_"
# Calls that read or write names no parse can see: a cell making them is always run again to rebuild state.
OPAQUE_CALLS = {"globals", "locals", "vars", "exec", "eval", "__import__"}


class DamagedEntry(Exception):
    """A cache entry that is not what `write_checked` wrote."""


def write_checked(path: Path, payload: bytes) -> None:
    """Write `payload` under a header holding its SHA-256, atomically."""
    store.atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def read_checked(path: Path) -> bytes:
    """The payload `write_checked` wrote at `path`; FileNotFoundError where there is none, DamagedEntry saying what
    is wrong with one that cannot be trusted (truncated, overwritten, even by another valid entry)."""
    try:
        header, _, payload = path.read_bytes().partition(b"\n")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DamagedEntry(f"unreadable: {exc}") from None
    if not header.startswith(MAGIC):
        raise DamagedEntry("no hw2-cache header")
    if header[len(MAGIC):] != hashlib.sha256(payload).hexdigest().encode():
        raise DamagedEntry("its content differs from its recorded sha256")
    return payload


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def seed(document: str, profile: str, setup_code: str) -> str:
    """The key every document's first cell chains from: what is around the kernel rather than in a cell."""
    from importlib.metadata import distributions

    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions())
    environment = sorted((k, v) for k, v in os.environ.items() if k in ENVIRONMENT or k.startswith(ENVIRONMENT_PREFIX))
    recorder = Path(cellreads.__file__).read_text()
    return _sha(FORMAT, sys.version, document, profile, setup_code, recorder, json.dumps(environment),
                json.dumps(packages))


def lookup_key(before: str, code: str) -> str:
    """The key of a cell's entry: the state before it (the previous cell's `after`) and its code."""
    return _sha(before, code)


def after(key: str, record: dict) -> str:
    """The state after a cell: its key and what it read, as the next cell's `before`."""
    return _sha(key, json.dumps(record, sort_keys=True))


def stale_reason(record: dict, root: Path) -> str | None:
    """Why a cell's recorded reads no longer hold (the first file that changed, or the command whose output did),
    or None while they all do. Paths in the project are recorded relative to its `root`."""
    for path, seen in record["files"].items():
        if not cellreads.current(str(root / path), seen):
            return f"{path} changed"
    for command in record["commands"]:
        shown = " ".join(command["args"])
        if command["output"] is None:
            return f"it runs `{shown}`, whose output cannot be checked"
        if cellreads.command_output(command["args"], command["cwd"]) != command["output"]:
            return f"`{shown}` prints something else now"
    return None


def write_again(written: dict[str, str], root: Path) -> None:
    """Write the files a reused cell wrote when it ran ({path: base64 content}; a figure it saved, the render
    record), where they are missing or differ: the PDF must not show another render's figure."""
    for name, data in written.items():
        path, content = root / name, base64.b64decode(data)
        if not (path.is_file() and path.read_bytes() == content):
            path.parent.mkdir(parents=True, exist_ok=True)
            store.atomic_write_bytes(path, content)


class CellCache:
    """The entries of one document's cells (`.hw2_cache/cells/<document>/` in the project root)."""

    def __init__(self, root: Path, document: str, log=print):
        self.folder = root / FOLDER / document.replace("/", "-").removesuffix(".qmd")
        self.log = log
        self.used: set[str] = set()

    def load(self, key: str) -> dict | None:
        self.used.add(key)
        path = self.folder / f"{key}.json"
        try:
            return json.loads(read_checked(path))
        except FileNotFoundError:
            return None
        except (DamagedEntry, ValueError) as exc:
            path.unlink(missing_ok=True)
            self.log(f"[hw2 render] the cell cache entry {path} was damaged ({exc}); discarded it, the cell runs again")
            return None

    def save(self, key: str, entry: dict) -> None:
        self.used.add(key)
        write_checked(self.folder / f"{key}.json", json.dumps(entry).encode())

    def prune(self) -> int:
        """Remove the entries this render did not use (cells since edited, as knitr does): the cache holds one
        version of the document. Return how many."""
        old = [p for p in self.folder.glob("*.json") if p.stem not in self.used]
        for path in old:
            path.unlink(missing_ok=True)
        return len(old)


# --- the cells that rebuild the kernel's state -------------------------------------------------------------

class _Names(ast.NodeVisitor):
    """The names a statement uses and binds, anywhere in it (function bodies included, which over-counts: safe),
    and those it may change the object of: the root of an assignment's target (`x.a = ...`, `x[k] += ...`),
    the receiver of a method call (`x.append(...)`) and a call's argument (`f(x)`)."""

    def __init__(self):
        self.loads: set[str] = set()
        self.binds: set[str] = set()
        self.imports: set[str] = set()
        self.changes: set[str] = set()
        self.opaque = False

    def visit_Name(self, node):
        (self.loads if isinstance(node.ctx, ast.Load) else self.binds).add(node.id)

    def _import(self, node):
        for alias in node.names:
            if alias.name == "*":
                self.opaque = True
            self.imports.add(alias.asname or alias.name.split(".")[0])

    visit_Import = visit_ImportFrom = _import

    def _define(self, node):
        self.binds.add(node.name)
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _define

    def visit_Global(self, node):
        self.binds.update(node.names)

    visit_Nonlocal = visit_Global

    def visit_Attribute(self, node):
        if not isinstance(node.ctx, ast.Load):
            self.changes.add(_root(node))
        self.generic_visit(node)

    visit_Subscript = visit_Attribute

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id in OPAQUE_CALLS:
            self.opaque = True
        if isinstance(node.func, ast.Attribute):
            self.changes.add(_root(node.func.value))
        self.changes.update(a.id for a in [*node.args, *(k.value for k in node.keywords)] if isinstance(a, ast.Name))
        self.generic_visit(node)


def _root(node) -> str | None:
    """The name an attribute or subscript chain starts from (`x` of `x.a[0].b`), or None."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


class Statement:
    """One top-level statement of a cell: its code, the module-level names it uses (`free`; a name local to a
    function, lambda or comprehension is not one), binds and may change, and whether they can be known at all."""

    def __init__(self, node: ast.stmt):
        found = _Names()
        found.visit(node)
        self.code = ast.unparse(node)
        used = _module_names(self.code)
        self.free = used
        self.binds = found.binds & used | found.imports
        self.imports = found.imports
        self.changes = found.changes & used
        self.opaque = found.opaque


def statements(code: str) -> list[Statement]:
    from IPython.core.inputtransformer2 import TransformerManager  # `%magic` lines become Python

    return [Statement(node) for node in ast.parse(TransformerManager().transform_cell(code)).body]


def _module_names(source: str) -> set[str]:
    """The module-level names a statement refers to, in any of its scopes (Python's own symbol table)."""
    import symtable

    names: set[str] = set()

    def visit(table) -> None:
        for symbol in table.get_symbols():
            if table.get_type() == "module" or symbol.is_global():
                names.add(symbol.get_name())
        for child in table.get_children():
            visit(child)

    visit(symtable.symtable(source, "<cell>", "exec"))
    return names


def state_code(codes: list[str], first: int) -> dict[int, str]:
    """For the cells before `first`, the statements to run again (as {cell: code}) so that the cells from `first`
    on find the state they would after running everything: each statement binding a name they (or a statement
    chosen) use; for a name bound other than by an import, also each statement that may change its object
    (`_Names.changes`); each statement whose names cannot be known (`exec`, `globals()`, `import *`), and then
    every statement before it. Calls through imported names are taken as changing nothing the report reads."""
    cells = [statements(code) for code in codes]
    flat = [(i, st) for i in range(first) for st in cells[i]]
    later = [st for cell in cells[first:] for st in cell]
    if any(st.opaque for st in later):
        return {i: codes[i] for i in range(first) if cells[i]}
    assigned = set().union(*(st.binds - st.imports for cell in cells for st in cell))
    needed = set().union(*(st.free for st in later))
    chosen: set[int] = set()
    grew = True
    while grew:
        grew = False
        for k in range(len(flat) - 1, -1, -1):
            st = flat[k][1]
            if k not in chosen and (st.opaque or st.binds & needed or st.changes & needed & assigned):
                chosen.add(k)
                needed |= st.free
                grew = True
    # an opaque statement may use any name: every statement before it runs too
    chosen |= set(range(max((k for k in chosen if flat[k][1].opaque), default=-1)))
    out: dict[int, list[str]] = {}
    for k in sorted(chosen):
        out.setdefault(flat[k][0], []).append(flat[k][1].code)
    return {i: "\n".join(lines) for i, lines in out.items()}
