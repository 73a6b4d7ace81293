"""The experiments of the report, one per question: the one list that the runner, `status`, the report, the
Makefile (through `python -m hw2`) and the command line read. Each entry names its question package's
`experiment` module, which follows `ExperimentModule`: the engine knows an experiment only through it.

A leaf module: it imports nothing of hw2 (not even for typing), so any module may read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Experiment:
    name: str  # q2_cnn: the notebook analysis/<name>.ipynb and the run folders results/<name>/
    question: str  # q2: `python -m hw2 runs q2`, `make runs-q2`
    title: str  # how the report's title page names it
    module: str  # the module that follows ExperimentModule, e.g. hw2.q2.experiment
    notebook: str = ""  # the papermill notebook, relative to the project root (default analysis/<name>.ipynb)

    def __post_init__(self):
        if not self.notebook:
            object.__setattr__(self, "notebook", f"analysis/{self.name}.ipynb")

    @property
    def make_target(self) -> str:
        return f"runs-{self.question}"


EXPERIMENTS: list[Experiment] = [
    Experiment("q1_attention", "q1", "Question 1 (attention benchmark)", "hw2.q1.experiment"),
    Experiment("q2_cnn", "q2", "Question 2 (CNN on OCTMNIST)", "hw2.q2.experiment"),
    Experiment("q3_asr", "q3", "Question 3 (speech recognition on LJ Speech)", "hw2.q3.experiment"),
]


def questions() -> list[str]:
    return [e.question for e in EXPERIMENTS]


def _entry(field: str, value: str) -> Experiment:
    for entry in EXPERIMENTS:
        if getattr(entry, field) == value:
            return entry
    raise KeyError(value)


def by_question(question: str) -> Experiment:
    return _entry("question", question)


def by_name(name: str) -> Experiment:
    return _entry("name", name)


@dataclass(frozen=True)
class DataStatus:
    """One question's data for a profile, as `python -m hw2 data` shows it."""
    source: str | None  # its identity (real-…, standin-…, custom-…) where present, else None
    path: str = ""  # where it is, or will be downloaded or made ("" for a question without a data set)
    absent: str = ""  # what the profile will use while it is absent: "downloaded on the first run", ...
    real: str = ""  # how the real data is got (a command), or why the profile does not use it; "" where none


def by_module(module: str) -> Experiment:
    """The entry of an experiment module (each module finds its own name, notebook and make target here)."""
    return _entry("module", module)


class ExperimentModule(Protocol):
    """Everything the engine asks of an experiment, one name per step.

    The runner asks for the profile's `plan`, makes or finds the data (`prepare_data`), computes each execution's
    run keys (`specs`) to see which runs are missing, and executes the notebook with the plan's parameters; the
    notebook checks them (`PARAMETERS`) and calls `run`. `status` asks `data_source`, `plan` and `specs`, and
    never makes data; `data verify` asks `verify_data`, `data` (status) `data_status` and `data fetch`
    `fetch_data`. After Ctrl-C the runner says which `CHECKPOINT_UNIT` each interrupted run keeps.
    """

    PARAMETERS: dict[str, Any]  # the notebook's parameters and their defaults: the one list of them
    CHECKPOINT_UNIT: str  # what a run's checkpoint counts: "epoch" (resumes after it) or "step"

    def plan(self, profile: str) -> list[dict]:
        """The notebook parameters of each execution the profile's plan needs (the profile is added)."""

    def data_source(self, profile: str) -> str | None:
        """The identity of the profile's data if it is present, else None; never downloads or makes data."""

    def prepare_data(self, profile: str) -> str:
        """Find, download or make the profile's data; return its data source (part of every run key)."""

    def verify_data(self, profile: str) -> list[str]:
        """The files of the profile's data (present) that differ from what its identity recorded, every file hashed
        again; [] when all match (`python -m hw2 data verify`)."""

    def data_status(self, profile: str) -> DataStatus:
        """Which data the profile uses, where, and how the real data is got; never downloads or makes data."""

    def fetch_data(self) -> str | None:
        """Download the real data set whatever the profile (a UserError, one line, where it cannot be); its data
        source, or None for a question without a data set (`python -m hw2 data fetch`)."""

    def configs(self, params: dict, profile: str) -> list:
        """The validated configuration of each run an execution with `params` writes (ConfigError if invalid)."""

    def specs(self, params: dict, profile: str, data_source: str) -> list:
        """The run keys (store.RunSpec) of the runs an execution with `params` writes."""

    def run(self, **params: Any) -> Any:
        """What the notebook calls: validate, print the banner, produce (or reuse) the run(s) and return them."""
