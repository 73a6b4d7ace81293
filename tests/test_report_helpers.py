"""Report helpers: run provenance in captions, mean ± std over seeds, missing runs naming their make target."""
import pytest

import runfolders
from hw2 import report, report_q3
from hw2.store import RunError


def test_mean_std_and_versus():
    assert report.mean_std([0.5]) == "0.5000"
    assert report.mean_std([0.5, 0.7]) == "0.6000 ± 0.1414"
    assert report.versus(0.81, 0.8) == "higher (0.8100 against 0.8000)"
    assert report.versus(0.1, 0.1) == "equal (0.1000 against 0.1000)"


def test_several_seeds_give_mean_and_std_and_captions_name_every_run(results_dir):
    runs = runfolders.q2_runs(seeds=(1, 2))
    q2 = report.Q2Results("smoke")
    assert q2.seeds == 2
    table = q2.table("tbl-x").data
    assert "±" in table and "Mean ± standard deviation over 2 seeds." in table
    for run in runs:  # short key and seed of every run, the profile and the stand-in data
        assert f"{run.short_key} (seed {report.seed_of(run)})" in table
    assert "profile smoke" in table and "generated stand\\-in data" in table


def test_missing_runs_name_the_make_target(results_dir):
    with pytest.raises(RunError, match=r"run `PROFILE=smoke make runs-q2` first"):
        report.Q2Results("smoke")
    runfolders.q3_runs()
    q3 = report_q3.Q3Results("smoke")
    assert q3.decoder("rnn").label == "LSTM decoder"
    with pytest.raises(RunError, match=r"make runs-q1"):
        report.Q1Results("smoke")


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
