"""The render cache: values computed from code rather than from runs (SymPy derivations, counts on the model
code), kept between renders so that re-rendering prose does not recompute them.
"""
from __future__ import annotations

from pathlib import Path

from hw2.engine import store
from hw2.engine.paths import project_root


def cached(name: str, sources: list[str], compute, versions: tuple[str, ...] = ()):
    """`compute()`, kept in `.hw2_cache/` at the project root per version of the modules it is computed from
    (`sources`, e.g. "hw2.q1.derivations") and of the libraries it uses (`versions`): derivations and
    counts from code take seconds, and re-rendering prose should not."""
    import hashlib
    import importlib.util
    import pickle
    import sys

    h = hashlib.sha256(sys.version.encode() + repr(versions).encode())
    for module in sources:
        h.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    path = project_root() / ".hw2_cache" / f"{name}-{h.hexdigest()[:16]}.pickle"
    try:
        return pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        pass  # not computed yet for this version (or unreadable): compute it
    value = compute()
    store.atomic_write_bytes(path, pickle.dumps(value))
    return value
