"""`make bench-render`: how long hw2's renderer takes after each kind of edit, with the cell cache.

In one run, on a copy of the project in a temporary folder (your files are never touched): the first render (no
cache at all), a full re-execution (the cell cache emptied: every cell runs, as before the cache), a render with
nothing changed, a prose edit (a sentence added to report/_q2.qmd) and a code-cell edit (a statement added to the
last code cell of report/_q3.qmd), each with the cells it ran, and the ratios to the full re-execution.

Each render is `render(pre_render=False)` in a new Python process: the pre-render step (the missing experiments)
is left out, so nothing trains. The copy reads a copy of the run store ($HW2_RESULTS_DIR, default results/) and the
data folder in place; $PROFILE (default quick) chooses the runs, and HW2_STALE=use lets runs made by earlier code
be shown (stamped), so that the benchmark needs no training after a code change.
"""
from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent
PROSE_TARGET_S, PROSE_TARGET_RATIO = 2.0, 4.0  # the goal for a prose edit
RENDER = "from hw2.engine.render import render; render('.', pre_render=False)"
RAN_RE = re.compile(r"report/index\.qmd: ran (\d+ of \d+)")
NONE_RE = re.compile(r"report/index\.qmd: ran no cell, reused all (\d+)")
STATE_RE = re.compile(r"ran statements of (\d+) of those again")


def folder(variable: str, default: str) -> Path:
    path = Path(os.environ.get(variable) or default)
    return path if path.is_absolute() else SOURCE / path


def copy_project(into: Path) -> None:
    for name in ("hw2", "analysis"):
        shutil.copytree(SOURCE / name, into / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    # the renderer's outputs beside the documents stay behind
    shutil.copytree(SOURCE / "report", into / "report", ignore=shutil.ignore_patterns("_figures", "*_files", "*.typ"))
    for path in SOURCE.glob("_quarto*.y*ml"):
        shutil.copy(path, into)
    results = folder("HW2_RESULTS_DIR", "results")
    if not results.is_dir():
        sys.exit(f"bench-render: no run store at {results}: make the runs first (make runs)")
    shutil.copytree(results, into / "results", ignore=shutil.ignore_patterns(".trash", "*.partial", ".*.lock"))


def cpu_seconds() -> float:
    """The CPU time (user + system) of the finished child processes so far: the render, its kernel, pandoc."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_render(project: Path, env: dict) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, "cells run of cells") of one render in a new process (a paragraph's inline
    expressions count as one cell). On a machine other work keeps busy, the CPU time is what the render would
    take alone, nearly."""
    start, cpu = time.time(), cpu_seconds()
    done = subprocess.run([sys.executable, "-c", RENDER], cwd=project, env=env, capture_output=True, text=True)
    seconds, cpu = time.time() - start, cpu_seconds() - cpu
    if done.returncode != 0:
        sys.exit(f"bench-render: the render failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    ran, none, state = RAN_RE.search(done.stdout), NONE_RE.search(done.stdout), STATE_RE.search(done.stdout)
    shown = ran.group(1) if ran else f"0 of {none.group(1)}" if none else "?"
    if state and state.group(1) != "0":
        shown += f" (and statements of {state.group(1)} earlier cells, for the names they define)"
    return seconds, cpu, shown


def edit_prose(project: Path) -> None:
    doc = project / "report" / "_q2.qmd"
    doc.write_text(doc.read_text() + "\nA sentence added by the benchmark.\n")


def edit_code(project: Path) -> None:
    """A statement added to the last code cell of report/_q3.qmd (after its options)."""
    doc = project / "report" / "_q3.qmd"
    lines = doc.read_text().splitlines()
    at = max(i for i, line in enumerate(lines) if line.strip() == "```{python}") + 1
    while lines[at].startswith("#|"):
        at += 1
    lines.insert(at, "_benchmark_edit = 1")
    doc.write_text("\n".join(lines) + "\n")


def main() -> int:
    profile = os.environ.get("PROFILE") or "quick"
    with tempfile.TemporaryDirectory(prefix="hw2-bench-render-") as tmp:
        project = Path(tmp)
        copy_project(project)
        env = {**os.environ, "PYTHONPATH": str(project), "PROFILE": profile, "HW2_STALE": "use",
               "HW2_RESULTS_DIR": str(project / "results"), "HW2_DATA_DIR": str(folder("HW2_DATA_DIR", "data"))}
        env.pop("QUARTO_PROFILE", None)
        print(f"[bench-render] {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"profile {profile}; a copy of the project in {project}")
        stages = [("first render (no cache at all)", None),
                  ("full re-execution (cell cache emptied)", lambda: shutil.rmtree(project / ".hw2_cache" / "cells")),
                  ("warm, nothing changed", None),
                  ("prose edit (report/_q2.qmd)", lambda: edit_prose(project)),
                  ("code-cell edit (last cell of report/_q3.qmd)", lambda: edit_code(project))]
        times = {}
        for name, change in stages:
            if change:
                change()
            seconds, cpu, ran = timed_render(project, env)
            times[name] = seconds
            print(f"[bench-render] {name:46s} {seconds:6.2f} s (CPU {cpu:5.2f} s)   cells run: {ran}", flush=True)
    full = times["full re-execution (cell cache emptied)"]
    for name in ("warm, nothing changed", "prose edit (report/_q2.qmd)", "code-cell edit (last cell of report/_q3.qmd)"):
        print(f"[bench-render] {name}: {full / times[name]:.1f}x faster than the full re-execution")
    prose = times["prose edit (report/_q2.qmd)"]
    met = prose <= PROSE_TARGET_S and full / prose >= PROSE_TARGET_RATIO
    print(f"[bench-render] load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          f"(other work slows every wall time above)")
    print(f"[bench-render] prose edit: {prose:.2f} s, {full / prose:.1f}x faster than the full re-execution "
          f"(goal: at most {PROSE_TARGET_S:.0f} s and at least {PROSE_TARGET_RATIO:.0f}x): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
