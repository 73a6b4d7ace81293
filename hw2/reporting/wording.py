"""The one place where Python writes the report's words.

The .qmd files hold the report's sentences, and every other module under hw2/ returns values (numbers, booleans,
tables, figures) for them, so that what the report says can be read and edited in the documents. What stays here
is wording that has to be generated because its shape depends on the data and more than one place uses it:

- the note that ends every caption, citing the runs it comes from ("Runs R2–R7 (@tbl-provenance), on generated
  stand-in data.") and stamping those made with earlier code, since tables and figures are built in Python;
- the same stamp in a run's row of the provenance appendix;
- why a run is left out of an average: the configuration fields, the data or the code that differ;
- a run's departures from Question 3's protocol, field by field;
- a count with its noun ("2 threads");
- the statement's contribution paragraph, one sentence per student from `report/authors.yml`.

A table's headers and cells ("diverged at epoch 2") and a figure's axes and legends are part of the table or
figure a module returns, and stay where it is built.
"""
from __future__ import annotations

from typing import Iterable

from hw2.engine.store import LoadedRun
from hw2.reporting.runs import PROVENANCE_LABEL, LeftOut, run_refs, source_kind

# How the report names Question 3's protocol fields (`protocol_deviations` in its summary) and corpora.
DEVIATION_WORDS = {"corpus": "corpus", "n_clips": "clips in the corpus", "audio_frames": "frames per clip",
                   "batch_size": "training batch size", "epochs": "epochs", "n_encoder_layers": "encoder blocks",
                   "lr": "learning rate", "weight_decay": "weight decay", "label_smoothing": "label smoothing",
                   "eval_batch_size": "evaluation batch size", "bf16": "precision",
                   "max_steps": "optimizer steps per epoch"}
CORPUS_WORDS = {"ljspeech": "LJ Speech 1.1", "short": "the short-sentence stand-in"}


def plural(n: int, noun: str) -> str:
    """'1 thread', '2 threads'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def caption_note(runs: Iterable[LoadedRun]) -> str:
    """'Runs R2–R7 (@tbl-provenance), on generated stand-in data.': where in the provenance appendix the runs'
    full record is; stand-in or custom data and runs made with earlier code are said here too. Plain text:
    `markdown.caption` escapes it."""
    runs = list(runs)
    note = f"{'Run' if len(runs) == 1 else 'Runs'} {run_refs(runs)} (@{PROVENANCE_LABEL})"
    kinds = {source_kind(r.summary["data_source"]) for r in runs}
    if "standin" in kinds:
        note += ", on generated stand-in data"
    if "custom" in kinds:
        note += ", on custom data (neither the published data set nor hw2's stand-in)"
    stale = [r for r in runs if r.stale]
    if stale:
        note += (f". Made with earlier code ({run_refs(stale)}: "
                 f"{', '.join(sorted({f for r in stale for f in r.changed_files()}))} changed since)")
    return note + "."


def earlier_code(run: LoadedRun) -> str:
    """The provenance appendix's stamp on a run made by code that has changed since."""
    return f"made with earlier code: {', '.join(run.changed_files())} changed since"


def left_out(item: LeftOut) -> str:
    """'dfa558 (batch_size 16 where the runs shown have 8)', 'dfa558 (data custom-1234 where the runs shown used
    standin-…)', 'dfa558 (made by other code than the runs shown)'."""
    if item.fields:
        reason = (", ".join(f"{k} {mine}" for k, (mine, _) in item.fields.items()) + " where the runs shown have "
                  + ", ".join(f"{theirs}" for _, theirs in item.fields.values()))
    elif item.data:
        reason = f"data {item.data[0]} where the runs shown used {item.data[1]}"
    else:
        reason = "made by other code than the runs shown"
    return f"{item.run.short_key} ({reason})"


def deviations(changed: dict[str, dict]) -> str:
    """'corpus the short-sentence stand-in (protocol: LJ Speech 1.1); training batch size 32 (protocol: 64)': the
    fields a Q3 run changed from the protocol, {field: {"value", "protocol"}} as its summary records them."""
    return "; ".join(f"{DEVIATION_WORDS.get(k, k)} {_value(v['value'], k)} (protocol: {_value(v['protocol'], k)})"
                     for k, v in changed.items())


def _value(value, field: str = "") -> str:
    if field == "bf16":
        return "bf16 autocast" if value else "fp32"
    if isinstance(value, str):
        return CORPUS_WORDS.get(value, value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def contribution_paragraph(group) -> str:
    """The statement's paragraph on who did what (`group`: `authors.Group`): one sentence per student, "Name
    (number) did this." (plain text: the document escapes it, so that every field is shown as written)."""
    sentences = []
    for s in group.students:
        what = s.contribution.rstrip(".")  # the end of a sentence
        sentences.append(f"{s.name} ({s.number}) {what[:1].lower() + what[1:]}.")
    return " ".join(sentences)
