"""The runs a report shows: which are read (never trained: a missing run is a `RunError` naming the make target
that produces it), which are averaged, and the numbers R1, R2, ... by which captions cite them.

Run Ri is the i-th row of the provenance appendix (the table labelled `PROVENANCE_LABEL`), so a caption's
"Runs R2–R7" needs no run keys; `hw2.reporting.provenance` builds that table.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from hw2.engine import store
from hw2.engine.paths import project_root
from hw2.engine.store import LoadedRun, RunError

RENDER_RECORD = Path(".hw2_cache") / "render.json"  # written when a render starts (`setup`)
PROVENANCE_LABEL = "tbl-provenance"  # the appendix table that every caption's run references point to


def setup() -> str:
    """Call first in the report: point the run store at the project's results (the kernel's working
    directory is the document's folder, report/) unless $HW2_RESULTS_DIR says otherwise, and return the
    profile the report shows: $PROFILE, else the same default as `make runs`."""
    from hw2.engine.profiles import resolve_profile

    os.environ["HW2_RESULTS_DIR"] = str(store.results_dir())  # absolute from here on
    profile = resolve_profile(None)
    # What `make submission` checks the PDF against: the profile it shows and the runs it could read.
    record = project_root() / RENDER_RECORD
    record.parent.mkdir(exist_ok=True)
    store.atomic_write_json(record, {"profile": profile, "results": os.environ["HW2_RESULTS_DIR"]})
    return profile


def require_runs(experiment: str, profile: str) -> list[LoadedRun]:
    """The complete runs of `experiment` for `profile` (current code), or an error naming the make target."""
    from hw2.engine.registry import by_name

    make_target = by_name(experiment).make_target
    runs = store.runs_for_report(experiment, profile)
    if not runs:
        raise RunError(f"no complete {experiment} run of profile {profile!r} for the current code in "
                       f"{store.results_dir() / experiment}: run `PROFILE={profile} make {make_target}` first "
                       f"(`python -m hw2 status` says which runs are missing or stale)")
    return runs


def source_kind(data_source: str) -> str:
    """What a run's data is, from its data source: "synthetic" (random inputs, no data set), "standin" (hw2's
    generated stand-in), "real" (the published data set) or "custom" (anything else)."""
    if data_source == "synthetic":
        return "synthetic"
    if data_source.startswith("standin"):
        return "standin"
    if data_source.startswith("real-"):
        return "real"
    return "custom"


def seed_of(run: LoadedRun) -> int | None:
    return run.config.get("config", {}).get("seed")


@dataclass
class LeftOut:
    """A run kept out of an average and what differs from the runs shown, other than the seed: the configuration
    fields ({field: (this run's value, the shown runs' value)}), else the data sources (this run's, theirs),
    else, neither differing, the code."""

    run: LoadedRun
    fields: dict[str, tuple]
    data: tuple[str, str] | None


def _seedless(run: LoadedRun) -> dict:
    return {k: v for k, v in run.config.get("config", {}).items() if k != "seed"}


def pool(runs: list[LoadedRun], planned: dict | None = None) -> tuple[list[LoadedRun], list[LeftOut]]:
    """Of runs meant to be one configuration, those that may be averaged (they differ in the seed alone: same
    configuration, data and code) and the others, each with what differs. The group shown is the one with the
    profile's `planned` configuration (seed ignored), else the closest to it, then the one with most runs, then
    the newest; its runs in seed order."""
    groups: dict[str, list[LoadedRun]] = {}
    for run in runs:
        identity = (_seedless(run), run.summary.get("data_source"), run.summary.get("code"))
        groups.setdefault(repr(identity), []).append(run)
    planned = {k: v for k, v in json.loads(json.dumps(planned or {})).items() if k != "seed"}  # as config.json has it

    def rank(group: list[LoadedRun]):
        config = _seedless(group[0])
        off_plan = sum(config.get(k) != planned.get(k) for k in set(config) | set(planned))
        return (-off_plan, len(group), max(r.path.stat().st_mtime for r in group))

    shown = max(groups.values(), key=rank)
    left_out = [_left_out(run, shown[0]) for group in groups.values() if group is not shown for run in group]
    return sorted(shown, key=lambda r: seed_of(r) or 0), left_out


def pool_each(groups: dict, planned) -> tuple[dict, list[LeftOut]]:
    """`pool` for every cell of `groups` ({cell: runs}), `planned(cell)` giving the profile's configuration of
    the cell: ({cell: the runs shown}, every run left out)."""
    shown, left_out = {}, []
    for cell, runs in groups.items():
        shown[cell], cell_left_out = pool(runs, planned(cell))
        left_out += cell_left_out
    return shown, left_out


def _left_out(run: LoadedRun, shown: LoadedRun) -> LeftOut:
    mine, theirs = _seedless(run), _seedless(shown)
    fields = {k: (mine.get(k), theirs.get(k)) for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)}
    sources = (run.summary.get("data_source"), shown.summary.get("data_source"))
    return LeftOut(run, fields, sources if sources[0] != sources[1] else None)


@dataclass
class ShownRuns:
    """The runs the report shows of one experiment, and the title the title page gives them."""

    title: str
    runs: list[LoadedRun]

    @property
    def sources(self) -> list[str]:
        """The data sources of these runs, each once."""
        return sorted({r.summary["data_source"] for r in self.runs})


def shown_runs(profile: str) -> list[ShownRuns]:
    """Per experiment (in the registry's order), the runs the report shows for `profile`."""
    from hw2.engine.registry import EXPERIMENTS

    return [ShownRuns(e.title, store.runs_for_report(e.name, profile)) for e in EXPERIMENTS]


def numbered_runs(profile: str) -> list[LoadedRun]:
    """Every run the report shows for `profile`, in the registry's order of experiments: the i-th is Ri, by
    which captions cite it and the provenance appendix lists it."""
    return [r for s in shown_runs(profile) for r in s.runs]


def run_numbers(profile: str) -> dict[Path, int]:
    """{run folder: i} for the runs R1, R2, ... of `numbered_runs`."""
    return {r.path: n for n, r in enumerate(numbered_runs(profile), start=1)}


def run_refs(runs: Iterable[LoadedRun]) -> str:
    """'R1', 'R2, R3', 'R2–R7, R9': the runs' numbers in the provenance appendix, consecutive ones as a range."""
    runs = list(runs)
    numbers: dict[Path, int] = {}
    for profile in sorted({r.summary["profile"] for r in runs}):
        numbers.update(run_numbers(profile))
    missing = [r for r in runs if r.path not in numbers]
    if missing:  # a caption may cite only runs the appendix lists
        raise RunError(f"{', '.join(str(r.path) for r in missing)}: not among the runs the report shows "
                       f"(runs.shown_runs), so the provenance appendix has no row to cite; build the table or "
                       f"figure from the runs that require_runs returns")
    spans: list[list[int]] = []
    for n in sorted({numbers[r.path] for r in runs}):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"R{a}" if a == b else f"R{a}, R{b}" if b == a + 1 else f"R{a}–R{b}" for a, b in spans)
