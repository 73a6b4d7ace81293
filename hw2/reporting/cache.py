"""The render cache: values computed from code rather than from runs (SymPy derivations, counts on the model
code), kept between renders so that re-rendering prose does not recompute them.

Each entry is the pickle in the checked format the renderer's cell cache also uses (`hw2.engine.cellcache`: a
header line `hw2-cache <sha256 of the pickle>`): an entry damaged since it was written (truncated, overwritten,
even by another valid pickle) is discarded and computed again, and said so.
"""
from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path

from hw2.engine.cellcache import MAGIC, DamagedEntry, read_checked, write_checked
from hw2.engine.paths import project_root


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
    write_checked(path, pickle.dumps(value))
    return value


def _read(path: Path):
    """The value kept in `path`; FileNotFoundError where there is none, DamagedEntry saying what is wrong with
    one that cannot be trusted."""
    payload = read_checked(path)
    try:
        return pickle.loads(payload)
    except Exception as exc:  # unpickling can fail in many ways (a class renamed since, a foreign protocol)
        raise DamagedEntry(f"cannot be unpickled: {exc.__class__.__name__}: {exc}") from None
