"""Markdown for the report's cells: plain text escaped for Pandoc, and tables and figures as captioned, labelled
floats (`@tbl-...`, `@fig-...`) whose captions end with the runs they come from.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from hw2.engine.store import LoadedRun
from hw2.reporting.wording import caption_note

FIGURE_DIR = Path("_figures")
# Characters Pandoc reads as markup anywhere in a line (`&` starts an entity: `&lt;`); Pandoc then writes each
# as text in its Typst output (`@fig-x` and `#set` included), so escaping for Markdown suffices for Typst too.
MARKDOWN_SPECIAL = set("\\`*_[]{}<>#$|@~^&")
# A table cell never wraps inside a number or a short phrase: a cell this short keeps all its spaces, and a
# longer one the spaces that bind a number to its neighbours ("≈ 0.72 s > 0.5 s", "0.7215 ± 0.0040").
SHORT_CELL = 26
NBSP = "\u00a0"
_BINDS = "≈<>±×=–"
_UNITS = r"(?:s|ms|min|h|GiB|MiB|KiB|GB|MB|%)"
BINDING_SPACE_RE = re.compile(rf"(?<=[\d{_BINDS}]) (?=\\?[\d{_BINDS}]|{_UNITS}\b)|(?<=\S) (?=\\?[{_BINDS}])")
# What makes a line a list item where it starts one: `- `, `+ `, `1. `, `1) `.
LIST_MARKER_RE = re.compile(r"^(\s*)([-+]|\d+[.)])(?=\s|$)", re.M)


def markdown_text(text: str, keep: str = "") -> str:
    """Plain text escaped for Pandoc Markdown (a table cell included), but for the characters in `keep`: shown as
    written, even where it starts a paragraph."""
    escaped = "".join("\\" + c if c in MARKDOWN_SPECIAL and c not in keep else c for c in text)
    return LIST_MARKER_RE.sub(lambda m: m[1] + m[2][:-1] + "\\" + m[2][-1], escaped)


# About how many characters of a table cell's 9.5 pt type fit on one line of the text width, cell padding left out.
TABLE_CHARS = 92


def column_widths(columns: list[list[str]]) -> list[int]:
    """Relative column widths for a pipe table (the dashes of its separator line, which Pandoc turns into the
    widths of the columns when the table is wider than a line): every column at least as wide as its longest
    unbreakable piece (a word, or a number bound to its neighbours), and the rest of the line shared out in
    proportion to how much more each column's longest cell needs."""
    def piece(text: str) -> int:
        return max((len(part) for part in str(text).split(" ")), default=0)

    least = [max(3, *(piece(c) for c in column)) for column in columns]
    full = [max(3, *(len(str(c)) for c in column)) for column in columns]
    room = TABLE_CHARS - 2 * len(columns) - sum(least)
    want = [f - m for f, m in zip(full, least)]
    if sum(full) <= TABLE_CHARS - 2 * len(columns) or room <= 0 or not sum(want):
        return full if sum(full) <= TABLE_CHARS - 2 * len(columns) else least
    return [m + max(0, round(room * w / sum(want))) for m, w in zip(least, want)]


def pipe_table(df, align: list[str]) -> str:
    """`df` as a Pandoc pipe table, its separator sized by `column_widths`."""
    header = [str(c) for c in df.columns]
    rows = [[str(v) for v in row] for row in df.itertuples(index=False)]
    widths = column_widths([[h] + [r[i] for r in rows] for i, h in enumerate(header)])
    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "right" else (":" + "-" * (w + 1))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows])


def unbroken(cell: str) -> str:
    """A table cell with non-breaking spaces where a line break would split a number from its unit or
    neighbour, and everywhere in a short cell."""
    cell = str(cell)
    if len(cell) <= SHORT_CELL:
        return cell.replace(" ", NBSP)
    return BINDING_SPACE_RE.sub(NBSP, cell)


def caption(text: str, runs: Iterable[LoadedRun] | str) -> str:
    """The caption text followed by the runs it comes from (or `runs` itself, a note for content computed
    while rendering)."""
    return f"{text} {runs if isinstance(runs, str) else markdown_text(caption_note(runs), keep='@')}"


def table(df, label: str, text: str, runs: Iterable[LoadedRun] | str):
    """A captioned, labelled Markdown table (`@tbl-...` refers to it)."""
    from IPython.display import Markdown

    if not label.startswith("tbl-"):
        raise ValueError(f"table labels start with tbl- (got {label!r})")
    numeric = re.compile(r"^[\s*]*([-+]?[\d.,]+|n/a)")
    align = ["right" if all(numeric.match(str(v)) for v in df[c]) else "left" for c in df.columns]
    body = pipe_table(df.map(unbroken), align)
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
