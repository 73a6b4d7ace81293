"""Only runs that differ in the seed alone are averaged; every other run is left out by name, with the reason."""
import runfolders
from hw2.engine import store
from hw2.q2 import report as report_q2
from hw2.q3 import report as report_q3
from hw2.reporting import wording


def _variant_of(run, experiment, data_source=runfolders.STANDIN, **changes):
    """A run like `run` but with `changes` to its configuration (a hand run) or on other data."""
    config = {**run.config["config"], **changes}
    spec = store.RunSpec.create(experiment, config, run.summary["profile"], data_source, run.name + "-hand")

    def train(folder):
        for row in run.history.to_dict("records"):
            folder.log_epoch(row)
        return {k: v for k, v in run.summary.items() if k not in ("key", "code", "experiment", "profile", "data_source")}

    return store.execute(spec, train)


def test_hand_runs_with_another_configuration_or_other_data_are_not_averaged_with_the_plan(results_dir):
    runs = runfolders.q2_runs(seeds=(1, 2), epochs=3)
    planned = next(r for r in runs if r.config["config"]["lr"] == 0.01 and not r.config["config"]["no_maxpool"])
    batch16 = _variant_of(planned, "q2_cnn", batch_size=16)
    longer = _variant_of(runs[0], "q2_cnn", epochs=5, seed=7)  # other epochs once crashed the render
    other_data = _variant_of(planned, "q2_cnn", data_source="custom-99999999", seed=3)
    q2 = report_q2.Q2Results("smoke")
    cell = q2.at(False, 0.01)
    assert sorted(r.config["config"]["seed"] for r in cell.runs) == [1, 2]
    assert {r.name for r in q2.runs} == {r.name for r in runs}
    reasons = {wording.left_out(item) for item in q2.left_out}
    assert reasons == {f"{batch16.short_key} (batch_size 16 where the runs shown have 8)",
                       f"{longer.short_key} (epochs 5 where the runs shown have 3)",
                       f"{other_data.short_key} (data custom-99999999 where the runs shown used {runfolders.STANDIN})"}
    assert "±" in q2.table("tbl-x", "All runs.").data  # the table still renders, over the two seeds


def test_q3_averages_a_decoder_over_seeds_only(results_dir):
    runs = runfolders.q3_runs(epochs=3)
    rnn = next(r for r in runs if r.config["config"]["decoder"] == "rnn")
    hand = _variant_of(rnn, "q3_asr", batch_size=4)
    q3 = report_q3.Q3Results("smoke")
    assert [r.name for r in q3.rnn.runs] == [rnn.name]
    assert [wording.left_out(item) for item in q3.left_out] == [f"{hand.short_key} (batch_size 4 where the runs shown have 8)"]
    assert q3.left_out[0].fields == {"batch_size": (4, 8)} and q3.left_out[0].data is None
