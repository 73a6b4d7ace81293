"""`python -m hw2 submission`: the zip handed in on Fenix, `hw2-group<N>.zip`.

It holds the report PDF and the code (package, notebooks, documents, tests, README, Makefile,
pyproject), never data, results, caches or the virtual environment, and names every file it packs. In a git
repository the code is what the student wrote, tracked or not (a new file not yet `git add`ed is packed and
said to be untracked), never a file git ignores; without one, every file of the code folders. It refuses when
the contribution statement is missing (10-point penalty), when authors.yml is still the example group, when
the PDF is older than the sources it was rendered from, or when a file's name looks like a secret (`.env`, a
key, a token, credentials) and `submission: allow:` in report/authors.yml does not name it.
"""
from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from hw2.engine.errors import UserError
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
# File names (matched without case) that usually hold a secret: packed only where authors.yml allows them.
SECRET_NAMES = (".env", ".env.*", "*credential*", "*secret*", "*token*", "*.pem", "*.key", "id_rsa*")


class SubmissionError(UserError, RuntimeError):
    """The zip cannot be built yet, and what to do."""


@dataclass
class Selection:
    """What the zip packs of the code, and what it does not."""

    files: list[Path] = field(default_factory=list)
    untracked: set[str] = field(default_factory=set)  # packed, though git does not track them
    left_out: list[str] = field(default_factory=list)  # "path (why)"
    secrets: list[str] = field(default_factory=list)  # not packed: their names look like secrets
    in_git: bool = False  # whether a git repository said what is tracked and what ignored


@dataclass(frozen=True)
class GitListing:
    tracked: set[str]
    untracked: set[str]  # not ignored


def select(root: Path, allow: tuple[str, ...] = (), chosen: Selection | None = None) -> Selection:
    """The sources to pack, and why each other candidate is not (recorded in `chosen` when given): in a git
    repository, a file git ignores is left out (and said so); a file whose name looks like a secret and that
    `allow` does not name is held back."""
    git = git_listing(root)
    chosen = Selection() if chosen is None else chosen
    chosen.in_git = git is not None
    for path in candidates(root, chosen.left_out):
        rel = path.relative_to(root).as_posix()
        if git is not None and rel not in git.tracked:
            if rel not in git.untracked:
                chosen.left_out.append(f"{rel} (git ignores it)")
                continue
            chosen.untracked.add(rel)
        if looks_secret(path.name) and rel not in allow:
            chosen.secrets.append(rel)
            continue
        chosen.files.append(path)
    return chosen


def looks_secret(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in SECRET_NAMES)


def candidates(root: Path, left_out: list[str]) -> list[Path]:
    """The top files and the files of the code folders, less build products and caches; what was left out for
    a reason worth telling (data, results, size) is appended to `left_out` as "path (why)"."""
    files = [root / name for name in TOP_FILES if (root / name).is_file()]
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


def git_listing(root: Path) -> GitListing | None:
    """The files git tracks under `root` and those it neither tracks nor ignores (paths relative to `root`), or
    None where `root` is in no git repository."""
    if not any((folder / ".git").exists() for folder in (root, *root.parents)):
        return None
    return GitListing(_git_files(root, "--cached"), _git_files(root, "--others", "--exclude-standard"))


def _git_files(root: Path, *options: str) -> set[str]:
    command = ["git", "ls-files", "-z", *options]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SubmissionError(f"{root} is a git repository, but `{' '.join(command)}` cannot run ({exc}): install "
                              f"git, so that the submission leaves out the files git ignores") from None
    if done.returncode != 0:
        problem = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise SubmissionError(f"`{' '.join(command)}` failed in {root} ({problem}): the submission needs it to leave "
                              f"out the files git ignores; fix the repository and try again")
    return {name for name in done.stdout.split("\0") if name}


def packing_list(names: list[str]) -> str:
    """'hw2/ 40 files, report/ 9 files, ...': what a zip holds, by top folder."""
    def top(name: str) -> str:
        parts = name.split("/")[1:]  # below the zip's own top folder
        return parts[0] + "/" if len(parts) > 1 else parts[0]

    counts = Counter(map(top, names))
    return ", ".join(f"{key} {n} file{'s' if n > 1 else ''}" if key.endswith("/") else key for key, n in counts.items())


def source_files(root: Path, chosen: Selection) -> list[Path]:
    """What the PDF is rendered from: the documents, the config and the package."""
    return [p for p in chosen.files if p.relative_to(root).parts[0] in ("hw2", "report", "_quarto.yml")]


def refuse_secrets(chosen: Selection, authors: str) -> None:
    """Refuse, naming them all, the files held back because their names look like secrets."""
    if chosen.secrets:
        elsewhere = "out of the project, or make git ignore them (.gitignore)" if chosen.in_git else "out of the project"
        raise SubmissionError(f"{len(chosen.secrets)} file(s) whose names look like secrets (keys, tokens, "
                              f"credentials, .env) would be packed: {', '.join(chosen.secrets)}. Move them "
                              f"{elsewhere}; one that holds no secret is packed once `submission: allow:` in "
                              f"{authors} lists it (e.g. `submission: {{allow: [{chosen.secrets[0]}]}}`)")


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


def build(root: Path | str = ".", chosen: Selection | None = None) -> Path:
    """Write the zip; what it packs of the code and what it leaves out is recorded in `chosen` when given."""
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
    chosen = select(root, group.allow, chosen)
    refuse_secrets(chosen, group.source)
    newer = [p for p in source_files(root, chosen) if p.stat().st_mtime > pdf.stat().st_mtime]
    if newer:
        shown = ", ".join(str(p.relative_to(root)) for p in newer[:5]) + (" ..." if len(newer) > 5 else "")
        raise SubmissionError(f"{PDF} is older than its sources ({shown}): run `make report` again")
    check_rendered_runs(root, pdf)
    name = f"hw2-group{group.number}"
    out = root / f"{name}.zip"
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(pdf, f"{name}/{name}-report.pdf")
            for path in chosen.files:
                zf.write(path, f"{name}/{path.relative_to(root).as_posix()}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def folder_listing(names: list[str], untracked: set[str]) -> list[str]:
    """'hw2/: __init__.py, q2/cnn.py, ...' for each top folder of a zip's `names`, every file named (those git
    does not track marked so)."""
    folders: dict[str, list[str]] = defaultdict(list)
    for name in names:
        rel = name.split("/", 1)[1]  # below the zip's own top folder
        if "/" in rel:
            top, inside = rel.split("/", 1)
            folders[top].append(inside + (" (untracked)" if rel in untracked else ""))
    return [f"{top}/: {', '.join(files)}" for top, files in folders.items()]


def main(root: str = ".") -> int:
    chosen = Selection()
    try:
        out = build(root, chosen)
    except SubmissionError as exc:
        print(f"hw2 submission: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(out) as zf:
        names, size = zf.namelist(), out.stat().st_size
    print(f"[hw2] {out.name}: the report PDF and {len(names) - 1} code files ({size / 1024:.0f} KiB); upload it on Fenix")
    print(f"[hw2] packed: {packing_list(names)}")
    for line in folder_listing(names, chosen.untracked):
        print(f"[hw2]   {line}")
    if chosen.untracked:
        print(f"[hw2] {len(chosen.untracked)} packed file(s) are untracked: git does not version them yet "
              f"(`git add` them): {', '.join(sorted(chosen.untracked))}")
    for item in chosen.left_out:
        print(f"[hw2] left out: {item}")
    return 0
