"""`python -m hw2 preview` (`make preview`): render with hw2's renderer, then again whenever a file the report is
made from is saved: `report/`, `_quarto.yml` and its profiles, the `hw2` package and the run store.

The pre-render step (the missing experiments) runs once, at the start: a save re-renders, it never trains. Each
render says what changed, which cells ran (the cell cache reuses the others) and how long it took. A render that
fails prints its error, at its file and line, and keeps the last good PDF: a PDF is only ever replaced whole.
Edits to the renderer itself (`hw2/engine/`) need a new preview, as this process runs the renderer's code it
started with; edits to the code the report's cells import are picked up, as each render's kernel is new.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

from hw2.engine.render import RenderError, load_project, publish, render, run_pre_render

PACKAGE = Path(__file__).resolve().parents[1]
POLL_S = 0.3  # how often the files are looked at
SETTLE_S = 0.2  # an editor may write a file in several steps: wait for it to finish
WHICH = "hw2's own renderer (nbclient + pandoc + typst)"


def watched_files(root: Path) -> dict[str, tuple[int, int]]:
    """{path: (mtime_ns, size)} of every file a render depends on. The renderer's own outputs beside the
    documents (`index.typ`, `index_files/`), hidden files (an editor's swap files) and caches are left out."""
    project = load_project(root)
    generated = {p for doc in project.documents for p in (doc.with_suffix(".typ"), doc.parent / f"{doc.stem}_files")}
    results = Path(os.environ.get("HW2_RESULTS_DIR") or "results")
    results = results if results.is_absolute() else root / results
    found: dict[str, tuple[int, int]] = {}
    roots = [(root / "report", None), (PACKAGE, None), (results, 2)]  # the run store: its run folders and files
    for top, depth in roots:
        for folder, dirs, files in os.walk(top):
            here = Path(folder)
            dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__")) and here / d not in generated
                       and (depth is None or len(here.relative_to(top).parts) < depth)]
            for name in files:
                path = here / name
                if not name.startswith(".") and path not in generated:
                    _stat(found, path)
            _stat(found, here)  # a folder's time changes when an entry is added or removed (a new run)
    for path in root.glob("_quarto*.y*ml"):
        _stat(found, path)
    return found


def _stat(found: dict, path: Path) -> None:
    try:
        st = path.stat()
    except OSError:  # removed while we looked: the next look sees it gone
        return
    found[str(path)] = (st.st_mtime_ns, st.st_size)


def changed(before: dict, after: dict, root: Path) -> list[str]:
    return sorted(os.path.relpath(p, root) for p in set(before) | set(after) if before.get(p) != after.get(p)
                  if not Path(p).is_dir() or p not in before or p not in after)


def build(root: Path, why: str, log=print) -> bool:
    """One render, said in one line after the renderer's; False where it failed (its error printed)."""
    start = time.time()
    try:
        pdfs = render(root, log, pre_render=False)
        publish(root, pdfs, WHICH, log)
    except RenderError as exc:
        print(f"hw2 preview: {exc}", file=sys.stderr, flush=True)
        log(f"[hw2 preview] {datetime.now():%H:%M:%S} {why}: the render failed (above); the last good PDF is kept. "
            f"Waiting for the next save.")
        return False
    log(f"[hw2 preview] {datetime.now():%H:%M:%S} {why}: rendered in {time.time() - start:.1f} s. Waiting for the "
        f"next save (Ctrl-C stops).")
    return True


def main(root: str = ".", profile: str | None = None, log=print) -> int:
    root_path = Path(root).resolve()
    if profile:
        os.environ["QUARTO_PROFILE"] = profile  # as `quarto preview --profile` does
    try:
        run_pre_render(load_project(root_path), log)
        seen = watched_files(root_path)
        build(root_path, "first render", log)
        while True:
            time.sleep(POLL_S)
            now = watched_files(root_path)
            if now == seen:
                continue
            time.sleep(SETTLE_S)
            now = watched_files(root_path)
            what = changed(seen, now, root_path)
            seen = now
            if what:
                build(root_path, ", ".join(what[:3]) + (f" and {len(what) - 3} more" if len(what) > 3 else "")
                      + " changed", log)
    except RenderError as exc:  # before the first render: the project itself, or the pre-render step
        print(f"hw2 preview: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n[hw2 preview] stopped by Ctrl-C; the last good PDF stays as it was", file=sys.stderr)
        return 130
