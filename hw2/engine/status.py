"""`python -m hw2 status`: for each question of a profile, which planned runs are current, which are stale
(a complete run of the same configuration, profile and data made with other code, and which files' code
changed since), which are damaged (their folder differs from its manifest: which file, and how), which are
missing, and the command that makes them. It never trains or makes data.

A stale run is never used silently: `make report` trains the current run instead, unless HW2_STALE=use,
which keeps the stale run, renders with it and stamps "made with earlier code" where it is shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hw2.engine import registry, store
from hw2.engine.runner import experiment_module


@dataclass
class PlannedRun:
    name: str
    state: str  # "current", "stale", "damaged" or "missing"
    stale_path: Path | None = None
    changed: list[str] = field(default_factory=list)
    problem: str = ""  # what is wrong with a damaged run's folder


def question_status(question: str, profile: str) -> tuple[str | None, list[PlannedRun]]:
    module = experiment_module(question)
    source = module.data_source(profile)
    if source is None:
        return None, []
    planned = []
    for params in module.plan(profile):
        for spec in module.specs(params, profile, source):
            problem = store.check_complete(spec.path)
            if problem is None:
                planned.append(PlannedRun(spec.name, "current"))
                continue
            if problem != "missing":
                planned.append(PlannedRun(spec.name, "damaged", problem=problem))
                continue
            stale = store.stale_run(spec)
            planned.append(PlannedRun(spec.name, "stale", *stale) if stale else PlannedRun(spec.name, "missing"))
    return source, planned


def report(profile: str) -> tuple[str, bool]:
    """The status text of every question, and whether every planned run is current."""
    lines, all_current, any_stale = [], True, False
    for question in registry.questions():
        source, planned = question_status(question, profile)
        target = f"PROFILE={profile} make runs-{question}"
        if source is None:
            lines.append(f"{question} (profile {profile}): no data yet, so no run; `{target}` makes the data and "
                         f"the runs")
            all_current = False
            continue
        counts = {state: sum(p.state == state for p in planned) for state in ("current", "stale", "damaged", "missing")}
        line = (f"{question} (profile {profile}, data {source}): {len(planned)} planned: {counts['current']} current, "
                f"{counts['stale']} stale, {counts['missing']} missing"
                + (f", {counts['damaged']} damaged" if counts["damaged"] else ""))
        any_stale = any_stale or counts["stale"] > 0
        if counts["stale"] or counts["missing"] or counts["damaged"]:
            all_current = False
            line += f"; `{target}` makes them"
        lines.append(line)
        for p in planned:
            if p.state == "stale":
                lines.append(f"  stale   {p.name}: made from {p.stale_path.name}, whose code differs in "
                             f"{', '.join(p.changed) or 'no recorded file'}")
            elif p.state == "missing":
                lines.append(f"  missing {p.name}")
            elif p.state == "damaged":
                lines.append(f"  damaged {p.name}: {p.problem.removeprefix('damaged: ')}; `{target}` moves it to "
                             f".trash and trains it again")
    if any_stale:
        lines.append(f"Stale runs are trained again by `make report`; {store.STALE_VARIABLE}=use renders with them "
                     f"instead, stamped \"made with earlier code\".")
    return "\n".join(lines), all_current
