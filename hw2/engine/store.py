"""The run store: one folder per run under `results/<experiment>/<name>/`.

A run's name is a readable slug plus a key hashed from its config, profile, data source and the code that can
change its result (the experiment's module and the hw2 modules it imports, as syntax trees without docstrings
or comments, less the modules outside the boundary below), so a finished run is never redone, a code change
never reuses a stale result, and rewording a comment or a docstring costs nothing.

Life of a run (`store.execute`):
  1. take an exclusive lock on the run (a second process asking for the same run waits, then reuses it);
  2. if the final folder is complete and holds exactly what it was sealed with, load it; if it exists but is
     incomplete or damaged, move it aside (to `<experiment>/.trash/`) and redo;
  3. train inside `<name>.partial/`, checkpointing every epoch (a killed run resumes from there; runs trained
     together resume from the last epoch they all reached);
  4. write env.json and summary.json (with a manifest: the size and sha256 of every other file, and the sha256
     of its own content), then rename `<name>.partial` to `<name>`: the folder appears whole or not at all.
Files written by a notebook run: config.json, history.csv, summary.json, env.json, weights, run.ipynb.
"""
from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hw2.engine.errors import UserError
from hw2.engine.fetch import file_digest
from hw2.engine.machine import cpu_model, native_bf16_flags
from hw2.engine.paths import results_dir

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The boundary of "code that can change a result": an experiment's module and the hw2 modules it reaches by
# imports (its question's model, training, data, features, C kernel; shared code it uses), EXCEPT what stores,
# runs, shows or configures runs: the engine, the report helpers, and each question's `config.py` (a run's
# configuration enters its key by value) and `report.py`. Editing these never makes a run stale.
OUTSIDE_ROOMS = {"engine", "reporting"}
OUTSIDE_FILES = {"__main__.py", "config.py", "report.py"}
REQUIRED_FILES = ("config.json", "summary.json", "env.json", "history.csv")


class RunError(UserError, RuntimeError):
    """A run that cannot be found or used, with what to do about it."""


def _package_dir(top: str) -> Path | None:
    """The folder of the top-level package `top`: hw2's own, or that of an experiment kept outside it."""
    if top == "hw2":
        return PACKAGE_DIR
    spec = importlib.util.find_spec(top)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def _module_file(name: str, tops: tuple[str, ...] = ("hw2",)) -> Path | None:
    """hw2.a.b -> hw2/a/b.py (or hw2/a/b/__init__.py); None outside the packages `tops`."""
    parts = name.split(".")
    base = _package_dir(parts[0]) if parts[0] in tops else None
    if base is None:
        return None
    base = base.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(path: Path, tops: tuple[str, ...]) -> set[Path]:
    """The files of the modules of the packages `tops` that `path` imports anywhere (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        found |= {f for f in (_module_file(n, tops) for n in names) if f is not None}
    return found


def _outside_boundary(path: Path) -> bool:
    room = path.relative_to(PACKAGE_DIR).parts[0] if path.is_relative_to(PACKAGE_DIR) else None
    return room in OUTSIDE_ROOMS or path.name in OUTSIDE_FILES or path.name == "__init__.py"


def code_files(module: str = "") -> set[Path]:
    """The experiment module `module` and every module of hw2 (and of the module's own package) it reaches
    through imports (the whole of hw2 for "" or a module that no longer exists), less those outside the
    boundary, with their C sources."""
    tops = tuple(dict.fromkeys(("hw2", module.split(".")[0]))) if module else ("hw2",)
    start = _module_file(module, tops) if module else None
    if start is None:
        modules = {p for p in PACKAGE_DIR.rglob("*.py") if not _outside_boundary(p)}
    else:
        todo, modules = [start], set()
        while todo:
            path = todo.pop()
            if path in modules or _outside_boundary(path):
                continue
            modules.add(path)
            todo += _imported_files(path, tops)
    # A module's C source (hw2/q2/cnn_cpu.c beside cnn_cpu.py) is its code too.
    return modules | {p.with_suffix(".c") for p in modules if p.with_suffix(".c").is_file()}


def _code_key(path: Path) -> str:
    """A file's name in a run's record: relative to hw2 (q2/cnn.py), or to its package's parent outside hw2."""
    if path.is_relative_to(PACKAGE_DIR):
        return path.relative_to(PACKAGE_DIR).as_posix()
    for parent in path.parents:
        if not (parent / "__init__.py").is_file():
            return path.relative_to(parent).as_posix()
    return path.name


def normalized_code(path: Path) -> str:
    """What of a source file can change a result: for Python its syntax tree without docstrings (comments and
    formatting are not in the tree), for C its text without comments and with whitespace collapsed."""
    text = path.read_text()
    if path.suffix != ".py":
        return " ".join(re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S).split())
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@functools.lru_cache(maxsize=None)
def code_fingerprints(module: str = "") -> dict[str, str]:
    """{file relative to the package: hash of its normalized code} over the experiment module's boundary."""
    return {_code_key(path): hashlib.sha256(normalized_code(path).encode()).hexdigest()[:16]
            for path in sorted(code_files(module))}


def code_hash(module: str = "") -> str:
    """The code identity of the experiment module `module`, part of every run key: a change that can alter a
    result makes new runs; a reworded docstring or comment, or an edit outside the boundary, does not."""
    return hashlib.sha256(json.dumps(code_fingerprints(module), sort_keys=True).encode()).hexdigest()


# A configuration field with this metadata enters a run's key only when it differs from its default: a field
# added after runs were made (the rehearsal's step limit) leaves the keys of the configurations that do not set it.
KEY_IF_SET = {"key": "if set"}


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("key") == KEY_IF_SET["key"] and getattr(obj, f.name) == f.default)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # JSON has no NaN/inf; keep them readable
    if isinstance(obj, Path):
        return obj.as_posix()
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


@dataclass(frozen=True)
class RunSpec:
    """What identifies a run: experiment, config, profile, data source and code (that of `module`, the
    experiment's module, and what it imports). `command` says what trains it (`make runs-q2`), not part of the key."""

    experiment: str
    config: dict
    profile: str
    data_source: str
    slug: str = ""
    code: str = ""  # filled with code_hash(module)
    module: str = ""
    command: str = ""

    def __post_init__(self):
        if not self.code:
            object.__setattr__(self, "code", code_hash(self.module))

    @staticmethod
    def create(experiment: str, config: Any, profile: str, data_source: str, slug: str = "", module: str = "",
               command: str = "") -> "RunSpec":
        return RunSpec(experiment, _jsonable(config), profile, data_source, slug, module=module, command=command)

    @staticmethod
    def of(entry: Any, config: Any, profile: str, data_source: str, slug: str = "") -> "RunSpec":
        """A run of the registered experiment `entry` (its registry entry: name, module and make target)."""
        return RunSpec.create(entry.name, config, profile, data_source, slug, module=entry.module,
                              command=f"make {entry.make_target}")

    @property
    def key(self) -> str:
        blob = json.dumps(
            {"experiment": self.experiment, "config": self.config, "profile": self.profile,
             "data_source": self.data_source, "code": self.code},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def name(self) -> str:
        parts = [p for p in (self.slug, self.profile, self.key) if p]
        return "-".join(parts)

    @property
    def path(self) -> Path:
        return results_dir() / self.experiment / self.name

    @property
    def partial_path(self) -> Path:
        return self.path.with_name(self.name + ".partial")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name("." + self.name + ".lock")


# --- atomic file writes ------------------------------------------------------------------------------------

def temporary_path(path: Path, suffix: str = "") -> Path:
    """Where `path` is written before it is renamed into place: hidden, unique per process and thread, and
    naming its writer's process so that `remove_dead_temporaries` can tell a stale one from a live one
    (`suffix`: for writers that want an extension, such as papermill's .ipynb)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}{suffix}")


TEMPORARY_RE = re.compile(r"^\..+\.tmp(\d+)-\d+(\.ipynb)?$")


def atomic_write_bytes(path: Path, data: bytes, previous: Path | None = None) -> None:
    """Write `path` whole or not at all; with `previous`, the file it replaces is kept under that name. A
    failed write (a full disk, Ctrl-C) removes its temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # write() and fsync() name no file: say which one could not be written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_dead_temporaries(folder: Path, prefix: str = ".") -> list[Path]:
    """Delete the temporary files in `folder` (those starting with `prefix`) whose writer is no longer running:
    what a killed writer leaves behind. Never touches a live writer's file; says what it removed."""
    removed = []
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        match = TEMPORARY_RE.match(path.name)
        if match and path.name.startswith(prefix) and path.is_file() and not _process_running(int(match[1])):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        print(f"[hw2] removed {len(removed)} temporary file(s) left by writers that are no longer running: "
              f"{', '.join(str(p) for p in removed)}", file=sys.stderr, flush=True)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _jsonable(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


# --- runs ---------------------------------------------------------------------------------------------------

class Run:
    """A run in progress: a `.partial` folder that training writes into, and its checkpoints."""

    CHECKPOINT = "checkpoint.pt"
    # The checkpoint before the newest: runs trained together whose checkpoint writes were cut apart (a kill or
    # a full disk between members) still share an epoch to resume from.
    PREVIOUS_CHECKPOINT = "checkpoint.previous.pt"

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.dir = spec.partial_path
        self.history: list[dict] = []
        self.epoch = 0  # of the last checkpoint saved or resumed from
        self.wall_time_s = 0.0
        self._started = time.time()

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.dir / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.dir / name, text)

    def save_torch(self, name: str, obj: Any) -> None:
        atomic_torch_save(self.dir / name, obj)

    def log_epoch(self, row: dict) -> None:
        """Append one epoch's row to history.csv (rewritten whole, atomically)."""
        self.history.append(dict(row))
        write_csv(self.dir / "history.csv", self.history)

    def elapsed(self) -> float:
        return self.wall_time_s + (time.time() - self._started)

    def save_checkpoint(self, state: dict, epoch: int | None = None) -> None:
        """Everything needed to resume after the last completed epoch (history and wall time included).

        `epoch` defaults to the number of checkpoints saved, which is the epoch for a run that checkpoints once
        per epoch. The checkpoint it replaces is kept as checkpoint.previous.pt."""
        import torch

        self.epoch = self.epoch + 1 if epoch is None else epoch
        buf = io.BytesIO()
        torch.save({"state": state, "history": self.history, "wall_time_s": self.elapsed(), "epoch": self.epoch},
                   buf)
        atomic_write_bytes(self.dir / self.CHECKPOINT, buf.getvalue(), previous=self.dir / self.PREVIOUS_CHECKPOINT)

    def checkpoints(self, move_unreadable: bool = True) -> dict[int, tuple[Path, dict]]:
        """{epoch: (file, checkpoint)} of this run's readable checkpoints (the newer file wins a tie); an
        unreadable one (truncated, foreign) is moved aside, and said so, unless `move_unreadable` is False."""
        import torch

        found = {}
        for name in (self.PREVIOUS_CHECKPOINT, self.CHECKPOINT):
            path = self.dir / name
            if not path.exists():
                continue
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=False)
                # a checkpoint saved before checkpoints recorded their epoch: one per epoch, so its history's length
                ckpt["epoch"] = int(ckpt["epoch"] if "epoch" in ckpt else len(ckpt["history"]))
                if "state" not in ckpt:
                    raise KeyError("state")
            except Exception as exc:  # redo rather than crash
                if move_unreadable:
                    _move_aside(path, f"unreadable checkpoint ({exc.__class__.__name__}: {exc})")
                continue
            found[ckpt["epoch"]] = (path, ckpt)
        return found

    def load_checkpoint(self, epoch: int | None = None) -> dict | None:
        """The training state of the newest checkpoint (or of `epoch`'s), or None to start from scratch."""
        found = self.checkpoints()
        epoch = max(found, default=None) if epoch is None else epoch
        return self._resume(*found[epoch]) if epoch in found else None

    def _resume(self, path: Path, ckpt: dict) -> dict:
        """Take up `ckpt`, read from `path`; resuming from the previous checkpoint drops the newer one (its epoch
        is trained again, to the same result) so that the two kept stay the last two epochs."""
        if path.name == self.PREVIOUS_CHECKPOINT:
            os.replace(path, self.dir / self.CHECKPOINT)
        self.history = list(ckpt["history"])
        self.epoch = ckpt["epoch"]
        self.wall_time_s = float(ckpt.get("wall_time_s", 0.0))
        self._started = time.time()
        write_csv(self.dir / "history.csv", self.history)
        print(f"[hw2] resuming {self.spec.name} after epoch {self.epoch}", flush=True)
        return ckpt["state"]

    def finish(self, summary: dict, env: dict | None = None) -> Path:
        """Seal the run: env.json, summary.json with a manifest (size and sha256 of every other file), then
        rename into place."""
        for name in (self.CHECKPOINT, self.PREVIOUS_CHECKPOINT):
            (self.dir / name).unlink(missing_ok=True)
        if not (self.dir / "history.csv").exists():
            write_csv(self.dir / "history.csv", self.history)
        self.write_json("env.json", {**environment(), **(env or {}), "wall_time_s": round(self.elapsed(), 3)})
        files = {p.name: manifest_entry(p) for p in sorted(self.dir.iterdir())
                 if p.is_file() and not p.name.startswith(".")}
        summary = {"status": "complete", **summary, "name": self.spec.name, "key": self.spec.key,
                   "experiment": self.spec.experiment, "profile": self.spec.profile,
                   "data_source": self.spec.data_source, "code": self.spec.code, "files": files}
        write_summary(self.dir / "summary.json", summary)
        if self.spec.path.exists():
            _move_aside(self.spec.path, "replaced by a newer complete run")
        os.replace(self.dir, self.spec.path)
        return self.spec.path


def load_shared_checkpoint(runs: list[Run]) -> tuple[int, list[dict]] | None:
    """Runs trained together (a sweep) resume together: the last epoch every one of them has a checkpoint of, and
    each run's training state at it; None to train them all from the start.

    A kill or a full disk between the members' checkpoint writes leaves them an epoch apart; each keeps the
    checkpoint before its newest, so they share the earlier epoch, and the members ahead train theirs again."""
    found = [run.checkpoints() for run in runs]
    shared = set.intersection(*(set(f) for f in found)) if found else set()
    if not shared:
        for run, checkpoints in zip(runs, found):
            for path, _ in checkpoints.values():  # kept, not overwritten by the new start
                _move_aside(path, "the runs trained with it have no checkpoint of the same epoch; they all start "
                                  "again from the first epoch")
        return None
    epoch = max(shared)
    ahead = [f"{run.spec.name} (epoch {max(checkpoints)})" for run, checkpoints in zip(runs, found)
             if max(checkpoints) > epoch]
    if ahead:
        print(f"[hw2] the runs trained together were checkpointed unevenly (a write was cut short); all resume "
              f"from epoch {epoch}, the last they share, and train again what {', '.join(ahead)} had done after it",
              flush=True)
    return epoch, [run._resume(*checkpoints[epoch]) for run, checkpoints in zip(runs, found)]


def checkpointed_epoch(specs: list[RunSpec]) -> int | None:
    """The epoch that runs trained together would resume from (None: no shared checkpoint); reads only."""
    found = [set(Run(spec).checkpoints(move_unreadable=False)) for spec in specs]
    return max(set.intersection(*found), default=None) if found else None


def environment() -> dict:
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(terse=True),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_native_bf16": native_bf16_flags(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=PACKAGE_DIR,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _move_aside(path: Path, reason: str) -> Path:
    """Keep a bad file or folder (nothing is deleted) under `<experiment>/.trash/`, and say so. A file of a run in
    progress is named after its run (`<run>.checkpoint.pt...`): the runs of a sweep move theirs aside together."""
    path = Path(path)
    in_run = path.parent.name.endswith(".partial")
    experiment_dir = path.parent.parent if in_run else path.parent
    trash = experiment_dir / ".trash"
    trash.mkdir(parents=True, exist_ok=True)
    base = f"{path.parent.name.removesuffix('.partial')}.{path.name}" if in_run else path.name
    dest = _reserve(trash, f"{base}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}", path.is_dir())
    try:
        os.replace(path, dest)  # over our own empty placeholder, never over anything kept before
    except BaseException:
        (os.rmdir if dest.is_dir() else os.unlink)(dest)
        raise
    print(f"[hw2] {path} was moved to {dest}: {reason}", file=sys.stderr, flush=True)
    return dest


def _reserve(folder: Path, name: str, is_dir: bool) -> Path:
    """A new, empty placeholder in `folder` named `name` (or `name.1`, `name.2`, ... where that is taken),
    created exclusively, so that two moves in the same second, by one process or several, never share one."""
    taken = 0
    while True:
        dest = folder / (name if taken == 0 else f"{name}.{taken}")
        try:
            if is_dir:
                dest.mkdir()
            else:
                os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return dest
        except FileExistsError:
            taken += 1


# --- the manifest: what a finished run's folder held when it was sealed ------------------------------------------
# summary.json lists every other file of the folder with its size and sha256, and records the sha256 of its own
# content (less that field): a file removed, truncated or edited in place, even keeping its size, is found.

SUMMARY_DIGEST = "summary_sha256"


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def manifest_entry(path: Path) -> dict:
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def _summary_digest(summary: dict) -> str:
    return hashlib.sha256(json.dumps({k: v for k, v in summary.items() if k != SUMMARY_DIGEST},
                                     sort_keys=True).encode()).hexdigest()


def write_summary(path: Path, summary: dict) -> None:
    """Write summary.json with the digest of its own content."""
    summary = _jsonable(summary)
    atomic_write_json(path, {**summary, SUMMARY_DIGEST: _summary_digest(summary)})


def check_complete(path: Path) -> str | None:
    """None if `path` is a complete run folder holding exactly the files it was sealed with, else "missing" or
    what is wrong with it ("incomplete: ...", "damaged: ...", "unverifiable: ...")."""
    path = Path(path)
    if not path.is_dir():
        return "missing"
    try:
        summary = json.loads((path / "summary.json").read_text())
    except FileNotFoundError:
        return "incomplete: summary.json is missing (the run never finished)"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"damaged: summary.json is unreadable ({exc})"
    if not isinstance(summary, dict) or summary.get("status") not in ("complete", "diverged"):
        return f"incomplete: summary.json's status is {summary.get('status') if isinstance(summary, dict) else None!r}"
    files = summary.get("files")
    if not isinstance(files, dict) or not files:
        return "incomplete: summary.json holds no manifest of the run's files (the run was never sealed)"
    if SUMMARY_DIGEST not in summary or not all(isinstance(e, dict) and "sha256" in e for e in files.values()):
        return ("unverifiable: its manifest records no content hashes (the run was sealed by an earlier version of "
                "hw2), so its files cannot be checked")
    if summary[SUMMARY_DIGEST] != _summary_digest(summary):
        return "damaged: summary.json was edited after the run finished (its content differs from its recorded sha256)"
    for name in REQUIRED_FILES:
        if name != "summary.json" and name not in files:
            return f"incomplete: {name} is not in the manifest"
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            return f"damaged: {name} is in the manifest but missing"
        if file.stat().st_size != entry["bytes"]:
            return (f"damaged: {name} has {file.stat().st_size} bytes, the manifest says {entry['bytes']} (changed "
                    f"after the run finished)")
        if file_sha256(file) != entry["sha256"]:
            return f"damaged: {name} differs from the manifest's sha256 (edited in place after the run finished)"
    return None


@contextlib.contextmanager
def locked(spec: RunSpec):
    """An exclusive lock on one run, so two processes never train the same run at once."""
    spec.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[hw2] {spec.name} is being trained by another process; waiting for it", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def execute(spec: RunSpec, train: Callable[[Run], dict], device: str | None = None) -> "LoadedRun":
    """Produce the run `spec` (reusing it when complete, resuming it when partial) and return it loaded.

    `train(run)` does the work inside `run.dir`, resuming from `run.load_checkpoint()`, and returns the
    summary dict; `execute` seals the folder.
    """
    return execute_many([spec], lambda runs: [train(runs[0])], device)[0]


def execute_many(specs: list[RunSpec], train: Callable[[list[Run]], list[dict]],
                 device: str | None = None) -> list["LoadedRun"]:
    """`execute` for runs trained together (e.g. a learning-rate sweep sharing one stacked model).

    Complete runs are reused; `train` gets only the runs still to do and returns one summary per run.
    """
    with contextlib.ExitStack() as stack:
        for spec in sorted(specs, key=lambda s: s.name):  # a fixed order, so two sweeps cannot deadlock
            stack.enter_context(locked(spec))
        todo = []
        for spec in specs:
            # What writers of this run killed earlier left behind (we hold its lock: no live writer is at work).
            for folder, prefix in ((spec.partial_path, "."), (spec.path, "."), (spec.path.parent, f".{spec.name}.")):
                remove_dead_temporaries(folder, prefix)
            problem = check_complete(spec.path)
            if problem is None:
                print(f"[hw2] {spec.name} is complete; reusing it", flush=True)
                continue
            if problem != "missing":
                _move_aside(spec.path, f"{problem}; training it again")
            spec.partial_path.mkdir(parents=True, exist_ok=True)
            run = Run(spec)
            run.write_json("config.json", {"experiment": spec.experiment, "profile": spec.profile,
                                           "data_source": spec.data_source, "code": spec.code,
                                           "config": spec.config, "module": spec.module,
                                           "command": spec.command, "code_files": code_fingerprints(spec.module)})
            todo.append(run)
        if todo:
            summaries = train(todo)
            for run, summary in zip(todo, summaries, strict=True):
                run.finish(summary, {"device": device, "seed": run.spec.config.get("seed")})
        return [load(spec.path) for spec in specs]


# --- reading runs -------------------------------------------------------------------------------------------

@dataclass
class LoadedRun:
    path: Path
    config: dict
    summary: dict
    env: dict
    history: "Any"  # pandas.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def short_key(self) -> str:
        return self.summary["key"][:6]

    @property
    def stale(self) -> bool:
        """Made by code that differs from the current code (within the experiment's boundary)."""
        return self.summary.get("code") != code_hash(self.config.get("module", ""))

    def changed_files(self) -> list[str]:
        return changed_files(self.config) if self.stale else []

    def file(self, name: str) -> Path:
        """A file of the run, one its manifest vouches for."""
        if name not in self.summary["files"]:
            raise RunError(f"{self.path} has no {name} in its manifest: the run did not write it")
        return self.path / name


def what_to_do_with_damaged(path: Path) -> str:
    """What to do about the damaged run folder `path`: the command that moves it aside and trains it again, or,
    for a run of earlier code (which no command trains again), moving it aside by hand."""
    trash = path.parent / ".trash"
    config = {}
    with contextlib.suppress(OSError, ValueError):
        config = json.loads((path / "config.json").read_text())
    config = config if isinstance(config, dict) else {}
    profile = config.get("profile")
    command = (f"`{f'PROFILE={profile} ' if profile else ''}{config['command']}`" if config.get("command")
               else "`python -m hw2 runs`")
    if config.get("code") not in (None, code_hash(config.get("module", ""))):
        return (f"it was made by earlier code, which no command trains again: move it to {trash} yourself "
                f"({command} trains the current code's run)")
    return f"{command} moves it to {trash} and trains it again"


def load(path: Path) -> LoadedRun:
    """A complete run, or a RunError saying what is wrong with it and what to do."""
    import pandas as pd

    path = Path(path)
    problem = check_complete(path)
    if problem is not None:
        raise RunError(f"{path} cannot be used: {problem}; {what_to_do_with_damaged(path)}")
    hist_path = path / "history.csv"
    history = pd.read_csv(hist_path) if hist_path.stat().st_size > 0 else pd.DataFrame()
    return LoadedRun(path, json.loads((path / "config.json").read_text()),
                     json.loads((path / "summary.json").read_text()),
                     json.loads((path / "env.json").read_text()), history)


def list_runs(experiment: str, profile: str | None = None, current_code: bool = True) -> list[LoadedRun]:
    """Complete runs of an experiment (of one profile, and of the current code unless told otherwise).

    A damaged run among them is never shown, nor silently left out (a sweep missing one run would change what
    the report concludes): `load` raises a RunError naming the file and the command that trains it again."""
    root = results_dir() / experiment
    runs = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith(".") or path.name.endswith(".partial"):
            continue
        identity = None
        for name in ("config.json", "summary.json"):  # filter before loading (and checking the manifest)
            with contextlib.suppress(OSError, ValueError):
                identity = identity or json.loads((path / name).read_text())
        if not isinstance(identity, dict):
            print(f"[hw2] {path} is left out: neither its config.json nor its summary.json can be read, so it "
                  f"is no run of any profile", file=sys.stderr, flush=True)
            continue
        if profile and identity.get("profile") != profile:
            continue
        if current_code and identity.get("code") != code_hash(identity.get("module", "")):
            continue
        runs.append(load(path))
    return runs


# --- runs made by earlier code --------------------------------------------------------------------------------

STALE_VARIABLE = "HW2_STALE"


def use_stale() -> bool:
    """Whether the user chose to render with stale runs instead of training them again ($HW2_STALE=use)."""
    value = os.environ.get(STALE_VARIABLE, "")
    if value not in ("", "use", "rerun"):
        raise RunError(f"{STALE_VARIABLE} must be 'use' (render with runs made by earlier code) or 'rerun' "
                       f"(the default: train them again), got {value!r}")
    return value == "use"


def changed_files(run_config: dict) -> list[str]:
    """The files whose code differs between a run's record (its config.json) and the current code (added and
    removed ones too)."""
    recorded = run_config.get("code_files")
    if recorded is None:
        return ["unrecorded files"]  # a run made before per-file code records
    current = code_fingerprints(run_config.get("module", ""))
    return sorted(name for name in set(recorded) | set(current) if recorded.get(name) != current.get(name))


def stale_run(spec: RunSpec) -> tuple[Path, list[str]] | None:
    """The newest complete run of the same configuration, profile and data made with other code, and the files
    whose code changed since."""
    root = results_dir() / spec.experiment
    found = []
    for path in root.iterdir() if root.is_dir() else []:
        if path.name.startswith(".") or path.name.endswith(".partial") or path == spec.path:
            continue
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        same = (config.get("config") == spec.config and config.get("profile") == spec.profile
                and config.get("data_source") == spec.data_source and config.get("code") != spec.code)
        if same and check_complete(path) is None:
            found.append((path.stat().st_mtime, path, config))
    if not found:
        return None
    _, path, config = max(found, key=lambda item: item[0])
    return path, changed_files(config)


def runs_for_report(experiment: str, profile: str) -> list[LoadedRun]:
    """The runs a report shows: those of the current code; with HW2_STALE=use, also, for each configuration that
    has no current run, its newest run made by earlier code (marked `stale`)."""
    if not use_stale():
        return list_runs(experiment, profile)
    newest: dict[str, LoadedRun] = {}
    for run in list_runs(experiment, profile, current_code=False):
        identity = json.dumps({"config": run.config.get("config"), "data": run.summary.get("data_source")},
                              sort_keys=True)
        best = newest.get(identity)
        if best is None or (best.stale, -best.path.stat().st_mtime) > (run.stale, -run.path.stat().st_mtime):
            newest[identity] = run
    return sorted(newest.values(), key=lambda r: r.path.name)


def find(spec: RunSpec, make_target: str) -> LoadedRun:
    """The complete run for `spec`, or an error that names the make target producing it."""
    problem = check_complete(spec.path)
    if problem is not None:
        raise RunError(f"run {spec.path}: {problem}; run `PROFILE={spec.profile} make {make_target}` first")
    return load(spec.path)


def add_to_manifest(path: Path, name: str) -> None:
    """Record a file added to a sealed run folder (the executed notebook) in its manifest."""
    summary_path = Path(path) / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["files"][name] = manifest_entry(Path(path) / name)
    write_summary(summary_path, summary)
