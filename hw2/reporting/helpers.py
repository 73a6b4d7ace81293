"""Report-side helpers for `report/*.qmd`: read finished runs into tables, figures and inline numbers.

They never train: a missing run is a `RunError` that names the make target producing it. Every table
and figure ends its caption with the runs it comes from as short references ("Runs R2–R7 (Table 14)"),
stand-in data and runs made with earlier code said so; the provenance appendix (`provenance_table`, the
table labelled `PROVENANCE_LABEL`) gives each run's full record from its folder.
"""
from __future__ import annotations

import json
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from hw2.engine import store
from hw2.engine.paths import project_root
from hw2.engine.store import LoadedRun, RunError

FIGURE_DIR = Path("_figures")
RENDER_RECORD = Path(".hw2_cache") / "render.json"  # written when a render starts (`setup`)
DERIVED = "Computed with SymPy by hw2.q1.derivations; no run."


class ContributionError(ValueError):
    """The group's contribution statement is missing or incomplete."""


# --- runs and provenance ------------------------------------------------------------------------------------

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
    from hw2.engine.registry import BY_NAME

    make_target = BY_NAME[experiment].make_target
    runs = store.runs_for_report(experiment, profile)
    if not runs:
        raise RunError(f"no complete {experiment} run of profile {profile!r} for the current code in "
                       f"{store.results_dir() / experiment}: run `PROFILE={profile} make {make_target}` first "
                       f"(`python -m hw2 status` says which runs are missing or stale)")
    return runs


def is_standin(data_source: str) -> bool:
    return data_source.startswith("standin")


def describe_source(data_source: str) -> str:
    """Human words for a run's data source: stand-in data is always called so."""
    if data_source == "synthetic":
        return "random inputs (no data set)"
    if is_standin(data_source):
        return f"generated stand-in data ({data_source}), not the real data set"
    if data_source.startswith("real-"):
        return f"real data ({data_source})"
    return f"custom data ({data_source}): neither the published data set nor hw2's stand-in"


def seed_of(run: LoadedRun) -> int | None:
    return run.config.get("config", {}).get("seed")


@dataclass
class LeftOut:
    """A run kept out of an average, and why (a difference other than the seed)."""

    run: LoadedRun
    reason: str

    def __str__(self) -> str:
        return f"{self.run.short_key} ({self.reason})"


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
    left_out = [LeftOut(run, _difference(run, shown[0])) for group in groups.values() if group is not shown
                for run in group]
    return sorted(shown, key=lambda r: seed_of(r) or 0), left_out


def pool_each(groups: dict, planned) -> tuple[dict, list[LeftOut]]:
    """`pool` for every cell of `groups` ({cell: runs}), `planned(cell)` giving the profile's configuration of
    the cell: ({cell: the runs shown}, every run left out)."""
    shown, left_out = {}, []
    for cell, runs in groups.items():
        shown[cell], cell_left_out = pool(runs, planned(cell))
        left_out += cell_left_out
    return shown, left_out


def _difference(run: LoadedRun, shown: LoadedRun) -> str:
    """'batch_size 16 where the runs shown have 8', 'data custom-1234 where ...', 'older code'."""
    mine, theirs = _seedless(run), _seedless(shown)
    keys = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    if keys:
        return (", ".join(f"{k} {mine.get(k)}" for k in keys) + " where the runs shown have "
                + ", ".join(f"{theirs.get(k)}" for k in keys))
    if run.summary.get("data_source") != shown.summary.get("data_source"):
        return f"data {run.summary.get('data_source')} where the runs shown used {shown.summary.get('data_source')}"
    return "made by other code than the runs shown"


PROVENANCE_LABEL = "tbl-provenance"  # the appendix table that every caption's run references point to


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
                       f"(report.shown_runs), so the provenance appendix has no row to cite; build the table or "
                       f"figure from the runs that require_runs returns")
    spans: list[list[int]] = []
    for n in sorted({numbers[r.path] for r in runs}):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"R{a}" if a == b else f"R{a}, R{b}" if b == a + 1 else f"R{a}–R{b}" for a, b in spans)


def provenance(runs: Iterable[LoadedRun]) -> str:
    """'Runs R2–R7 (@tbl-provenance), on generated stand-in data.' for a caption: where in the provenance
    appendix the runs' full record is; stand-in data and runs made with earlier code are said here too."""
    runs = list(runs)
    note = f"{'Run' if len(runs) == 1 else 'Runs'} {run_refs(runs)} (@{PROVENANCE_LABEL})"
    if any(is_standin(r.summary["data_source"]) for r in runs):
        note += ", on generated stand-in data"
    if any(r.summary["data_source"].startswith("custom-") for r in runs):
        note += ", on custom data (neither the published data set nor hw2's stand-in)"
    stale = [r for r in runs if r.stale]
    if stale:
        note += (f". Made with earlier code ({run_refs(stale)}: "
                 f"{', '.join(sorted({f for r in stale for f in r.changed_files()}))} changed since)")
    return markdown_text(note + ".", keep="@")


MARKDOWN_SPECIAL = set("\\`*_[]{}<>#$|@~^")


def markdown_text(text: str, keep: str = "") -> str:
    """Plain text escaped for Pandoc Markdown (a table cell included), but for the characters in `keep`."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL and c not in keep else c for c in text)


def caption(text: str, runs: Iterable[LoadedRun] | str) -> str:
    """The caption text followed by the runs it comes from (or `runs` itself, a note for content computed
    while rendering)."""
    return f"{text} {runs if isinstance(runs, str) else provenance(runs)}"


# --- tables, figures, numbers -------------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:.{digits}f}"


def plural(n: int, noun: str) -> str:
    """'1 thread', '2 threads'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def versus(a: float, b: float, digits: int = 4) -> str:
    """'higher (0.8312 against 0.8176)': how `a` compares with `b`, with both values."""
    word = "equal" if fmt(a, digits) == fmt(b, digits) else ("lower" if a < b else "higher")
    return f"{word} ({fmt(a, digits)} against {fmt(b, digits)})"


def mean_std(values: Iterable[float], digits: int = 4) -> str:
    """'0.8123' for one value, '0.8123 ± 0.0040' (sample std) for several."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(statistics.mean(values), digits)} ± {fmt(statistics.stdev(values), digits)}"


def table(df, label: str, text: str, runs: Iterable[LoadedRun] | str):
    """A captioned, labelled Markdown table (`@tbl-...` refers to it)."""
    from IPython.display import Markdown

    if not label.startswith("tbl-"):
        raise ValueError(f"table labels start with tbl- (got {label!r})")
    numeric = re.compile(r"^[\s*]*([-+]?[\d.,]+|n/a)")
    align = ["right" if all(numeric.match(str(v)) for v in df[c]) else "left" for c in df.columns]
    body = df.to_markdown(index=False, disable_numparse=True, colalign=align)
    return Markdown(f"{body}\n\n: {caption(text, runs)} {{#{label}}}\n")


def figure(fig, label: str, text: str, runs: Iterable[LoadedRun] | str, width: str = "75%"):
    """Save a matplotlib figure and return it as a captioned, labelled Markdown figure (`@fig-...`)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown

    if not label.startswith("fig-"):
        raise ValueError(f"figure labels start with fig- (got {label!r})")
    for ax in fig.axes:
        if getattr(ax, "_colorbar", None) is not None:  # a colour bar has its own label, one axis
            if not ax._colorbar.ax.get_ylabel() and not ax._colorbar.ax.get_xlabel():
                raise ValueError(f"figure {label}: every colour bar needs a label (colorbar.set_label)")
            continue
        if ax.has_data() and not (ax.get_xlabel() and ax.get_ylabel()):
            raise ValueError(f"figure {label}: every plot needs axis labels (set_xlabel / set_ylabel)")
    FIGURE_DIR.mkdir(exist_ok=True)
    path = FIGURE_DIR / f"{label}.png"
    fig.savefig(path, dpi=150)  # laid out by the constrained layout: one drawing pass, not two
    plt.close(fig)
    return Markdown(f"![{caption(text, runs)}]({path.as_posix()}){{#{label} width={width}}}\n")


PROVENANCE_COLUMNS = {"Run": 4, "Folder in the run store; data": 20, "Configuration": 36, "Code": 14,
                      "Environment": 16, "Wall time": 10}  # relative widths (dashes of the separator row)


def provenance_table(profile: str, text: str):
    """The provenance appendix, labelled PROVENANCE_LABEL: one row per run the report shows (R1, R2, ... as the
    captions cite them), each field read from the run's folder: configuration, code identity and data source
    (config.json, summary.json), environment, commit and wall time (env.json)."""
    from IPython.display import Markdown

    runs = numbered_runs(profile)
    if not runs:
        raise RunError(f"no runs of profile {profile!r} in {store.results_dir()} to list in the provenance appendix: "
                       f"run `PROFILE={profile} make runs` first")
    rows = [[f"R{n}", f"{run.summary['experiment']}/{run.name}; data {run.summary['data_source']}",
             _configuration(run), _code(run), _environment(run.env), _wall_time(run.env, run.summary)]
            for n, run in enumerate(runs, start=1)]
    lines = ["| " + " | ".join(PROVENANCE_COLUMNS) + " |",
             "|" + "|".join(":" + "-" * w for w in PROVENANCE_COLUMNS.values()) + "|"]
    lines += ["| " + " | ".join(markdown_text(cell) for cell in row) + " |" for row in rows]
    return Markdown("\n".join(lines) + f"\n\n: {text} {{#{PROVENANCE_LABEL}}}\n")


def _value(value) -> str:
    """A configuration value as config.json holds it, without JSON's quotes."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _configuration(run: LoadedRun) -> str:
    return "; ".join(f"{k}={_value(v)}" for k, v in run.config.get("config", {}).items())


def _code(run: LoadedRun) -> str:
    """The code hash of the run's key and the commit it ran at; a stale run also names what changed since."""
    code = f"code {run.summary['code'][:12]}, commit {run.env.get('git_commit') or 'not recorded'}"
    if run.stale:
        code += f"; made with earlier code: {', '.join(run.changed_files())} changed since"
    return code


def _environment(env: dict) -> str:
    def get(key):
        return env[key] if env.get(key) is not None else "not recorded"

    device = f"{get('device')}" + (f" ({env['cuda']})" if env.get("cuda") else "")
    return (f"Python {get('python')}, torch {get('torch')}, NumPy {get('numpy')}; {device}, "
            f"{get('torch_threads')} torch thread(s) of {get('cpu_count')} CPUs; {get('platform')}")


def _wall_time(env: dict, summary: dict | None = None) -> str:
    """'108.2 s, finished …'; runs trained together in one process (a Q2 sweep) share that process's time."""
    seconds = env.get("wall_time_s")
    if seconds is None:
        return "not recorded"
    took = f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
    finished = env.get("finished_at")
    together = (summary or {}).get("members_trained_together") or 1
    took += f" for the {together} runs trained together" if together > 1 else ""
    return took + (f", finished {finished.replace('T', ' ').replace('Z', ' UTC')}" if finished else "")


# --- authors, title page, contributions ---------------------------------------------------------------------

@dataclass
class Student:
    name: str
    number: str
    email: str
    contribution: str


@dataclass
class Group:
    number: int
    students: list[Student]
    example: bool


AUTHORS_KEYS = ("group", "students", "example")
STUDENT_KEYS = ("name", "number", "email", "contribution")


def load_authors(path: Path | None = None) -> Group:
    """`report/authors.yml`: the group number and its students (name, number, email, contribution). Anything
    else is a ContributionError at the file's line and column, saying what to write there."""
    path = Path(path) if path else project_root() / "report" / "authors.yml"
    shown = _shown(path)
    if not path.is_file():
        raise ContributionError(f"{shown} is missing: it holds the group, the students and who did what "
                                f"(the contribution statement; missing, it costs 10 points)")
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise ContributionError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context
        hint = ("indent with spaces: YAML does not allow tabs" if "'\\t'" in problem else
                "each student starts with `  - name: ...` under `students:`, their other keys indented as far as "
                "`name`, and a value holding `: ` or ` #` goes in quotes")
        raise ContributionError(f"{shown}:{mark.line + 1}:{mark.column + 1}: not valid YAML ({problem}). Fix it "
                                f"there: {hint}") from None
    except yaml.YAMLError as exc:
        raise ContributionError(f"{shown}: not valid YAML: {exc}") from None

    def at(node) -> str:
        return f"{shown}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    if not isinstance(root, yaml.MappingNode):
        where = at(root) if root is not None else f"{shown}:1:1"
        raise ContributionError(f"{where}: authors.yml holds the keys `group:` and `students:`, not "
                                f"{_yaml_kind(root)}")
    top = _yaml_mapping(root, AUTHORS_KEYS, "authors.yml", at)
    if "students" not in top:
        raise ContributionError(f"{shown}: no `students:` list; add one `- name: ...` entry per student")
    students_node = top["students"]
    if not isinstance(students_node, yaml.SequenceNode) or not students_node.value:
        raise ContributionError(f"{at(students_node)}: `students` must list the students, one `- name: ...` entry "
                                f"each, not {_yaml_kind(students_node)}")
    students = []
    for i, node in enumerate(students_node.value, start=1):
        if not isinstance(node, yaml.MappingNode):
            raise ContributionError(f"{at(node)}: student {i} must be the keys {', '.join(STUDENT_KEYS)}, written "
                                    f"`- name: ...` with the others indented below it, not {_yaml_kind(node)}")
        fields = _yaml_mapping(node, STUDENT_KEYS, f"student {i}", at)
        values = {}
        for key in STUDENT_KEYS:
            value = fields.get(key)
            if value is not None and not isinstance(value, yaml.ScalarNode):
                raise ContributionError(f"{at(value)}: student {i}'s `{key}` must be text, not {_yaml_kind(value)}"
                                        + (" (write it on one line, or after `>` on the lines below)"
                                           if key == "contribution" else ""))
            # the text as written (`name: Yes` is a name, not True), none where the key is empty or null
            values[key] = "" if _yaml_value(value) is None else " ".join(value.value.split())
        missing = [k for k in ("name", "number", "email") if not values[k]]
        if missing:
            raise ContributionError(f"{at(node)}: student {i} has no {', '.join(missing)}: write "
                                    + ", ".join(f"`{k}: ...`" for k in missing))
        students.append(Student(**values))
    if "group" not in top:
        raise ContributionError(f"{shown}: no `group:`; add your group number, e.g. `group: 7`")
    group = _yaml_value(top["group"])
    if isinstance(group, str) and group.strip().isdigit():
        group = int(group)
    if isinstance(group, bool) or not isinstance(group, int) or group < 0:
        raise ContributionError(f"{at(top['group'])}: `group` must be your group's number, e.g. `group: 7`, not "
                                f"{_yaml_kind(top['group'])}")
    example = _yaml_value(top["example"]) if "example" in top else False
    if not isinstance(example, bool):
        raise ContributionError(f"{at(top['example'])}: `example` must be true or false (delete the line once "
                                f"the group is yours), not {_yaml_kind(top['example'])}")
    return Group(group, students, example)


def _shown(path: Path) -> str:
    """`path` relative to the project folder holding it (as messages and editors name files), else as given."""
    path = Path(path).resolve()
    root = next((folder for folder in path.parents if (folder / "_quarto.yml").is_file()), None)
    return path.relative_to(root).as_posix() if root else str(path)


def _yaml_mapping(node, keys: tuple[str, ...], owner: str, at) -> dict:
    """{key: value node} of a YAML mapping; an unknown or repeated key is an error at its line."""
    found = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in keys:
            raise ContributionError(f"{at(key_node)}: {owner} has an unknown key {key_node.value!r} (the keys are "
                                    f"{', '.join(keys)}): a misspelt key? fix its name or remove it")
        if key in found:
            raise ContributionError(f"{at(key_node)}: {owner} has `{key}` twice; keep one")
        found[key] = value_node
    return found


def _yaml_value(node):
    """The Python value of a YAML node (None for a missing one)."""
    if node is None:
        return None
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _yaml_kind(node) -> str:
    if node is None:
        return "an empty file"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a set of keys"
    return "nothing" if _yaml_value(node) is None else repr(node.value)


def contribution_paragraph(group: Group | None = None) -> str:
    """The statement's required paragraph on who did what, from authors.yml; an error if any is missing."""
    group = group or load_authors()
    empty = [s.name for s in group.students if not s.contribution]
    if empty:
        raise ContributionError(
            f"report/authors.yml: no contribution written for {', '.join(empty)}. The statement requires one "
            f"paragraph saying what each member did (10-point penalty if it is missing): fill in "
            f"`contribution:` for every student")
    sentences = []
    for s in group.students:
        text = s.contribution.rstrip(".")
        sentences.append(f"{s.name} ({s.number}) {text[0].lower() + text[1:]}.")
    return " ".join(sentences)


@dataclass
class ShownRuns:
    """What the title page says about the runs of one experiment."""

    title: str
    runs: list[LoadedRun]

    @property
    def sources(self) -> list[str]:
        """Each data source of these runs, in words."""
        return [describe_source(s) for s in sorted({r.summary["data_source"] for r in self.runs})]


def shown_runs(profile: str) -> list[ShownRuns]:
    """Per experiment (in the registry's order), the runs the report shows for `profile`."""
    from hw2.engine.registry import EXPERIMENTS

    return [ShownRuns(e.title, store.runs_for_report(e.name, profile)) for e in EXPERIMENTS]


def students_table(group: Group):
    """The group's students as a Markdown table (name, number, e-mail)."""
    import pandas as pd
    from IPython.display import Markdown

    students = pd.DataFrame([{"Student": s.name, "Number": s.number, "E-mail": s.email} for s in group.students])
    return Markdown(students.to_markdown(index=False, disable_numparse=True) + "\n")


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
