"""The experiments of the report, one per question: the one list that the run store, the runner, the report
and the command line read. An experiment `qN_name` is the module `hw2/qN_name.py`, the notebook
`analysis/qN_name.ipynb`, the run folders `results/qN_name/`, and `make runs-qN`.

Every experiment module follows `ExperimentModule`. A leaf module: it imports nothing of hw2 at run time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # for the annotations only: no import at run time, so no cycle
    from hw2.engine.store import RunSpec


@dataclass(frozen=True)
class Experiment:
    name: str  # q1_attention: module, notebook and results folder
    question: str  # q1: `python -m hw2 runs q1`, `make runs-q1`
    title: str  # how the report's title page names it

    @property
    def module(self) -> str:
        return f"hw2.{self.name}"

    @property
    def notebook(self) -> str:
        return f"analysis/{self.name}.ipynb"

    @property
    def make_target(self) -> str:
        return f"runs-{self.question}"


EXPERIMENTS = (
    Experiment("q1_attention", "q1", "Question 1 (attention benchmark)"),
    Experiment("q2_cnn", "q2", "Question 2 (CNN on OCTMNIST)"),
    Experiment("q3_asr", "q3", "Question 3 (speech recognition on LJ Speech)"),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}
BY_QUESTION = {e.question: e for e in EXPERIMENTS}


class ExperimentModule(Protocol):
    """What every experiment module provides (the runner, the store and the notebooks rely on it)."""

    EXPERIMENT: str  # its name in EXPERIMENTS
    NOTEBOOK: str  # analysis/<name>.ipynb

    def prepare_data(self, profile: str) -> str:
        """Find, download or generate the data; return its data source (part of every run key)."""

    def plan(self, profile: str) -> list[dict]:
        """The notebook parameters of each execution the profile's plan needs."""

    def specs(self, params: dict, profile: str, data_source: str) -> list[RunSpec]:
        """The runs one notebook execution with `params` writes."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """What the notebook calls: validate, print the banner, produce (or reuse) the run(s) and return them."""
