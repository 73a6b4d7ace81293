"""`python -m hw2 status`: for each question of a profile, which planned runs are current, which are stale
(a complete run of the same configuration, profile and data made with other code, and which files' code
changed since), which are damaged (their folder differs from its manifest: which file, and how), which are
partial (interrupted: the checkpoint they resume from), which are missing, and the command that makes them. It
never trains or makes data, and reads checkpoints without moving anything.

A stale run is never used silently: `make report` trains the current run instead, unless HW2_STALE=use,
which keeps the stale run, renders with it and stamps "made with earlier code" where it is shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hw2.engine import registry, store
from hw2.engine.errors import UserError, os_error_line
from hw2.engine.runner import experiment_module


@dataclass
class PlannedRun:
    name: str
    state: str  # "current", "stale", "damaged", "partial" or "missing"
    stale_path: Path | None = None
    changed: list[str] = field(default_factory=list)
    problem: str = ""  # what is wrong with a damaged run's folder
    resumable: str = ""  # where training it resumes: "epoch 3" (the shared checkpoint of its execution's runs)


STATES = ("current", "stale", "partial", "missing", "damaged")


def question_status(question: str, profile: str) -> tuple[str | None, list[PlannedRun]]:
    module = experiment_module(question)
    source = module.data_source(profile)
    if source is None:
        return None, []
    planned = []
    for params in module.plan(profile):
        specs = module.specs(params, profile, source)
        problems = {spec.name: store.check_complete(spec.path) for spec in specs}
        resumable = _resumable([spec for spec in specs if problems[spec.name] is not None], module.CHECKPOINT_UNIT)
        for spec in specs:
            problem = problems[spec.name]
            if problem is None:
                planned.append(PlannedRun(spec.name, "current"))
            elif problem != "missing":
                planned.append(PlannedRun(spec.name, "damaged", problem=problem, resumable=resumable))
            elif stale := store.stale_run(spec):
                planned.append(PlannedRun(spec.name, "stale", *stale, resumable=resumable))
            else:
                planned.append(PlannedRun(spec.name, "partial" if resumable else "missing", resumable=resumable))
    return source, planned


def _resumable(todo: list[store.RunSpec], unit: str) -> str:
    """Where the runs an execution still has to train resume ("epoch 3": the last checkpoint they share), or ""."""
    if not any(spec.partial_path.is_dir() for spec in todo):
        return ""  # nothing was interrupted (and reading checkpoints imports torch)
    epoch = store.checkpointed_epoch(todo)
    return f"{unit} {epoch}" if epoch else ""


def report(profile: str) -> tuple[str, bool, list[str]]:
    """The status text of every question, whether every planned run is current, and one line for each question
    whose data cannot be read (the others are still reported)."""
    lines, all_current, any_stale, problems = [], True, False, []
    for question in registry.questions():
        target = f"PROFILE={profile} make runs-{question}"
        try:
            source, planned = question_status(question, profile)
        except (UserError, OSError) as exc:  # this question's data cannot be read: say so, and go on with the others
            problems.append(f"{question}: {os_error_line(exc) if isinstance(exc, OSError) else exc}")
            all_current = False
            continue
        if source is None:
            lines.append(f"{question} (profile {profile}): no data yet, so no run; `{target}` makes the data and "
                         f"the runs")
            all_current = False
            continue
        counts = {state: sum(p.state == state for p in planned) for state in STATES}
        line = (f"{question} (profile {profile}, data {source}): {len(planned)} planned: {counts['current']} current, "
                f"{counts['stale']} stale, {counts['missing']} missing"
                + "".join(f", {counts[state]} {state}" for state in ("partial", "damaged") if counts[state]))
        any_stale = any_stale or counts["stale"] > 0
        if counts["current"] < len(planned):
            all_current = False
            line += f"; `{target}` makes them"
        lines.append(line)
        for p in planned:
            resumes = f"resumable from {p.resumable}" if p.resumable else ""
            if p.state == "stale":
                lines.append(f"  stale   {p.name}: made from {p.stale_path.name}, whose code differs in "
                             f"{', '.join(p.changed) or 'no recorded file'}" + (f"; the new run is {resumes}"
                                                                                 if resumes else ""))
            elif p.state == "missing":
                lines.append(f"  missing {p.name}")
            elif p.state == "partial":
                lines.append(f"  partial {p.name}: {resumes}")
            elif p.state == "damaged":
                lines.append(f"  damaged {p.name}: {p.problem.removeprefix('damaged: ')}; `{target}` moves it to "
                             f".trash and trains it again" + (f", {resumes}" if resumes else ""))
    if any_stale:
        lines.append(f"Stale runs are trained again by `make report`; {store.STALE_VARIABLE}=use renders with them "
                     f"instead, stamped \"made with earlier code\".")
    return "\n".join(lines), all_current, problems
