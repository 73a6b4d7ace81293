"""Report helpers: run provenance in captions, mean ± std over seeds, missing runs naming their make target."""
import pytest

import runfolders
from hw2 import report, report_q1, report_q2, report_q3
from hw2.store import RunError


def test_mean_std_and_versus():
    assert report.mean_std([0.5]) == "0.5000"
    assert report.mean_std([0.5, 0.7]) == "0.6000 ± 0.1414"
    assert report.versus(0.81, 0.8) == "higher (0.8100 against 0.8000)"
    assert report.versus(0.1, 0.1) == "equal (0.1000 against 0.1000)"


def test_several_seeds_give_mean_and_std_and_captions_name_every_run(results_dir):
    runs = runfolders.q2_runs(seeds=(1, 2))
    q2 = report_q2.Q2Results("smoke")
    assert q2.seeds == 2
    table = q2.table("tbl-x", "All runs.").data
    assert "±" in table and "All runs." in table
    for run in runs:  # short key and seed of every run, the profile and the stand-in data
        assert f"{run.short_key} (seed {report.seed_of(run)})" in table
    assert "profile smoke" in table and "generated stand\\-in data" in table


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
        report.figure(fig, "fig-a", "A.", "no run")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    md = report.figure(fig, "fig-a", "A.", "no run").data
    assert md.startswith("![A. `#text(") and "{#fig-a width=75%}" in md and (tmp_path / "_figures/fig-a.png").is_file()


def test_q3_facts_come_from_the_runs(results_dir):
    runfolders.q3_runs(epochs=3)
    q3 = report_q3.Q3Results("smoke")
    # label smoothing 0.1 over 35 tokens: the loss cannot fall below the smoothed targets' entropy
    import torch

    smoothed = torch.full((1, 35), 0.1 / 35)
    smoothed[0, 7] += 0.9  # the best possible prediction is the smoothed target itself
    best = torch.nn.functional.cross_entropy(smoothed.log(), torch.tensor([7]), label_smoothing=0.1)
    assert q3.loss_floor == pytest.approx(best.item(), rel=1e-5) == pytest.approx(0.6613, abs=1e-4)
    assert q3.deviations["batch_size"] == {"value": 8, "protocol": 64} and "training batch size 8" in q3.deviation_list()
    assert q3.cropped() == 0 and q3.truncated() == 0 and (q3.test_seen, q3.test_unseen) == (2, 2)
    # the synthetic curves: DL = 0.8 q e / 3 (q = 0.55 LSTM, 0.6 Transformer); chance DL 0.2 -> threshold 0.6
    assert q3.threshold == pytest.approx(0.6)
    assert q3.rnn.listening_epoch(q3.threshold) is None and q3.faster_learner() is None
    assert q3.rnn.degenerate_epochs() == [1] and q3.rnn.deaf_epochs(q3.threshold) == [2, 3]
    assert q3.rnn.degenerate == "looping" and q3.rnn.exact_share == 0.0 and q3.same_output_share == 1.0
    assert q3.widest_gap_epoch()["epoch"] == 3
    assert 0 < q3.padding_share < 1
    table = q3.evolution_table("tbl-e", "Evolution.").data
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
    table = q2.table("tbl-x", "All runs.").data
    row = next(line for line in table.splitlines() if "max-pool" in line and "0.1" in line)
    assert "diverged at epoch 2" in row and "0.3250" not in row and "0.3440" not in row
    assert q2.best_pool.lr != 0.1 and q2.at(False, 0.1).diverged_epoch == 2


def test_q2_detects_a_collapsed_classifier_from_its_predictions(results_dir):
    runfolders.q2_runs(collapsed=((0.001, False),))
    q2 = report_q2.Q2Results("smoke")
    assert [(c.lr, c.no_maxpool) for c in q2.collapsed] == [(0.001, False)]
    c = q2.at(False, 0.001)
    assert c.collapsed_to == "NORMAL" and c.prediction_shares["NORMAL"] == 1.0
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
