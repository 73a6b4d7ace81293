"""`python -m hw2 submission`: the zip handed in on Fenix, `hw2-group<N>.zip`.

It holds the report PDF and the code (package, notebooks, documents, tests, README, Makefile,
pyproject), never data, results, caches or the virtual environment. It refuses when the contribution
statement is missing (10-point penalty), when authors.yml is still the example group, or when the PDF is
older than the sources it was rendered from.
"""
from __future__ import annotations

import json
import sys
import zipfile
from collections import Counter
from pathlib import Path

from hw2.reporting.authors import ContributionError, load_authors, require_contributions
from hw2.reporting.runs import RENDER_RECORD

PDF = Path("_output") / "hw2-report.pdf"
CODE = ("hw2", "analysis", "report", "tests", "bench", ".ci")
TOP_FILES = ("GUIDE.md", "_quarto.yml", "README.md", "Makefile", "pyproject.toml", "constraints.txt", ".gitignore")
# Inside the folders above: build products and caches, never sources.
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", "_figures", ".hw2_cache", "_output", ".quarto"}
# Data and results, wherever a command left them, never belong in a submission (a Python package of that name,
# hw2/data, is code).
DATA_DIRS = {"data", "results"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".typ.tmp"}
MAX_FILE_BYTES = 1 << 20  # no source of hw2 comes near 1 MiB; a larger file is data or output


class SubmissionError(RuntimeError):
    """The zip cannot be built yet, and what to do."""


def code_files(root: Path, left_out: list[str] | None = None) -> list[Path]:
    """The sources to pack; what was left out for a reason worth telling (data, results, size) is appended to
    `left_out` as "path (why)"."""
    files = [root / name for name in TOP_FILES if (root / name).is_file()]
    left_out = [] if left_out is None else left_out
    for folder in CODE:
        for path in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []:
            rel = path.relative_to(root)
            if not path.is_file() or path.suffix in SKIP_SUFFIXES or SKIP_DIRS & set(rel.parts):
                continue
            data = [d for d in rel.parents if d.name in DATA_DIRS and not (root / d / "__init__.py").is_file()]
            if data:
                left_out.append(f"{rel.as_posix()} ({data[-1].name} folder {data[-1].as_posix()}/)")
                continue
            if any(part.endswith(("_files", ".egg-info")) for part in rel.parts):
                continue
            if folder == "report" and path.suffix == ".typ":  # the renderer's intermediate file
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                left_out.append(f"{rel.as_posix()} ({path.stat().st_size / 2**20:.1f} MiB, over the 1 MiB limit)")
                continue
            files.append(path)
    return files


def packing_list(names: list[str]) -> str:
    """'hw2/ 40 files, report/ 9 files, ...': what a zip holds, by top folder."""
    def top(name: str) -> str:
        parts = name.split("/")[1:]  # below the zip's own top folder
        return parts[0] + "/" if len(parts) > 1 else parts[0]

    counts = Counter(map(top, names))
    return ", ".join(f"{key} {n} file{'s' if n > 1 else ''}" if key.endswith("/") else key for key, n in counts.items())


def source_files(root: Path) -> list[Path]:
    """What the PDF is rendered from: the documents, the config and the package."""
    return [p for p in code_files(root) if p.relative_to(root).parts[0] in ("hw2", "report", "_quarto.yml")]


def check_rendered_runs(root: Path, pdf: Path) -> None:
    """Refuse a PDF rendered from the smoke profile or before newer runs of its profile finished; warn about a
    quick one (not the homework's protocol)."""
    record = root / RENDER_RECORD
    if not record.is_file() or record.stat().st_mtime > pdf.stat().st_mtime:
        raise SubmissionError(f"{PDF} has no record of a finished render ({RENDER_RECORD}): the last render did not "
                              f"finish, or the PDF was not made here; run `make report` again")
    info = json.loads(record.read_text())
    profile, results = info["profile"], Path(info["results"])
    if profile == "smoke":
        raise SubmissionError(f"{PDF} was rendered from the smoke profile (test sizes, no results worth reporting): "
                              f"render it with `PROFILE=full make report` (or quick) and try again")
    later = []
    for summary in results.glob("*/*/summary.json"):
        try:
            run_profile = json.loads(summary.read_text()).get("profile")
        except (OSError, json.JSONDecodeError):
            continue
        if run_profile == profile and summary.stat().st_mtime > pdf.stat().st_mtime:
            later.append(summary.parent.name)
    if later:
        raise SubmissionError(f"{PDF} was rendered before {len(later)} run(s) of profile {profile} finished "
                              f"({', '.join(sorted(later)[:3])}{' ...' if len(later) > 3 else ''}): "
                              f"run `make report` again so the PDF shows them")
    if profile == "quick":
        print(f"hw2 submission: warning: {PDF} shows the quick profile, not the homework's protocol (the report says "
              f"so beside every number); render with `PROFILE=full make report` on a GPU for the protocol's results",
              file=sys.stderr)


def build(root: Path | str = ".", left_out: list[str] | None = None) -> Path:
    root = Path(root).resolve()
    authors = root / "report" / "authors.yml"
    try:
        group = load_authors(authors)
        require_contributions(group)
    except ContributionError as exc:
        raise SubmissionError(str(exc)) from None
    if group.example:
        raise SubmissionError(f"{authors.relative_to(root)} still holds the example group shipped with hw2: "
                              f"put your group number and students there and delete `example: true`")
    pdf = root / PDF
    if not pdf.is_file():
        raise SubmissionError(f"{PDF} does not exist: run `make report` first")
    newer = [p for p in source_files(root) if p.stat().st_mtime > pdf.stat().st_mtime]
    if newer:
        shown = ", ".join(str(p.relative_to(root)) for p in newer[:5]) + (" ..." if len(newer) > 5 else "")
        raise SubmissionError(f"{PDF} is older than its sources ({shown}): run `make report` again")
    check_rendered_runs(root, pdf)
    name = f"hw2-group{group.number}"
    out = root / f"{name}.zip"
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(pdf, f"{name}/{name}-report.pdf")
        for path in code_files(root, left_out):
            zf.write(path, f"{name}/{path.relative_to(root).as_posix()}")
    tmp.replace(out)
    return out


def main(root: str = ".") -> int:
    left_out: list[str] = []
    try:
        out = build(root, left_out)
    except SubmissionError as exc:
        print(f"hw2 submission: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(out) as zf:
        names, size = zf.namelist(), out.stat().st_size
    print(f"[hw2] {out.name}: the report PDF and {len(names) - 1} code files ({size / 1024:.0f} KiB); upload it on Fenix")
    print(f"[hw2] packed: {packing_list(names)}")
    for item in left_out:
        print(f"[hw2] left out: {item}")
    return 0
