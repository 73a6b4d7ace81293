"""Report helpers: run references in captions and the provenance appendix, numbers as printed, missing runs
naming their make target, the values each question's chapter reads, the Typst template's first page and floats."""
import dataclasses
import html
import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import runfolders
from hw2.engine.store import RunError
from hw2.q1 import report as report_q1
from hw2.q2 import report as report_q2
from hw2.q3 import report as report_q3
from hw2.reporting import markdown, provenance, runs, wording
from hw2.reporting.format import mean_std, percent, size


def test_numbers_as_the_report_prints_them():
    assert mean_std([0.5]) == "0.5000"
    assert mean_std([0.5, 0.7]) == "0.6000 ± 0.1414"
    assert percent(0.4213) == "42%" and percent(0.4213, 2) == "42.13%"
    assert size(2**29) == "512 MiB" and size(48 * 2**10) == "48 KiB"


ROOT = Path(__file__).resolve().parent.parent


def test_several_seeds_give_mean_and_std_and_captions_cite_every_run_briefly(results_dir):
    made = runfolders.q2_runs(seeds=(1, 2))
    q2 = report_q2.Q2Results("smoke")
    assert q2.seeds == 2
    table = q2.table("tbl-x", "All runs.").data
    assert "±" in table and "All runs." in table
    # the 12 runs are R1-R12 of the provenance appendix: one range and a cross-reference, no keys or seeds
    (caption,) = [line for line in table.splitlines() if line.startswith(": ")]
    assert caption == ": All runs. Runs R1–R12 (@tbl-provenance), on generated stand-in data. {#tbl-x}"
    assert [runs.run_numbers("smoke")[r.path] for r in runs.numbered_runs("smoke")] == list(range(1, 13))
    assert sorted(r.path for r in runs.numbered_runs("smoke")) == sorted(r.path for r in made)


def test_run_references_are_ranges_of_the_appendix_numbers(results_dir, tmp_path):
    runfolders.q2_runs()
    runfolders.q3_runs()
    shown = runs.numbered_runs("smoke")  # Q2's six, then Q3's two (the registry's order)
    assert [r.summary["experiment"] for r in shown] == ["q2_cnn"] * 6 + ["q3_asr"] * 2
    assert runs.run_refs([shown[0]]) == "R1" and runs.run_refs(shown[3:5]) == "R4, R5"
    assert runs.run_refs([shown[7], shown[0], shown[1], shown[2], shown[5]]) == "R1–R3, R6, R8"
    assert wording.caption_note(shown[6:]) == "Runs R7, R8 (@tbl-provenance), on generated stand-in data."
    assert markdown.caption("Two runs.", shown[6:]) == "Two runs. " + wording.caption_note(shown[6:])
    elsewhere = dataclasses.replace(shown[0], path=tmp_path / "elsewhere")
    with pytest.raises(RunError, match=r"elsewhere: not among the runs the report shows .* no row to cite"):
        runs.run_refs([elsewhere])


def _cells(markdown: str) -> tuple[list[list[str]], str, str]:
    """(rows of cells as text, caption, label) of the one table pandoc reads from `markdown`."""
    import pypandoc

    out = pypandoc.convert_text(markdown, "html", format="markdown")
    rows = [[" ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split())
             for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in re.findall(r"<tr[^>]*>(.*?)</tr>", out, re.S)]
    caption = html.unescape(re.sub(r"<[^>]+>", "", re.search(r"<caption>(.*?)</caption>", out, re.S).group(1)))
    caption, label = re.fullmatch(r"(.*) \{#([\w-]+)\}", " ".join(caption.split())).groups()  # Quarto's label
    return rows, caption, label


def test_the_provenance_appendix_lists_every_run_from_its_folder(results_dir):
    with pytest.raises(RunError, match=r"no runs of profile 'smoke' in .* run `PROFILE=smoke make runs` first"):
        provenance.provenance_table("smoke", "Every run.")
    runfolders.q2_runs()
    runfolders.q3_runs()
    rows, caption, label = _cells(provenance.provenance_table("smoke", "Every run.").data)
    assert label == runs.PROVENANCE_LABEL and caption == "Every run."
    header, *rows = rows
    assert header == list(provenance.PROVENANCE_COLUMNS) and len(rows) == 8
    for n, (run, row) in enumerate(zip(runs.numbered_runs("smoke"), rows), start=1):
        config, env = json.loads(run.file("config.json").read_text()), json.loads(run.file("env.json").read_text())
        ref, folder, configuration, code, environment, wall = row
        assert ref == f"R{n}" and folder == f"{run.summary['experiment']}/{run.name}; data {config['data_source']}"
        assert configuration.split("; ") == [f"{k}={json.dumps(v).strip(chr(34))}" for k, v in config["config"].items()]
        assert code == f"code {config['code'][:12]}, commit {env['git_commit']}"
        device = env.get("device") or "not recorded"  # a field env.json lacks is said so, never guessed
        assert environment.startswith(f"Python {env['python']}, torch {env['torch']}, NumPy {env['numpy']}; {device}, "
                                      f"{env['torch_threads']} torch thread(s) of {env['cpu_count']} CPUs")
        assert wall.startswith(f"{env['wall_time_s']:.1f} s, finished {env['finished_at'][:10]}")


def test_missing_runs_name_the_make_target(results_dir):
    with pytest.raises(RunError, match=r"run `PROFILE=smoke make runs-q2` first"):
        report_q2.Q2Results("smoke")
    runfolders.q3_runs()
    q3 = report_q3.Q3Results("smoke")
    assert q3.decoder("rnn").label == "LSTM decoder"
    with pytest.raises(RunError, match=r"make runs-q1"):
        report_q1.Q1Results("smoke")


def test_figures_need_axis_labels(results_dir, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    with pytest.raises(ValueError, match="axis labels"):
        markdown.figure(fig, "fig-a", "A.", "no run")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    md = markdown.figure(fig, "fig-a", "A.", "no run").data
    assert md.startswith("![A. no run](") and "{#fig-a width=75%}" in md and (tmp_path / "_figures/fig-a.png").is_file()


def test_q3_facts_come_from_the_runs(results_dir):
    runfolders.q3_runs(epochs=3)
    q3 = report_q3.Q3Results("smoke")
    # label smoothing 0.1 over 35 tokens: the loss cannot fall below the smoothed targets' entropy
    import torch

    smoothed = torch.full((1, 35), 0.1 / 35)
    smoothed[0, 7] += 0.9  # the best possible prediction is the smoothed target itself
    best = torch.nn.functional.cross_entropy(smoothed.log(), torch.tensor([7]), label_smoothing=0.1)
    assert q3.loss_floor == pytest.approx(best.item(), rel=1e-5) == pytest.approx(0.6613, abs=1e-4)
    assert q3.deviations["batch_size"] == {"value": 8, "protocol": 64}
    assert "training batch size 8 (protocol: 64)" in wording.deviations(q3.deviations)
    assert q3.cropped() == 0 and q3.truncated() == 0 and (q3.test_seen, q3.test_unseen) == (2, 2)
    assert q3.rnn.warmup_epochs == 0  # the skeleton's int(0.15 E) for these 3 epochs
    # the synthetic curves: DL = 0.8 q e / 3 (q = 0.55 LSTM, 0.6 Transformer); chance DL 0.2 -> threshold 0.6
    assert q3.threshold == pytest.approx(0.6)
    assert q3.rnn.listening_epoch(q3.threshold) is None and q3.faster_learner() is None
    assert q3.rnn.degenerate_epochs() == [1] and q3.rnn.deaf_epochs(q3.threshold) == [2, 3]
    assert q3.rnn.degenerate == "looping" and q3.rnn.exact_share == 0.0 and q3.same_output_share == 1.0
    assert q3.fewer_wrong is None  # both decoders get every clip wrong
    assert q3.widest_gap_epoch()["epoch"] == 3
    assert 0 < q3.padding_share < 1
    table = q3.evolution_table("tbl-e", "Evolution.").data.replace(markdown.NBSP, " ")
    assert "rnn 3" in table and "transformer 1" in table
    assert "Chance" in q3.test_table("tbl-t", "Test.").data


def test_worked_examples_score_as_the_skeleton_does():
    ex = report_q3.transposition_example("tina saw five carpets.")
    assert ex["prediction"] == "tnia saw five carpets." and ex["jaccard"] == ex["cosine"] == 1.0
    assert ex["damerau_levenshtein"] == pytest.approx(1 - 1 / 24)
    sub = report_q3.substitution_example("tina saw five carpets.")
    assert sub["jaccard"] == pytest.approx(23 / 25) and sub["damerau_levenshtein"] == pytest.approx(23 / 24)
    assert sub["jaccard"] < sub["cosine"] <= sub["damerau_levenshtein"]


def test_a_diverged_run_shows_its_epoch_and_no_accuracy(results_dir):
    runfolders.q2_runs(diverged={(0.1, False): 2})
    q2 = report_q2.Q2Results("smoke")
    table = q2.table("tbl-x", "All runs.").data.replace(markdown.NBSP, " ")
    row = next(line for line in table.splitlines() if "| max " in line and " 0.1 " in line)
    assert "diverged at epoch 2" in row and "0.3250" not in row and "0.3440" not in row
    assert q2.best_pool.lr != 0.1 and q2.at(False, 0.1).diverged_epoch == 2


def test_q2_detects_a_collapsed_classifier_from_its_predictions(results_dir):
    runfolders.q2_runs(collapsed=((0.001, False),))
    q2 = report_q2.Q2Results("smoke")
    assert [(c.lr, c.no_maxpool) for c in q2.collapsed] == [(0.001, False)]
    c = q2.at(False, 0.001)
    assert c.collapsed_to == "NORMAL" and c.prediction_shares["NORMAL"] == 1.0
    assert c.never_predicted == ["CNV", "DME", "DRUSEN"] and c.predicted_instead("DME") == ("NORMAL", 250, 250)
    assert c.class_share("NORMAL", "valid") == 0.45 and c.class_share("NORMAL", "test_full") == 0.25
    assert "(collapsed)" in q2.table("tbl-x", "Runs.").data
    # The chosen network's recalls come from its confusion matrices and explain its two test accuracies.
    best = q2.best_pool
    full = best.confusion("test_full")
    assert full.sum() == 1000 and abs(sum(best.recalls().values()) / 4 - best.mean("test_acc_full")) < 1e-6
    assert "Recall (subsample)" in q2.confusion_table(best, "tbl-y", "Predictions.").data


def test_output_sizes_follow_the_formula_and_the_traced_model():
    shapes = report_q2.layer_shapes()
    assert shapes[False]["conv2"][1] == (16, 12, 12) and shapes[True]["conv1"][1] == (8, 14, 14)
    assert "pool1" not in shapes[True]
    for no_maxpool, chain in ((False, [(3, 1, 1), (2, 2, 0), (3, 1, 0), (2, 2, 0)]), (True, [(3, 2, 1), (3, 2, 0)])):
        n = 28
        for kernel, stride, padding in chain:
            n = report_q2.conv_output(n, kernel, stride, padding)
        assert n == 6 and shapes[no_maxpool]["flatten"][1] == (16 * n * n,)


def _typst_pages(tmp_path: Path, body: str) -> list[str]:
    """The text of each page of `body` compiled inside hw2's template (as both renderers call it)."""
    import typst

    source = tmp_path / "doc.typ"
    source.write_text((ROOT / "hw2" / "engine" / "typst" / "typst-template.typ").read_text()
                      + '\n#show: doc => article(title: [Homework 2], toc: true, toc_depth: 2, doc)\n' + body)
    typst.compile(str(source), output=str(tmp_path / "doc.pdf"), ignore_system_fonts=True)
    text = subprocess.run(["pdftotext", str(tmp_path / "doc.pdf"), "-"], capture_output=True, text=True, check=True)
    return [" ".join(page.split()) for page in text.stdout.split("\f")[:-1]]


def test_the_template_keeps_the_contents_on_the_title_page_and_floats_what_does_not_fit(tmp_path):
    pages = _typst_pages(tmp_path, """
Group 42.
#metadata("title page") <titlepage-end>
= First question
#lorem(350)
#figure(rect(width: 100%, height: 12cm), caption: [A large figure.]) <fig-big>
Text written after the figure. #lorem(40)

#figure(table(columns: 2, table.header([Run], [Key]), ..range(90).map(i => ([R#i], [k#i])).flatten()),
  caption: [Provenance.], kind: table) <tbl-provenance>
Last words.
""")
    # one first page: title, group, contents and the first question (no page of its own for the contents)
    assert pages[0].startswith("Homework 2 Group 42. Contents First question")
    assert pages[0].count("First question") == 2
    # the figure does not fit under the text: it moves to the next page and the text after it fills this one
    assert "Text written after the figure." in pages[0] and "Figure 1: A large figure." in pages[1]
    # the provenance table is never floated: it starts where it is written and breaks across pages,
    # repeating its header
    start = next(i for i, p in enumerate(pages) if "Table 1: Provenance." in p)
    assert "R0 k0" in pages[start] and "R89 k89" in pages[-1] and start < len(pages) - 1
    assert "Run Key" in pages[-1] and "Last words." in pages[-1]


def test_table_cells_never_wrap_inside_a_number_or_a_short_phrase():
    nbsp = markdown.NBSP
    assert markdown.unbroken("between 512 and 1,024") == nbsp.join("between 512 and 1,024".split())
    long = markdown.unbroken("8,192 would take ≈ 0.72 s > 0.5 s, the limit of one call")
    assert f"≈{nbsp}0.72{nbsp}s{nbsp}>{nbsp}0.5{nbsp}s" in long and "the limit of one call" in long
    assert markdown.unbroken("the doctor found the dark jewel in the garden") == "the doctor found the dark jewel in the garden"
    import pandas as pd

    table = markdown.table(pd.DataFrame([{"a": "0.7215 ± 0.0040", "b": "x"}]), "tbl-x", "T.", "no run").data
    assert f"0.7215{nbsp}±{nbsp}0.0040" in table


def test_sentences_compute_from_the_values_the_tables_print(results_dir):
    from hw2.reporting.format import relative, shown

    assert shown(0.73569) == 0.7357 and shown(None) != shown(None)
    assert relative(0.7215, 0.8977)["of_larger"] == pytest.approx(0.1762 / 0.8977)
    assert relative(0.7215, 0.8977)["of_smaller"] == pytest.approx(0.1762 / 0.7215)
    runfolders.q2_runs()
    q2 = report_q2.Q2Results("smoke")
    table = q2.table("tbl-x", "Runs.").data
    printed = sorted((c.shown("final_valid_acc") for c in q2.variant(False)), reverse=True)
    for c in q2.variant(False):
        assert c.printed("final_valid_acc") in table
    # the margin a reader gets from the two printed accuracies, and its images from that margin
    assert q2.choice_margin == pytest.approx(printed[0] - printed[1])
    assert q2.choice_margin_images == round((printed[0] - printed[1]) * q2.n_val)


def test_q3_error_study_locates_the_errors_in_the_saved_predictions(results_dir):
    import pandas as pd

    runfolders.q3_runs()
    q3 = report_q3.Q3Results("smoke")
    targets = ["<the dog ran home.>", "<a cat sat down quietly.>", "<the dog sat.>", "<a cat ran home quickly.>"]
    predictions = {"rnn": ["<the dog ran home.>", "<a cat sat down home.>", "<the dog sat.>", "<a cat ran home quickly.>"],
                   "transformer": ["<the dgo ran home.>", "<a cat sat down quietly.>", "<the dog sta.>",
                                   "<a cat ran hom quickly.>"]}
    for name, dec in q3.decoders.items():
        dec.__dict__["predictions"] = pd.DataFrame({"target": targets, "prediction": predictions[name]})
    study = q3.error_study
    assert q3.vocabulary == {"the", "dog", "ran", "home", "a", "cat", "sat", "down", "quietly", "quickly"}
    assert (study["rnn"]["wrong"], study["rnn"]["misspelt"], study["rnn"]["real_words"]) == (1, 0, 1)
    assert (study["transformer"]["wrong"], study["transformer"]["misspelt"]) == (3, 3)
    # "home" -> "quietly": three substitutions and three insertions; the swaps "dgo" and "sta" an insertion and a
    # deletion each (Levenshtein has no transposition), "hom" one insertion
    assert (study["rnn"]["replace"], study["rnn"]["insert"], study["rnn"]["delete"]) == (3, 3, 0)
    assert (study["transformer"]["replace"], study["transformer"]["insert"], study["transformer"]["delete"]) == (0, 3, 2)
    assert study["rnn"]["first_error"] == pytest.approx(15 / 23)  # "quietly" starts at character 15 of 23
    assert q3.both_wrong == 0 and q3.median_length == 20
    assert study["transformer"]["rate_longer"] == 0.5 and study["transformer"]["rate_shorter"] == 1.0
    assert q3.error_example("transformer", misspelt=True) == {"target": "the dog ran home.", "prediction": "the dgo ran home."}
    assert q3.error_example("rnn", misspelt=False)["prediction"] == "a cat sat down home."
    table = q3.error_table("tbl-e", "Errors.").data
    assert "Wrong transcripts" in table and "Runs R1, R2" in table
    deletion = report_q3.deletion_example()
    assert deletion["jaccard"] == pytest.approx(deletion["damerau_levenshtein"])  # one deletion costs both alike


def test_the_template_keeps_headings_with_their_text_rows_whole_and_names_appendices(tmp_path):
    pages = _typst_pages(tmp_path, """
#metadata("title page") <titlepage-end>
= First question
#lorem(520)
= Second question
#lorem(60)
#figure(table(columns: 2, ..range(160).map(i => ([R#i], [#lorem(3) #i])).flatten()), caption: [Rows.],
  kind: table) <tbl-provenance>
#set heading(numbering: "A.1")
#counter(heading).update(0)
= Measurements <sec-more>
See #ref(<sec-more>, supplement: [Section]).
""")
    # the heading is never the last line of a page: it moves to the page of its first lines
    heading_page = next(i for i, p in enumerate(pages) if "Second question" in p.split("Contents")[-1])
    assert pages[heading_page].split("Second question")[-1].strip(), "a heading ends its page"
    # a row of the long table is never split: each row's two cells are on one page
    for i in range(160):
        assert sum(f"R{i} " in p for p in pages) == 1
    assert "See Appendix A." in pages[-1] and "A Measurements" in pages[-1]


@pytest.mark.parametrize("epochs, warmup", [(6, 0), (7, 1), (15, 2)])
def test_q3_warmup_epochs_are_the_skeletons_int_of_fifteen_percent(epochs, warmup):
    import pandas as pd

    from hw2.q3.config import ASRConfig
    from hw2.q3.train import lr_schedule

    run = SimpleNamespace(history=pd.DataFrame({"lr": lr_schedule(ASRConfig(epochs=epochs))}))
    assert report_q3.Q3Decoder("rnn", [run]).warmup_epochs == warmup
