"""The attention benchmark: its analysis helpers, its parameter checks, and a smoke run end to end."""
import json

import nbformat
import pandas as pd
import pytest
import torch

from hw2.engine import store
from hw2.engine.errors import ConfigError
from hw2.q1 import benchmark as bench
from hw2.q1 import config, experiment


def test_crossover_kinds():
    lengths = [100, 200, 400, 800]
    soft = [1e-6 * n**2 for n in lengths]
    measured = bench.crossover(lengths, soft, [1e-6 * 300 * n for n in lengths], {}, {})
    assert measured["kind"] == "measured" and measured["length"] == pytest.approx(300, rel=1e-9)
    assert measured["between"] == [200, 400]
    below = bench.crossover(lengths, soft, [1e-6 * 50 * n for n in lengths], {}, {})
    assert below["kind"] == "below_range" and below["length"] == 100
    lin = [1e-6 * 1600 * n for n in lengths]
    fits = [bench.fit_exponent(lengths, t) for t in (soft, lin)]
    extrapolated = bench.crossover(lengths, soft, lin, *fits)
    assert extrapolated["kind"] == "extrapolated" and extrapolated["length"] == pytest.approx(1600, rel=1e-6)
    assert extrapolated["ratio_at_longest"] == pytest.approx(0.5)


def test_peak_memory_counts_torch_allocations():
    def two_live_tensors():
        a = torch.ones(1_000_000)   # 4 MB
        return a + 1                # 4 MB more while `a` is alive; `a` is freed on return
    assert 8_000_000 <= bench.peak_memory_bytes(two_live_tensors, "cpu") < 8_100_000


def test_config_and_parameter_errors_are_specific():
    with pytest.raises(ConfigError, match="lengths must be"):
        config.for_profile("smoke", lengths=(256, 128))
    with pytest.raises(ConfigError, match="taylor_linear"):
        config.for_profile("smoke", methods=("softmax_naive",))
    with pytest.raises(ConfigError, match="the fields are .*dims"):
        config.for_profile("smoke", max_len=5)
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        experiment.configs({"device": "auto"}, "fast")
    with pytest.raises(ConfigError, match="profile must be a string"):
        experiment.configs({"device": "auto"}, 3)
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        experiment.configs({"device": "tpu"}, "smoke")


def test_profiles_and_plan():
    full, quick = config.for_profile("full"), config.for_profile("quick")
    assert full.dims == (16, 64) and full.order == 3 and full.symmetric
    assert full.lengths[0] == 128 and full.lengths[-1] > quick.lengths[-1] >= 8192
    assert config.plan("quick") == [{"device": "auto"}] == experiment.plan("quick")
    a = experiment.specs({"device": "cpu"}, "smoke", "synthetic")[0]
    b = experiment.specs({"device": "cpu"}, "quick", "synthetic")[0]
    assert a.key == experiment.specs({"device": "cpu"}, "smoke", "synthetic")[0].key != b.key


@pytest.mark.slow
def test_smoke_run_through_the_runner_and_notebook(with_smoke_runs, monkeypatch):
    from hw2.engine.runner import run_question

    monkeypatch.setenv("PROFILE", "smoke")
    tmp_path = with_smoke_runs.results
    (path,) = [p for p in (tmp_path / experiment.ENTRY.name).iterdir() if not p.name.startswith(".")]
    assert store.check_complete(path) is None
    assert {"config.json", "history.csv", "summary.json", "env.json", "approx_error.csv", "run.ipynb"} <= {
        p.name for p in path.iterdir()}
    cfg = config.for_profile("smoke")
    history = pd.read_csv(path / "history.csv")
    assert len(history) == len(cfg.methods) * len(cfg.dims) * len(cfg.lengths)
    assert {"method", "dim", "length", "feature_dim", "time_s", "time_q1_s", "time_q3_s", "wall_time_s",
            "samples", "faults_per_call", "peak_memory_bytes", "operations", "flops"} <= set(history.columns)
    assert (history.time_s > 0).all() and (history.peak_memory_bytes > 0).all()
    assert (history.samples == cfg.repeats).all()
    samples = pd.read_csv(path / "samples.csv")
    assert len(samples) == len(history) * cfg.repeats and set(samples["round"]) == set(range(cfg.repeats))
    errors = pd.read_csv(path / "approx_error.csv")
    assert len(errors) == len(cfg.error_kinds) * len(cfg.error_scales) * len(cfg.error_orders) * cfg.error_trials
    summary = json.loads((path / "summary.json").read_text())
    assert summary["feature_dims"] == {"16": 153, "64": 2145}
    assert summary["L_star"]["16"] == pytest.approx(159.92, abs=0.01)
    assert summary["clock"] == "cpu_s" and summary["heap_kept"] is True and summary["repeats"] == cfg.repeats
    for method in cfg.methods:
        assert set(summary["exponents"][method]) == {"16", "64"}
        for fit in summary["exponents"][method].values():
            assert fit["predicted"] == pytest.approx(2 if method.startswith("softmax") else 1, abs=0.05)
            assert fit["time"]["lengths"] == list(cfg.lengths)  # smoke fits every length (fit_min_time_s 0)
    assert set(summary["crossovers"]) == {"softmax_naive", "softmax_sdpa"}
    assert all(err < 1e-4 for checks in summary["checks"].values() for err in checks.values())
    assert summary["error_study"]["min_kernel"]["3"] >= 0.5
    assert summary["error_study"]["order3_kernel_min_on_grid"] == pytest.approx(0.5)
    outputs = "".join(o.get("text", "") for c in nbformat.read(path / "run.ipynb", 4).cells
                      for o in c.get("outputs", []))
    assert "[hw2] q1_attention: profile=smoke data=synthetic device=cpu" in outputs
    assert run_question("q1", "smoke") == 0  # complete: nothing to redo
    assert [p.name for p in (tmp_path / experiment.ENTRY.name).iterdir() if not p.name.startswith(".")] == [path.name]


@pytest.mark.slow
def test_notebook_rejects_a_bad_profile(tmp_path, monkeypatch):
    import papermill

    from hw2.engine.paths import project_root

    ROOT = project_root()

    monkeypatch.setenv("HW2_RESULTS_DIR", str(tmp_path))
    with pytest.raises(papermill.PapermillExecutionError, match="unknown profile 'bogus'"):
        papermill.execute_notebook(str(ROOT / experiment.ENTRY.notebook), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "bogus"}, cwd=str(ROOT), kernel_name="python3",
                                   progress_bar=False)
    assert not (tmp_path / experiment.ENTRY.name).exists()


def test_missing_run_names_the_make_target(tmp_path, monkeypatch):
    monkeypatch.setenv("HW2_RESULTS_DIR", str(tmp_path))
    with pytest.raises(store.RunError, match="PROFILE=smoke make runs-q1"):
        experiment.find_run("smoke", "cpu")
