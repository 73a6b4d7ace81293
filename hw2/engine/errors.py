"""The errors hw2 raises for what a user gave it (a parameter, a profile, a file, a run folder): the command line
prints each as one line, without a traceback. Also that line for an OSError (a folder that is a file, a read-only
or full disk), which comes from the file system rather than from hw2, whichever module meets it."""
from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

from hw2.engine.paths import data_dir, results_dir

# How a UserError shows in a notebook's kernel: one line starting with this mark instead of a traceback. Across the
# process boundary the runner sees only the class's bare name (papermill's `ename`), which cannot tell a user
# error from a bug; the mark can, whatever module defines the class.
USER_ERROR_MARK = "hw2 user error "


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the traceback: the message says all the user needs."""
        return [f"{USER_ERROR_MARK}{type(self).__module__}.{type(self).__qualname__}: {self}"]


class ConfigError(UserError, ValueError):
    """A parameter or profile that cannot be used, with a message that says what to do instead."""


# --- OSError: one line naming the file, what is wrong and what to do --------------------------------------------

def _subclasses(cls: type) -> set[type]:
    return {cls} | {sub for direct in cls.__subclasses__() for sub in _subclasses(direct)}


# Python's own OSError classes by name: how a notebook's kernel reports an OSError (FileNotFoundError, ...).
OS_ERROR_NAMES = frozenset(c.__name__ for c in _subclasses(OSError) if c.__module__ == "builtins")
# What str() of an OSError reads: "[Errno 28] No space left on device: '/results/x/checkpoint.pt'".
_OS_ERROR_TEXT = re.compile(r"\[Errno (?P<errno>\d+)\] (?P<strerror>.*?)"
                            r"(?:: (?P<quote>['\"])(?P<filename>.*?)(?P=quote)(?: -> .*)?)?$", re.S)
# The folders a user chooses, by the variable that chooses them.
FOLDERS = (("HW2_DATA_DIR", "the data folder", data_dir), ("HW2_RESULTS_DIR", "the results folder", results_dir))


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the file, what is wrong with it and what to do."""
    return _describe(exc.errno, exc.strerror or str(exc), exc.filename)


def os_error_text_line(text: str) -> str:
    """`os_error_line` for an OSError known only by its text (as a notebook's kernel reports one)."""
    match = _OS_ERROR_TEXT.match(text)
    if match is None:
        return f"{text}; fix this, then run the same command again"
    return _describe(int(match["errno"]), match["strerror"], match["filename"])


def _describe(code: int | None, strerror: str, filename) -> str:
    path = Path(filename) if filename else None
    variable, name, folder = _chosen_folder(path)
    again = "then run the same command again"
    blocker = _nearest_file(folder) if folder else None
    if blocker is not None:  # the folder the user chose cannot be one
        where = "is" if blocker == folder else f"lies under {blocker}, which is"
        return f"{variable}={folder} {where} a file, not a folder: set {variable} to a folder, {again}"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        if variable:
            return f"cannot write to {name} {folder} ({path}: {strerror}); choose another with {variable}, {again}"
        return f"cannot write to {path or 'a file'}: {strerror}; make it writable, {again}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        variable = variable or "HW2_RESULTS_DIR"
        return (f"{path or 'a file'} could not be written: {strerror} ({free_space(path or results_dir())}); free "
                f"some space or set {variable} to a folder on another disk, {again}")
    blocker = _nearest_file(path.parent) if path is not None else None
    if blocker is not None:
        return f"{path} cannot be made: {blocker} is a file, not a folder; move that file away, {again}"
    return f"{path or 'a file'}: {strerror}; fix it{f' or set {variable} to another folder' if variable else ''}, {again}"


def _chosen_folder(path: Path | None) -> tuple[str | None, str | None, Path | None]:
    """The variable, name and folder of the user's folder that `path` is in (Nones outside them)."""
    for variable, name, folder in FOLDERS:
        if path is not None and path.is_relative_to(folder()):
            return variable, name, folder()
    return None, None, None


def _nearest_file(path: Path) -> Path | None:
    """The nearest of `path` and its parents that exists, if it is a file rather than a folder."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def free_space(path: Path) -> str:
    """'12.3 GB free on the disk of <folder>', for the nearest existing folder of `path`."""
    folder = next((p for p in (Path(path), *Path(path).parents) if p.is_dir()), Path("/"))
    free = float(shutil.disk_usage(folder).free)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            break
        free /= 1000
    amount = f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
    return f"{amount} free on the disk of {folder}"
