"""Where the project, its data and its run store are."""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project folder (the one holding _quarto.yml): the nearest above the current directory, else the one
    this package was installed from. Documents run with the kernel in report/, commands anywhere in the tree."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (folder / "_quarto.yml").is_file():
            return folder
    return here


def project_path(variable: str, default: str) -> Path:
    """$variable, else `default`; a relative path is taken from the project root, never from the current
    directory, so a command started in report/ writes where one started at the root does."""
    path = Path(os.environ.get(variable) or default)
    return path if path.is_absolute() else project_root() / path


def data_dir() -> Path:
    """Where data sets live: $HW2_DATA_DIR, default `data/` in the project root."""
    return project_path("HW2_DATA_DIR", "data")


def results_dir() -> Path:
    """The run store: $HW2_RESULTS_DIR, default `results/` in the project root."""
    return project_path("HW2_RESULTS_DIR", "results")
