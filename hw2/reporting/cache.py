"""The render cache: values computed from code rather than from runs (SymPy derivations, counts on the model
code), kept between renders so that re-rendering prose does not recompute them.

Each entry is a header line (`hw2-cache <sha256 of the pickle>`) and the pickle: an entry damaged since it was
written (truncated, overwritten, even by another valid pickle) is discarded and computed again, and said so.
"""
from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path

from hw2.engine import store
from hw2.engine.paths import project_root

MAGIC = b"hw2-cache "


def cached(name: str, sources: list[str], compute, versions: tuple[str, ...] = ()):
    """`compute()`, kept in `.hw2_cache/` at the project root per version of the modules it is computed from
    (`sources`, e.g. "hw2.q1.derivations") and of the libraries it uses (`versions`): derivations and
    counts from code take seconds, and re-rendering prose should not."""
    import importlib.util

    # The entry format is part of the name: entries written before it had a header are simply not found.
    h = hashlib.sha256(sys.version.encode() + repr(versions).encode() + MAGIC)
    for module in sources:
        h.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    path = project_root() / ".hw2_cache" / f"{name}-{h.hexdigest()[:16]}.pickle"
    try:
        return _read(path)
    except FileNotFoundError:
        pass  # not computed yet for this version
    except DamagedEntry as exc:
        path.unlink(missing_ok=True)
        print(f"[hw2] the render cache entry {path} was damaged ({exc}); discarded it and computed "
              f"{name} again", file=sys.stderr, flush=True)
    value = compute()
    payload = pickle.dumps(value)
    store.atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    return value


class DamagedEntry(Exception):
    """A cache entry that is not what `cached` wrote."""


def _read(path: Path):
    """The value kept in `path`; FileNotFoundError where there is none, DamagedEntry saying what is wrong with
    one that cannot be trusted."""
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
    try:
        return pickle.loads(payload)
    except Exception as exc:  # unpickling can fail in many ways (a class renamed since, a foreign protocol)
        raise DamagedEntry(f"cannot be unpickled: {exc.__class__.__name__}: {exc}") from None
