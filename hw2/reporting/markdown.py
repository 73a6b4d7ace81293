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
# What makes a line a list item where it starts one: `- `, `+ `, `1. `, `1) `.
LIST_MARKER_RE = re.compile(r"^(\s*)([-+]|\d+[.)])(?=\s|$)", re.M)


def markdown_text(text: str, keep: str = "") -> str:
    """Plain text escaped for Pandoc Markdown (a table cell included), but for the characters in `keep`: shown as
    written, even where it starts a paragraph."""
    escaped = "".join("\\" + c if c in MARKDOWN_SPECIAL and c not in keep else c for c in text)
    return LIST_MARKER_RE.sub(lambda m: m[1] + m[2][:-1] + "\\" + m[2][-1], escaped)


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
