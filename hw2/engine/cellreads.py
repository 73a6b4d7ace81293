"""What each cell of a report reads, recorded inside the renderer's kernel, and the fingerprints the cell cache
(`hw2.engine.cellcache`) compares on the next render.

A cell's result can depend on files in three ways, and each is seen where Python does it, whatever helper the
cell goes through: a file opened for reading (Python's `open` audit event), a folder listed (`os.listdir` and
`os.scandir` events: a run folder added to the store changes the listing) and a path checked (`os.stat`, which
`Path.exists`, `is_file`, `os.path.isdir`... call; it has no audit event, so it is wrapped). Only paths in the
watched folders count (the project, the run store, the data folder), never the Python installation. Besides
files: the source of every module a cell imported that is not an installed package (hw2's, wherever it is
imported from), and the `git` commands a cell runs (the commit stamp), run again to fingerprint what they print.
What a cell writes in the watched folders (a figure's PNG, the render record) is kept with its record, so that
reusing the cell writes the same files again.

Standard library only: this module is imported into the kernel before any cell runs, so it must not load the
project's modules itself (the first cell's record would miss them).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import sysconfig

# Compiled modules are read by imports; a module counts by its source instead (see `_stop`).
CACHE_FOLDER = "__pycache__"
# Programs whose output a cell may depend on and that are safe to run again to check it (they only read).
RECHECKED_PROGRAMS = {"git"}


def installed_prefixes() -> tuple[str, ...]:
    """Folders of the Python installation and its packages: nothing there is the project's."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}
    return tuple(os.path.join(os.path.abspath(p), "") for p in paths if p)


def fingerprint(path: str, hows: list[str], hashes: dict | None = None) -> dict | None:
    """What the next render compares for `path` as a cell used it (`hows`: "open", "list", "stat"): None where it
    does not exist; a folder's kind, and its entries where it was listed; a file's size and time, and its
    SHA-256 where it was read (a file touched but unchanged is still current)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        out: dict = {"dir": True}
        if "list" in hows:
            out["entries"] = hashlib.sha256("\0".join(sorted(os.listdir(path))).encode()).hexdigest()
        return out
    out = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if "open" in hows:
        key = (path, st.st_size, st.st_mtime_ns)
        if hashes is None or key not in hashes:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            if hashes is None:
                return {**out, "sha256": digest.hexdigest()}
            hashes[key] = digest.hexdigest()
        out["sha256"] = hashes[key]
    if "stat" in hows:
        out["stat"] = True  # the cell may have used the time itself: it must match exactly
    return out


def _by_the_import_system() -> bool:
    """Whether the event comes from Python's import machinery: its path finders list a sys.path folder (the
    document's own, for one) whenever its time changed, so what they saw depends on when, not on what the cell
    read. An imported module counts by its source instead (`Recorder._stop`)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def current(path: str, recorded: dict | None) -> bool:
    """Whether `path` is still as a cell saw it (the recorded `fingerprint`)."""
    if recorded is None or "dir" in recorded:
        now = fingerprint(path, ["list"] if recorded and "entries" in recorded else [])
        return now == recorded
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size != recorded["size"]:
        return False
    if st.st_mtime_ns == recorded["mtime_ns"]:
        return True
    return "sha256" in recorded and not recorded.get("stat") and fingerprint(path, ["open"])["sha256"] == recorded["sha256"]


def command_output(args: list[str], cwd: str) -> str | None:
    """The SHA-256 of what a re-checked command prints, or None where it cannot run."""
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return hashlib.sha256(done.stdout + b"\0" + str(done.returncode).encode()).hexdigest()


class Recorder:
    """Installed once in the kernel (`install`): records each cell's reads between IPython's pre- and post-run
    events, and keeps one record per cell for `dump`. The first watched folder is the project."""

    def __init__(self, watched: list[str], ignored: list[str]):
        self.root = os.path.abspath(watched[0])  # the project: paths in it are recorded relative to it
        self.watched = tuple(os.path.join(os.path.abspath(p), "") for p in watched)
        self.ignored = tuple(os.path.join(os.path.abspath(p), "") for p in ignored) + installed_prefixes()
        self.installed = installed_prefixes()
        self.active = False
        self.reads: dict[str, set] = {}
        self.writes: set[str] = set()
        self.commands: list[tuple[list[str], str]] = []
        self.attributed: set[str] = set()  # modules already counted as some earlier cell's dependency
        self.hashes: dict = {}
        self.records: list[dict] = []

    def install(self, shell) -> None:
        sys.addaudithook(self._audit)
        original = os.stat

        def checked_stat(path, *args, **kwargs):
            if self.active:
                self._note(path, "stat")
            return original(path, *args, **kwargs)

        os.stat = checked_stat
        shell.events.register("pre_run_cell", self._start)
        shell.events.register("post_run_cell", self._stop)

    def _note(self, path, how: str) -> None:
        path = self._watched(path)
        if path is not None:
            self.reads.setdefault(path, set()).add(how)

    def _watched(self, path) -> str | None:
        """`path`, absolute, where it lies in a watched folder; else None."""
        if isinstance(path, int) or path is None:
            return None
        try:
            path = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        with_sep = os.path.join(path, "")
        if (with_sep.startswith(self.watched) and not with_sep.startswith(self.ignored)
                and CACHE_FOLDER not in path.split(os.sep)):
            return path
        return None

    def _audit(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax") if isinstance(mode, str) else flags & (os.O_WRONLY | os.O_RDWR)
            if not writes:
                self._note(path, "open")
            elif self._watched(path):
                self.writes.add(self._watched(path))
        elif event == "os.rename":  # os.replace too: an atomic write's last step
            if self._watched(args[1]):
                self.writes.add(self._watched(args[1]))
        elif event in ("os.listdir", "os.scandir") and not _by_the_import_system():
            self._note(args[0] if args[0] is not None else ".", "list")
        elif event == "subprocess.Popen":
            _, argv, cwd, _ = args
            argv = [os.fsdecode(a) for a in argv] if not isinstance(argv, (str, bytes)) else [os.fsdecode(argv)]
            self.commands.append((argv, os.path.abspath(os.fsdecode(cwd)) if cwd else os.getcwd()))

    def _start(self, info=None) -> None:
        self.reads, self.writes, self.commands, self.active = {}, set(), [], True

    def _stop(self, result=None) -> None:
        if not self.active:
            return  # the cell that installed the recorder
        self.active = False
        for name, module in list(sys.modules.items()):
            if name in self.attributed:
                continue
            self.attributed.add(name)
            source = getattr(module, "__file__", None)
            if source and source.endswith(".py") and not os.path.abspath(source).startswith(self.installed):
                self.reads.setdefault(os.path.abspath(source), set()).add("open")
        files = {self._shown(path): fingerprint(path, sorted(hows), self.hashes) for path, hows in sorted(self.reads.items())}
        commands = []
        for argv, cwd in self.commands:
            program = os.path.basename(argv[0]) if argv else ""
            commands.append({"args": argv, "cwd": cwd,
                             "output": command_output(argv, cwd) if program in RECHECKED_PROGRAMS else None})
        written = {}
        for path in sorted(self.writes):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    written[self._shown(path)] = base64.b64encode(f.read()).decode()
        self.records.append({"files": files, "commands": commands, "written": written})

    def _shown(self, path: str) -> str:
        """`path` relative to the project where it lies in it: a project moved or copied keeps its cache."""
        relative = os.path.relpath(path, self.root)
        return path if relative.startswith(os.pardir) else relative

    def dump(self) -> None:
        """Print the records of the cells run so far, as one JSON line for the renderer."""
        print(json.dumps(self.records))
