"""The report rendered from smoke-profile run folders and read back with pdftotext.

Q1's run is the real smoke benchmark; Q2's and Q3's folders are written through the store API with
generated values (training them is other tests' business): what is checked here is that the PDF answers
every sub-question, cites in every caption the runs of the provenance appendix, which lists every run,
carries the contribution statement, prints the numbers of the run folders, keeps the contents on the title
page without large blank gaps, and that editing prose re-runs nothing.
"""
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import runfolders
from hw2.engine import store
from hw2.engine.render import render
from hw2.reporting.format import fmt
from hw2.reporting.runs import numbered_runs

ROOT = Path(__file__).resolve().parent.parent
SUBQUESTIONS = ["Q1.1", "Q1.2", "Q1.3", "Q1.4", "Q2.1", "Q2.2", "Q2.3", "Q3.1", "Q3.2", "Q3.3", "Q3.4"]
AUTHORS = """group: 42
students:
  - {name: Rita Teste, number: 99001, email: rita@example.org, contribution: "wrote the derivations of Question 1"}
  - {name: Zeca Prova, number: 99002, email: zeca@example.org, contribution: "trained the networks of Questions 2 and 3"}
"""
pytestmark = pytest.mark.slow


def pdf_text(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.replace("\u2212", "-").split())  # typst prints minus signs as U+2212


def page_texts(pdf: Path) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return [" ".join(page.replace("\u2212", "-").split()) for page in out.stdout.split("\f")[:-1]]


def document_typ(project: Path) -> str:
    """The Typst source hw2's renderer wrote, after the template."""
    return (project / "_output" / "report" / "hw2-report.typ").read_text().split("#show: doc => article(")[1]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, smoke_runs):
    tmp = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    for key, value in smoke_runs.env.items():
        mp.setenv(key, value)
    mp.setenv("PROFILE", "smoke")
    # The session's real smoke runs of every question, made by the runner as `PROFILE=smoke make report` does.
    runs = {q: store.list_runs(e, "smoke") for q, e in (("q1", "q1_attention"), ("q2", "q2_cnn"), ("q3", "q3_asr"))}
    assert [len(runs[q]) for q in ("q1", "q2", "q3")] == [1, 6, 2]
    project = tmp / "project"
    project.mkdir()
    shutil.copy(ROOT / "_quarto.yml", project)
    # the whole package: its template is package data, and a partial copy would shadow the installed package
    # when the pre-render step starts `python -m hw2` in the project
    shutil.copytree(ROOT / "hw2", project / "hw2", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "report", project / "report",
                    ignore=shutil.ignore_patterns("_figures", "*_files", "*.typ"))
    (project / "report" / "authors.yml").write_text(AUTHORS)
    config = (project / "_quarto.yml").read_text()
    (project / "_quarto.yml").write_text(config.replace("    toc: true\n", "    toc: true\n    keep-typ: true\n"))
    (pdf,) = render(project, log=lambda *a: None)
    yield project, runs, pdf
    mp.undo()


def test_every_subquestion_has_its_section(rendered):
    _, _, pdf = rendered
    text = pdf_text(pdf)
    for q in SUBQUESTIONS:
        assert re.search(rf"\d+\.\d+ {re.escape(q)}:", text), f"no numbered section for {q}"
    assert "Contributions of the group members" in text


def test_the_answers_come_first_within_nine_pages_and_the_whole_within_eighteen(rendered):
    """The main text (title page, contents, the answers and the contribution statement) ends before the first
    appendix, at most nine pages in; everything else is in appendices, at most eighteen pages in all."""
    _, _, pdf = rendered
    pages = page_texts(pdf)
    first_appendix = next(i for i, page in enumerate(pages) if i and "A Question 1: the attention benchmark" in page)
    assert first_appendix <= 9 and len(pages) <= 18, (first_appendix, len(pages))
    main = " ".join(pages[:first_appendix + 1]).split("A Question 1: the attention benchmark")[-2]
    for q in SUBQUESTIONS:
        assert re.search(rf"\d+\.\d+ {re.escape(q)}:", main), f"{q} is not in the main text"
    assert "Contributions of the group members" in main
    for later in ("B Question 2: further analyses", "C Question 3: further analyses", "D Data, runs and provenance"):
        assert later in " ".join(pages[first_appendix:])


def test_every_table_and_figure_cites_its_runs_in_the_provenance_appendix(rendered):
    project, runs, pdf = rendered
    text = pdf_text(pdf)
    typ = document_typ(project)
    n_figures = typ.count("#figure(image(")
    n_tables = typ.count("kind: table")
    assert n_figures >= 7 and n_tables >= 5
    for k in range(1, n_figures + 1):
        assert f"Figure {k}:" in text
    for k in range(1, n_tables + 1):
        assert f"Table {k}:" in text
    captions = re.findall(r"caption: \[(.*?)\]\s*(?:,\s*kind: table\s*)?\)\s*<", typ, re.S)
    assert len(captions) == n_figures + n_tables
    (appendix,) = re.findall(r"Table (\d+): Every run shown in this report", text)
    keys = [r.short_key for rs in runs.values() for r in rs]
    # every caption but the appendix's cites runs, or says it has none (derived with SymPy, an illustration)
    citing = [c for c in captions if "no run" not in c and "Every run shown" not in c]
    assert len(citing) >= n_figures
    for caption in citing:  # short run numbers and a cross-reference to the appendix, no keys or seeds
        assert re.search(r"Runs? R\d+", caption) and "#ref(<tbl-provenance>" in caption, caption
        assert "seed" not in caption and not any(key in caption for key in keys), caption
    assert len(re.findall(rf"\(Table {appendix}\)", text)) >= len(citing)
    assert "on generated stand-in data" in text and "on generated stand-ins for OCTMNIST and LJ Speech" in text


def test_the_provenance_appendix_lists_every_run_shown_from_its_folder(rendered):
    project, runs, pdf = rendered
    shown = numbered_runs("smoke")
    assert sorted(r.path for r in shown) == sorted(r.path for rs in runs.values() for r in rs)
    appendix = document_typ(project).split("Data, runs and provenance")[-1].replace("\\", "")
    for n, run in enumerate(shown, start=1):
        row = appendix.split(f"[R{n}]")[1].split(f"[R{n + 1}]")[0]
        for value in (run.name, run.summary["data_source"], run.config["code"][:12],
                      run.env["git_commit"] or "not recorded",
                      run.env["python"], run.env["torch"], f"{run.env['wall_time_s']:.1f} s"):
            assert value in row, (n, value)
    assert "Data, runs and provenance" in pdf_text(pdf)


def test_the_title_page_holds_the_contents_and_no_page_leaves_a_large_gap(rendered):
    """The title page holds the group, one sentence on the data and the contents, and Question 1 starts there; no
    page but the last leaves a blank over 15 % of its text area."""
    import numpy as np
    from PIL import Image

    _, _, pdf = rendered
    first = page_texts(pdf)[0]
    assert "Group 42" in first and "Contents" in first and "Data, runs and provenance" in first
    assert "Every measured number, table and figure comes from runs of profile smoke" in first
    assert first.count("Question 1: self-attention") == 2  # in the contents, and its chapter starts here
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["pdftoppm", "-gray", "-r", "30", str(pdf), f"{folder}/page"], check=True)
        for image in sorted(Path(folder).glob("page-*.pgm"))[:-1]:  # the last page ends where the text does
            pixels = np.asarray(Image.open(image))
            height = pixels.shape[0]
            inked = (pixels[height * 25 // 297: height * 272 // 297] < 200).any(axis=1)  # the text area of A4
            gap = longest = 0
            for row in inked:
                gap = 0 if row else gap + 1
                longest = max(longest, gap)
            assert longest < 0.15 * len(inked), f"{image.name}: a blank gap of {longest / len(inked):.0%} of the page"


def test_question_3_floats_follow_their_first_citation_within_its_section(rendered):
    project, _, pdf = rendered
    pages, typ = page_texts(pdf), document_typ(project)
    floats = re.findall(r"caption: \[(.*?)\]\s*(?:,\s*kind: table\s*)?\)\s*<((fig|tbl)-[\w-]+)>", typ, re.S)
    counts = {"fig": 0, "tbl": 0}
    for caption, label, prefix in floats:  # figures and tables are numbered apart, in the order of the document
        counts[prefix] += 1
        kind, k = "Figure" if prefix == "fig" else "Table", counts[prefix]
        if not label.startswith(("fig-q3", "tbl-q3")):
            continue  # Q1's and Q2's chapters place their cells where their authors put them
        # the cell comes right after the section's paragraph that first cites it, before the next heading
        cited_at, placed_at = typ.index(f"#ref(<{label}>"), typ.index(f"<{label}>\n")
        assert cited_at < placed_at and not re.search(r"^=+ ", typ[cited_at:placed_at], re.M), label
        # and Typst floats it to that page or one of the next two (three cited together fill more than a page)
        start = " ".join(caption.replace("\\", "").split()[:2])
        (placed,) = [i for i, page in enumerate(pages) if f"{kind} {k}: {start}" in page]
        cited = [i for i, page in enumerate(pages) if re.search(rf"{kind} {k}(?!\d|: {re.escape(start)})", page)]
        assert 0 <= placed - cited[0] <= 2, f"{label} ({kind} {k}) on page {placed + 1}, first cited on {cited[0] + 1}"


def test_title_page_and_contribution_statement(rendered):
    _, _, pdf = rendered
    text = pdf_text(pdf)
    assert "Group 42" in text and "Rita Teste 99001 rita@example.org" in text
    assert "Rita Teste (99001) wrote the derivations of Question 1." in text
    assert "Zeca Prova (99002) trained the networks of Questions 2 and 3." in text
    # the document talks about the homework, not about the tool that made it
    for tool in ("make submission", "git commit", "run store", "computed from the code while rendering", "hw2"):
        assert tool not in text, tool


def test_the_report_states_its_checks_as_ours(rendered):
    _, _, pdf = rendered
    text = pdf_text(pdf)
    assert "Every measured number, table and figure comes from runs of profile smoke" in text
    assert re.search(r"We checked what the fixed sizes cut off: .{0,120}which cropped \d+ of our clips, "
                     r".{0,100}which truncated \d+ of ours\.", text)
    for meta in ("HW2_STALE", "Runs shown in this report", "What these runs change", "see above)", "in these runs"):
        assert meta not in text, meta


def test_numbers_printed_are_those_of_the_run_folders(rendered):
    """Every number taken from a run folder is printed where it belongs: Q2's in the table row that cites its
    run, with that run's pooling and learning rate; Q1's in the row of its method and head size; Q3's in its
    decoder's column and in the sentence of its decoder's sub-question. Checked in the Typst tables the PDF is
    typeset from, cell by cell, and in the PDF, where each row must read as one line: numbers swapped between
    runs, rows or columns fail, as would a number printed elsewhere only."""
    from hw2.q1.report import METHOD_NAMES
    from hw2.reporting.format import mean_std

    project, runs, pdf = rendered
    typ = document_typ(project)
    layout = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    lines = [" ".join(line.replace("\u2212", "-").split()) for line in layout.stdout.splitlines()]

    def plain(markup: str) -> str:
        """A cell's text as the PDF shows it: no emphasis markup or escapes, "--" as an en dash, a non-breaking
        space as a space."""
        markup = re.sub(r"#(?:strong|emph)\[(.*?)\];?", r"\1", markup)
        markup = re.sub(r"(?<!\\)~", " ", markup).replace("\u00a0", " ")
        return re.sub(r"\\(.)", r"\1", markup).replace("--", "\u2013").strip()

    def cells(source: str) -> list[str]:
        """The top-level [...] cells of one line of a Typst table."""
        found, depth, current, i = [], 0, "", 0
        while i < len(source):
            ch = source[i]
            if ch == "\\" and depth:  # an escaped character, never a bracket of the table
                current += source[i:i + 2]
                i += 2
                continue
            if ch == "[":
                depth += 1
                if depth == 1:
                    current = ""
                    i += 1
                    continue
            elif ch == "]":
                depth -= 1
                if depth == 0:
                    found.append(plain(current))
            if depth:
                current += ch
            i += 1
        return found

    def table(label: str) -> list[dict[str, str]]:
        """The rows of the Typst table labelled <label>, as {header: cell}."""
        source = typ[:typ.index(f"\n<{label}>")]
        source = source[source.rindex("#table("):]
        header = cells(re.search(r"table\.header\((.*)\),\n", source).group(1))
        body = source.split("table.hline(),\n", 1)[1].split("\n  )]", 1)[0]
        rows = [dict(zip(header, cells(line), strict=True)) for line in body.splitlines() if line.strip()]
        assert rows, label
        return rows

    def printed_as_one_line(row: dict[str, str], columns: list[str]) -> None:
        """The row's cells in `columns` read in order on one line of the PDF (columns of long text may wrap)."""
        shown = " ".join(row[c] for c in columns if row[c])
        assert any(shown in line for line in lines), (shown, "not one line of the PDF")

    number_of = {r.path: n for n, r in enumerate(numbered_runs("smoke"), start=1)}
    run_of = {n: r for r, n in ((run, number_of[run.path]) for rs in runs.values() for run in rs)}

    def cited(refs: str) -> list:
        """The runs of a Run cell: "R2", "R2, R3", "R2\u2013R4"."""
        numbers = []
        for part in refs.split(", "):
            first, _, last = part.partition("\u2013")
            numbers += range(int(first[1:]), int((last or first)[1:]) + 1)
        return [run_of[n] for n in numbers]

    # Q2: one row per configuration, citing its runs; their numbers are in that row and in no other.
    shown = []
    columns = {"Train loss": "final_train_loss", "Val. acc.": "final_valid_acc", "Test acc.": "test_acc",
               "Test acc. (all)": "test_acc_full"}
    for row in table("tbl-q2-runs"):
        row_runs = cited(row["Run"])
        shown += [r.path for r in row_runs]
        ((lr, no_maxpool),) = {(r.config["config"]["lr"], r.config["config"]["no_maxpool"]) for r in row_runs}
        assert row["Pooling"] == ("none" if no_maxpool else "max") and re.fullmatch(rf"{lr:g}( \(best\))?", row["lr"])
        assert row["Params"] == f"{row_runs[0].summary['n_params']:,}"
        diverged = [r.summary["diverged_epoch"] for r in row_runs if r.summary.get("diverged_epoch")]
        for column, key in columns.items():
            if diverged:  # the accuracies of a NaN model are no result: the row says what happened instead
                assert row[column] in (f"diverged at epoch {diverged[0]}", "\u2013"), (row["Run"], column)
                continue
            expected = mean_std(r.summary[key] for r in row_runs)
            assert row[column] == expected or row[column].startswith(expected + " ("), (row["Run"], column, expected)
        printed_as_one_line(row, list(row))
    assert sorted(shown) == sorted(r.path for r in runs["q2"])  # every run in exactly one row

    # Q1: each fitted exponent in the row of its method and D; each L* in the crossover rows of its D.
    q1 = runs["q1"][0].summary
    exponents = table("tbl-q1-exponents")
    for method, per_dim in q1["exponents"].items():
        for dim, fits in per_dim.items():
            (row,) = [r for r in exponents if r["Method"] == METHOD_NAMES[method] and r["D"] == str(dim)]
            assert row["Time exponent"] == fmt(fits["time"]["exponent"], 2), (method, dim)
            assert row["Memory exponent"] == fmt(fits["memory"]["exponent"], 2), (method, dim)
            printed_as_one_line(row, ["D", "Time exponent", "Operation count", "Memory exponent"])
    crossovers = table("tbl-q1-crossover")
    for dim, lstar in q1["L_star"].items():
        rows = [r for r in crossovers if r["D"] == str(dim)]
        assert rows and all(r["Flop-count L*"] == f"{lstar:,.0f}" for r in rows), dim
        for row in rows:
            printed_as_one_line(row, ["D", "M", "Flop-count L*", "Crossover L"])

    # Q3: each decoder's test numbers in its column of the test table, and in its own sub-question's sentence.
    test_rows = {r[""]: r for r in table("tbl-q3-test")}
    metrics = {"test_loss": "Test loss", "test_jaccard_similarity": "Test Jaccard",
               "test_cosine_similarity": "Test Cosine", "test_damerau-levenshtein_similarity": "Test Damerau\u2013Levenshtein"}
    sections = {"rnn": ("LSTM", "== Q3.1:", "== Q3.2:"), "transformer": ("Transformer", "== Q3.2:", "== Q3.3:")}
    value = r"(\d[\d,]*\.\d+(?: \u00b1 \d[\d,]*\.\d+)?)"  # as mean_std prints: one run's, or mean ± std
    sentence = re.compile(rf"reaches a loss of {value}, a Jaccard similarity of {value}, a cosine similarity of "
                          rf"{value} and a Damerau\u2013Levenshtein similarity of {value}")
    for decoder, (column, start, end) in sections.items():
        decoder_runs = [r for r in runs["q3"] if r.summary["decoder"] == decoder]
        assert decoder_runs, decoder
        expected = {key: mean_std(runfolders.q3_test_metrics(r)[key] for r in decoder_runs) for key in metrics}
        for key, name in metrics.items():
            assert test_rows[name][column] == expected[key], (decoder, name)
        assert test_rows["Trainable parameters"][column] == f"{decoder_runs[0].summary['n_params']:,}"
        section = " ".join(plain(typ.split(start, 1)[1].split(end, 1)[0]).split())
        assert list(sentence.search(section).groups()) == list(expected.values()), decoder
    for row in test_rows.values():
        printed_as_one_line(row, list(row))


def test_editing_prose_reruns_no_experiment(rendered):
    project, runs, _ = rendered
    results = store.results_dir()
    before = snapshot(results)
    doc = project / "report" / "_q2.qmd"
    doc.write_text(doc.read_text() + "\nA sentence added while editing the prose.\n")
    (pdf,) = render(project, log=lambda *a: None)
    assert "A sentence added while editing the prose." in pdf_text(pdf)
    assert snapshot(results) == before  # no run folder created, moved or modified
    for experiment, expected in (("q1_attention", runs["q1"]), ("q2_cnn", runs["q2"])):
        assert [r.name for r in store.list_runs(experiment, "smoke")] == sorted(r.name for r in expected)


def _numbers(text: str) -> list[str]:
    """The decimal numbers of a report's text (dates, page numbers and commit hashes have no decimals), also where
    glued to a letter: a superscript (L^1.10) is extracted beside its base by one renderer, apart by the other."""
    return sorted(re.findall(r"(?<![\d.])\d[\d,]*\.\d+", text))


def _captions(text: str) -> list[str]:
    return re.findall(r"((?:Figure|Table) \d+: .{0,50})", text)


def test_quarto_renders_the_same_report(request, tmp_path):
    """The same project rendered by real Quarto: the same numbers, numbering, captions and sections, no raw TeX."""
    from hw2.engine.render import MIN_QUARTO, quarto_version, tool_environment

    version = quarto_version()
    if version is None or version < MIN_QUARTO:
        import os

        missing = f"quarto >= 1.7 is not on PATH (found {version}): the renderer parity test needs it"
        if os.environ.get("HW2_REQUIRE_QUARTO") == "1":  # .ci/run built Quarto under CI: a skip would hide a failure
            pytest.fail(f"{missing}, and HW2_REQUIRE_QUARTO=1 requires it")
        pytest.skip(missing)
    project, _, pdf = request.getfixturevalue("rendered")  # rendered by hw2's renderer, only when Quarto is here
    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("_output", ".quarto", "_figures", "*_files"))
    done = subprocess.run(["quarto", "render"], cwd=copy, env=tool_environment(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "pre-render" in done.stdout + done.stderr or "runs planned" in done.stdout + done.stderr
    ours, theirs = pdf_text(pdf), pdf_text(copy / "_output" / "report" / "hw2-report.pdf")
    assert _numbers(theirs) == _numbers(ours)
    assert _captions(theirs) == _captions(ours) and len(_captions(ours)) >= 12
    for first in (page_texts(pdf)[0], page_texts(copy / "_output" / "report" / "hw2-report.pdf")[0]):
        assert "Contents" in first and first.count("Question 1: self-attention") == 2  # one title page in both
    sections = re.compile(r"\d+(?:\.\d+)? (?:Q\d\.\d|Question \d)[^.]{0,40}")
    assert sections.findall(theirs) == sections.findall(ours)
    for text in (ours, theirs):
        assert not re.search(r"\\[A-Za-z]+|\$|\\\.", text), re.search(r".{30}(\\[A-Za-z]+|\$|\\\.).{30}", text)
        # every inline value evaluated and its Markdown rendered, the title page's notes included
        assert "{python}" not in text and "**" not in text and "generated stand-ins for OCTMNIST and LJ Speech" in text
        assert "References" in text and "Bibliography" not in text
    assert "Could not convert TeX math" not in done.stderr
