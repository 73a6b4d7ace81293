"""Report-side helpers for `report/*.qmd`: read finished runs into tables, figures and inline numbers.

They never train: a missing run is a `RunError` that names the make target producing it. Every table
and figure says in its caption, in small type, which runs it comes from (short key, seed), their profile
and data source (stand-in data said so). Captions carry that note as a raw Typst inline, which both
Quarto and hw2's renderer pass through.
"""
from __future__ import annotations

import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from hw2 import store
from hw2.profiles import project_root
from hw2.store import LoadedRun, RunError

FIGURE_DIR = Path("_figures")
RENDER_RECORD = Path(".hw2_cache") / "render.json"  # written when a render starts (`setup`)
DERIVED = "Computed with SymPy by hw2.attention.derivations; no run."


class ContributionError(ValueError):
    """The group's contribution statement is missing or incomplete."""


# --- runs and provenance ------------------------------------------------------------------------------------

def setup() -> str:
    """Call first in the report: point the run store at the project's results (the kernel's working
    directory is the document's folder, report/) unless $HW2_RESULTS_DIR says otherwise, and return the
    profile the report shows: $PROFILE, else the same default as `make runs`."""
    from hw2.profiles import resolve_profile

    os.environ["HW2_RESULTS_DIR"] = str(store.results_dir())  # absolute from here on
    profile = resolve_profile(None)
    # What `make submission` checks the PDF against: the profile it shows and the runs it could read.
    record = project_root() / RENDER_RECORD
    record.parent.mkdir(exist_ok=True)
    store.atomic_write_json(record, {"profile": profile, "results": os.environ["HW2_RESULTS_DIR"]})
    return profile


def require_runs(experiment: str, profile: str) -> list[LoadedRun]:
    """The complete runs of `experiment` for `profile` (current code), or an error naming the make target."""
    from hw2.experiments import BY_NAME

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


def provenance(runs: Iterable[LoadedRun]) -> str:
    """'runs 1a2b3c (seed 42), ...; profile quick; generated stand-in data (...)' for a caption."""
    runs = list(runs)
    keys = ", ".join(f"{r.short_key}" + (f" (seed {seed_of(r)})" if seed_of(r) is not None else "")
                     for r in runs)
    profiles = sorted({r.summary["profile"] for r in runs})
    sources = sorted({r.summary["data_source"] for r in runs})
    stale = [r for r in runs if r.stale]
    stamp = (f" Made with earlier code ({', '.join(r.short_key for r in stale)}: "
             f"{', '.join(sorted({f for r in stale for f in r.changed_files()}))} changed since)." if stale else "")
    return (f"{'Run' if len(runs) == 1 else 'Runs'} {keys}; profile {', '.join(profiles)}; "
            f"{'; '.join(describe_source(s) for s in sources)}.{stamp}")


TYPST_SPECIAL = set("\\#$*_[]<>@`~/=+-\"'")


def typst_text(text: str) -> str:
    """Plain text escaped for Typst markup."""
    return "".join("\\" + c if c in TYPST_SPECIAL else c for c in text)


def small(text: str) -> str:
    """Markdown for `text` in small grey type (a raw Typst inline)."""
    return f"`#text(size: 7.5pt, fill: luma(80))[{typst_text(text)}]`{{=typst}}"


def caption(text: str, runs: Iterable[LoadedRun] | str) -> str:
    """The caption text followed, in small type, by the runs it comes from (or `runs` itself, a note
    for content computed while rendering)."""
    return f"{text} {small(runs if isinstance(runs, str) else provenance(runs))}"


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


def load_authors(path: Path | None = None) -> Group:
    """`report/authors.yml`: the group number and its students (name, number, email, contribution)."""
    path = Path(path) if path else project_root() / "report" / "authors.yml"
    if not path.is_file():
        raise ContributionError(f"{path} is missing: it holds the group, the students and who did what "
                                f"(the contribution statement; missing, it costs 10 points)")
    data = yaml.safe_load(path.read_text()) or {}
    students = []
    for i, s in enumerate(data.get("students") or [], start=1):
        missing = [k for k in ("name", "number", "email") if not str(s.get(k) or "").strip()]
        if missing:
            raise ContributionError(f"{path}: student {i} has no {', '.join(missing)}")
        students.append(Student(str(s["name"]).strip(), str(s["number"]).strip(), str(s["email"]).strip(),
                                " ".join(str(s.get("contribution") or "").split())))
    if not students:
        raise ContributionError(f"{path}: no students listed")
    if data.get("group") in (None, ""):
        raise ContributionError(f"{path}: the group number is missing")
    return Group(int(data["group"]), students, bool(data.get("example", False)))


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
    from hw2.experiments import EXPERIMENTS

    return [ShownRuns(e.title, store.runs_for_report(e.name, profile)) for e in EXPERIMENTS]


def students_table(group: Group):
    """The group's students as a Markdown table (name, number, e-mail)."""
    import pandas as pd
    from IPython.display import Markdown

    students = pd.DataFrame([{"Student": s.name, "Number": s.number, "E-mail": s.email} for s in group.students])
    return Markdown(students.to_markdown(index=False, disable_numparse=True) + "\n")


def cached(name: str, sources: list[str], compute, versions: tuple[str, ...] = ()):
    """`compute()`, kept in `.hw2_cache/` at the project root per version of the modules it is computed from
    (`sources`, e.g. "hw2.attention.derivations") and of the libraries it uses (`versions`): derivations and
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
