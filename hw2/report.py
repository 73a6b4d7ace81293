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
from hw2.store import LoadedRun, RunError


def project_root(start: Path | None = None) -> Path:
    """The folder holding `_quarto.yml` (documents run with the kernel in their own folder)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_quarto.yml").is_file():
            return folder
    return here


FIGURE_DIR = Path("_figures")
DERIVED = "Computed with SymPy by hw2.attention.derivations; no run."


class ContributionError(ValueError):
    """The group's contribution statement is missing or incomplete."""


# --- runs and provenance ------------------------------------------------------------------------------------

def setup() -> str:
    """Call first in the report: point the run store at the project's results (the kernel's working
    directory is the document's folder, report/) unless $HW2_RESULTS_DIR says otherwise, and return the
    profile the report shows: $PROFILE, else the same default as `make runs`."""
    from hw2.profiles import resolve_profile

    # A relative $HW2_RESULTS_DIR means relative to the project root, where make and the renderer run.
    results = Path(os.environ.get("HW2_RESULTS_DIR", "results"))
    os.environ["HW2_RESULTS_DIR"] = str(results if results.is_absolute() else project_root() / results)
    return resolve_profile(None)


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
    return f"real data ({data_source})"


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


def title_page(profile: str, group: Group | None = None):
    """The title page block: group, students, the runs' profile and data sources, and the git commit."""
    import pandas as pd
    from IPython.display import Markdown

    from hw2.experiments import EXPERIMENTS

    experiments = {e.name: e.title for e in EXPERIMENTS}
    group = group or load_authors()
    lines = []
    if group.example:
        lines.append("**This is the EXAMPLE group shipped with hw2: put your group in report/authors.yml "
                     "(and remove `example: true`).**\n")
    lines.append(f"**Group {group.number}**\n")
    students = pd.DataFrame([{"Student": s.name, "Number": s.number, "E-mail": s.email} for s in group.students])
    lines.append(students.to_markdown(index=False, disable_numparse=True) + "\n")
    rows = []
    for experiment, title in experiments.items():
        runs = store.runs_for_report(experiment, profile)
        sources = sorted({r.summary["data_source"] for r in runs})
        rows.append(f"- {title}: {len(runs)} run(s) of profile *{profile}*; "
                    f"{'; '.join(describe_source(s) for s in sources) if sources else 'no runs yet'}.")
    shown = [r for e in experiments for r in store.runs_for_report(e, profile)]
    standin = any(is_standin(r.summary["data_source"]) for r in shown)
    stale = [r for r in shown if r.stale]
    lines.append("**Runs shown in this report**\n")
    lines.extend(rows)
    lines.append("")
    if standin:
        lines.append("**Stand-in data.** Some results below come from generated stand-in data (no network on the "
                     "machine that ran them), not from the real data sets; their captions say so.\n")
    if stale:
        lines.append(f"**Made with earlier code.** {len(stale)} of the runs shown were made by code that has "
                     f"changed since (HW2_STALE=use): "
                     + "; ".join(f"{r.short_key} ({', '.join(r.changed_files())})" for r in stale)
                     + ". Their captions say so.\n")
    lines.append(f"Code: git commit `{store.git_commit() or 'unknown'}`.\n")
    lines.append('```{=typst}\n#metadata("title page") <titlepage-end>\n```\n')
    return Markdown("\n".join(lines))


# --- Question 2: the CNN runs -------------------------------------------------------------------------------

Q2_EXPERIMENT = "q2_cnn"
VARIANTS = {False: "max-pooling (Q2.1)", True: "no max-pooling (Q2.2)"}
# The statement's sweep: lr in {0.1, 0.01, 0.001} for both variants (every profile runs all six).
Q2_SWEEP = [{"lr": lr, "no_maxpool": nm} for nm in (False, True) for lr in (0.1, 0.01, 0.001)]


@dataclass
class Q2Config:
    """One (variant, learning rate) cell of the sweep, over its seeds."""

    no_maxpool: bool
    lr: float
    runs: list[LoadedRun]

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.runs:
            v = r.summary.get(key)
            out.append(float(v) if isinstance(v, (int, float)) or (isinstance(v, str) and v.lower() == "nan")
                       else float("nan"))
        return out

    def mean(self, key: str) -> float:
        vals = [v for v in self.values(key) if v == v]
        return statistics.mean(vals) if vals else float("nan")

    @property
    def diverged(self) -> bool:
        return any(r.summary.get("status") == "diverged" for r in self.runs)

    @property
    def variant(self) -> str:
        return VARIANTS[self.no_maxpool]


class Q2Results:
    """All complete Q2 runs of a profile, grouped by (variant, lr); checks the statement's sweep is there."""

    def __init__(self, profile: str):
        self.profile = profile
        self.runs = require_runs(Q2_EXPERIMENT, profile)
        groups: dict[tuple, list[LoadedRun]] = {}
        for run in self.runs:
            c = run.config["config"]
            groups.setdefault((bool(c["no_maxpool"]), float(c["lr"])), []).append(run)
        missing = [p for p in Q2_SWEEP if (bool(p["no_maxpool"]), float(p["lr"])) not in groups]
        if missing:
            which = ", ".join(f"lr={p['lr']} no_maxpool={p['no_maxpool']}" for p in missing)
            raise RunError(f"Q2 runs missing for profile {profile!r} ({which}): run `PROFILE={profile} make runs-q2`")
        self.configs = [Q2Config(nm, lr, sorted(rs, key=lambda r: seed_of(r) or 0))
                        for (nm, lr), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1]))]

    def variant(self, no_maxpool: bool) -> list[Q2Config]:
        return [c for c in self.configs if c.no_maxpool == no_maxpool]

    def best(self, no_maxpool: bool) -> Q2Config:
        """The learning rate chosen on the validation data: the highest final validation accuracy."""
        candidates = [c for c in self.variant(no_maxpool)
                      if c.mean("final_valid_acc") == c.mean("final_valid_acc")]  # not NaN (diverged)
        return max(candidates, key=lambda c: c.mean("final_valid_acc"))

    def at(self, no_maxpool: bool, lr: float) -> Q2Config:
        return next(c for c in self.variant(no_maxpool) if c.lr == lr)

    @property
    def seeds(self) -> int:
        return max(len(c.runs) for c in self.configs)

    @property
    def epochs(self) -> int:
        return int(self.configs[0].runs[0].config["config"]["epochs"])

    def pooling_note(self) -> str:
        """Whether these runs show pooling's expected advantage at the chosen learning rate, and if not, say so."""
        pooled, strided = self.best(False), self.at(True, self.best(False).lr)
        better = [pooled.mean(k) > strided.mean(k) for k in ("final_valid_acc", "test_acc")]
        if all(better):
            return "as expected, pooling is ahead on both"
        run = pooled.runs[0]
        return (f"so the expected advantage of pooling does not show on every split of these runs (profile "
                f"{self.profile}, {int(run.summary['n_train']):,} training images, {self.epochs} epochs, "
                f"{self.seeds} seed{'s' if self.seeds > 1 else ''}), and the gap should not be read as significant")

    def config_value(self, key: str):
        return self.configs[0].runs[0].config["config"][key]

    def table(self, label: str = "tbl-q2-runs"):
        import pandas as pd

        rows = []
        best = {nm: self.best(nm) for nm in (False, True)}
        for c in self.configs:
            mark = " (best)" if c is best[c.no_maxpool] else ""
            status = f"diverged at epoch {c.runs[0].summary.get('diverged_epoch')}" if c.diverged else ""
            rows.append({
                "Variant": "max-pool" if not c.no_maxpool else "no pool",
                "lr": f"**{c.lr:g}{mark}**" if mark else f"{c.lr:g}",
                "Train loss": mean_std(c.values("final_train_loss")) if not c.diverged else status,
                "Val. acc.": mean_std(c.values("final_valid_acc")),
                "Test acc.": mean_std(c.values("test_acc")),
                "Test acc. (all)": mean_std(c.values("test_acc_full")),
                "Params": f"{int(c.runs[0].summary['n_params']):,}",
            })
        summary = self.configs[0].runs[0].summary
        text = (f"All Q2 runs after {self.epochs} epochs (SGD, batch {self.config_value('batch_size')}): final "
                f"training loss (the skeleton's running mean over all batches so far), final validation accuracy, "
                f"test accuracy on the skeleton's {summary['n_test']:,}-image subsample and on all "
                f"{summary['n_test_full']:,} test images, and trainable parameters, for the network with max "
                f"pooling (Q2.1) and without (Q2.2). Bold: the learning rate chosen on validation accuracy for "
                f"each variant." + (f" Mean ± standard deviation over {self.seeds} seeds." if self.seeds > 1 else ""))
        return table(pd.DataFrame(rows), label, text, self.runs)

    def curves(self, column: str, ylabel: str, label: str, text: str, also: str | None = None):
        """`column` of history.csv against epoch for the best configuration of each variant."""
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(figsize=(5.6, 3.2), layout="constrained")
        shown = []
        for nm, colour in ((False, "tab:blue"), (True, "tab:orange")):
            c = self.best(nm)
            shown += c.runs
            for col, style, suffix in ((column, "-", ""), (also, "--", " (per-epoch mean)")):
                if col is None:
                    continue
                curves = np.array([r.history[col].to_numpy(dtype=float) for r in c.runs])
                epochs = c.runs[0].history["epoch"].to_numpy()
                mean = np.nanmean(curves, axis=0)
                ax.plot(epochs, mean, style, color=colour, marker="o" if style == "-" else None, markersize=3,
                        label=f"{c.variant}, lr {c.lr:g}{suffix}")
                if len(c.runs) > 1:
                    std = np.nanstd(curves, axis=0, ddof=1)
                    ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        return figure(fig, label, text, shown)


def _count_cnn_params() -> dict:
    """Trainable parameters of both variants, per layer, and the features entering fc1, from the model code."""
    from hw2.models.cnn import CNN, count_trainable_params

    out = {}
    for no_maxpool in (False, True):
        model = CNN(0.7, no_maxpool=no_maxpool)
        layers = {name: count_trainable_params(m) for name, m in model.named_children()}
        out[no_maxpool] = {"total": count_trainable_params(model), "features": model.fc1.in_features,
                           "layers": {name: n for name, n in layers.items() if n}}
    return out


def q2_params() -> dict:
    """{no_maxpool: {"total", "features", "layers"}} counted on `hw2.models.cnn` (cached per module version;
    importing torch alone takes seconds)."""
    return cached("q2-params", ["hw2.models.cnn"], _count_cnn_params)


# --- Question 1: the attention benchmark --------------------------------------------------------------------

Q1_EXPERIMENT = "q1_attention"
METHOD_NAMES = {"softmax_naive": "softmax, naive", "softmax_sdpa": "softmax, fused SDPA",
                "taylor_linear": "Taylor linear", "taylor_causal": "Taylor linear, causal"}
METHOD_STYLE = {"softmax_naive": ("tab:red", "o"), "softmax_sdpa": ("tab:orange", "s"),
                "taylor_linear": ("tab:blue", "^"), "taylor_causal": ("tab:cyan", "v")}


def display_math(latex: str, label: str | None = None):
    """A display equation as Markdown (numbered and referable as @eq-... when labelled)."""
    from IPython.display import Markdown

    return Markdown(f"$$\n{tex_for_pandoc(latex)}\n$$" + (f" {{#{label}}}" if label else "") + "\n")


def tex_for_pandoc(latex: str) -> str:
    """TeX that pandoc's math converter (used by Quarto and hw2 for Typst) reads: sized delimiters become
    \\left/\\right, which it knows."""
    for sized, plain in (("\\Bigl", "\\left"), ("\\Bigr", "\\right"), ("\\bigl", "\\left"), ("\\bigr", "\\right")):
        latex = latex.replace(sized, plain)
    return latex


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


def q1_answers() -> dict:
    """`hw2.attention.derivations.answers()`: every formula of Question 1 (cached per module version)."""
    import sympy

    def answers():
        from hw2.attention import derivations

        return derivations.answers()

    return cached("q1-derivations", ["hw2.attention.derivations"], answers, (sympy.__version__,))


class Q1Results:
    """The benchmark run of a profile: timings, fitted exponents, crossovers and the error study."""

    def __init__(self, profile: str):
        runs = require_runs(Q1_EXPERIMENT, profile)
        # One run per device: prefer the GPU run where there is one (the full protocol), else the CPU run.
        runs.sort(key=lambda r: (r.summary.get("device") != "cuda", r.name))
        self.run = runs[0]
        self.summary = self.run.summary
        self.history = self.run.history
        import pandas as pd

        self.errors = pd.read_csv(self.run.file("approx_error.csv"))

    @property
    def dims(self) -> list[int]:
        return [int(d) for d in self.summary["dims"]]

    def exponent(self, method: str, dim: int, quantity: str = "time") -> float:
        return self.summary["exponents"][method][str(dim)][quantity]["exponent"]

    def scaling_figure(self, quantity: str, label: str, text: str):
        """Time or peak memory against L, log-log, one panel per D, with fitted exponents in the legend."""
        import matplotlib.pyplot as plt

        column, ylabel = {"time": ("time_s", "Time per call (s)"),
                          "memory": ("peak_memory_bytes", "Peak memory (bytes)")}[quantity]
        fig, axes = plt.subplots(1, len(self.dims), figsize=(3.1 * len(self.dims), 3.0), squeeze=False,
                                 layout="constrained")
        for ax, dim in zip(axes[0], self.dims):
            for method in self.summary["methods"]:
                rows = self.history[(self.history["method"] == method) & (self.history["dim"] == dim)]
                rows = rows.sort_values("length")
                if rows.empty:
                    continue
                colour, marker = METHOD_STYLE.get(method, ("black", "."))
                b = self.exponent(method, dim, quantity)
                ax.loglog(rows["length"], rows[column].clip(lower=1e-12), marker=marker, color=colour,
                          markersize=3.5, label=f"{METHOD_NAMES.get(method, method)} ($L^{{{b:.2f}}}$)"
                          if b is not None else METHOD_NAMES.get(method, method))
            lengths = sorted(self.history["length"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(lengths[::-(-len(lengths) // 4)])  # at most four labels
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x / 1024:g}k" if x >= 1024 else f"{x:g}"))
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_title(f"D = {dim}", fontsize=9)
            ax.set_xlabel("Sequence length L")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6.5, frameon=False)
        return figure(fig, label, text, [self.run], width="100%")

    def error_figure(self, label: str, text: str):
        """Median relative error of Taylor attention against softmax attention, by the std of q^T k."""
        import matplotlib.pyplot as plt

        kinds = list(self.summary["error_study"]["kinds"])
        fig, axes = plt.subplots(1, len(kinds), figsize=(2.2 * len(kinds) + 0.6, 2.8), squeeze=False,
                                 sharey=True, layout="constrained")
        for ax, kind in zip(axes[0], kinds):
            for order in self.summary["error_study"]["orders"]:
                rows = self.errors[(self.errors["kind"] == kind) & (self.errors["order"] == order)]
                med = rows.groupby("target_score_std")["rel_error"].median()
                ax.loglog(med.index, med.values, marker="o", markersize=3, label=f"K = {order}")
            ax.set_title(f"{kind} inputs", fontsize=9)
            ax.set_xlabel("Std of q⊤k")
            ax.set_ylabel("Median relative error" if ax is axes[0][0] else " ")
            scales = self.summary["error_study"]["scales"]
            ax.set_xticks(scales[::-(-len(scales) // 4)])  # at most four labels
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.grid(alpha=0.3, which="both")
        axes[0][0].legend(fontsize=7, frameon=False)
        return figure(fig, label, text, [self.run], width="100%")

    def exponent_table(self, label: str, text: str):
        import pandas as pd

        rows = []
        for method in self.summary["methods"]:
            for dim in self.dims:
                rows.append({"Method": METHOD_NAMES.get(method, method), "D": str(dim),
                             "Time exponent": fmt(self.exponent(method, dim, "time"), 2),
                             "Memory exponent": fmt(self.exponent(method, dim, "memory"), 2),
                             "Longest L": f"{self.summary['max_length'][method][str(dim)]:,}"})
        return table(pd.DataFrame(rows), label, text, [self.run])

    def crossover_table(self, label: str, text: str):
        import pandas as pd

        kinds = {"measured": "measured", "below_range": "below the shortest L", "extrapolated": "extrapolated",
                 "none": "none in range"}
        rows = []
        for method, per_dim in self.summary["crossovers"].items():
            for dim, c in per_dim.items():
                rows.append({"Against": METHOD_NAMES.get(method, method), "D": dim,
                             "M": f"{self.summary['feature_dims'][dim]:,}",
                             "Flop-count L*": f"{c['L_star']:,.0f}",
                             "Measured crossover": f"{c['length']:,.0f}" if c["length"] is not None else "–",
                             "How": kinds.get(c["kind"], c["kind"]),
                             "Speed-up at longest L": f"{c['ratio_at_longest']:.2f}×"})
        return table(pd.DataFrame(rows), label, text, [self.run])
