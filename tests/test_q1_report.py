"""Question 1's report helpers on a benchmark summary made by the analysis itself from synthetic timings:
the figure plots what is fitted, the tables say why each method stops and where the crossover lies, and the
speed-ups are rounded to what the measurement supports."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hw2.q1 import benchmark as bench
from hw2.q1 import report as report_q1
from hw2.q1.config import for_profile as q1_config

LENGTHS = [512, 1024, 2048, 4096, 8192]


def results(cutoffs=None) -> report_q1.Q1Results:
    """Q1Results over a synthetic run: softmax at 1 ns per operation, 1.2 times more per doubling of L,
    Taylor linear at 0.05 ns per operation plus 0.1 ms per call (under 1 ms up to L = 1,024)."""
    cfg = q1_config("quick", dims=(16,), methods=("softmax_naive", "taylor_linear"), device="cpu")
    counts = bench.operation_counts()
    history = []
    for method in cfg.methods:
        for n in LENGTHS:
            ops = counts[method](n, 16, 153)
            t = (1e-9 * ops * 1.2 ** math.log2(n / 512) if method == "softmax_naive" else 5e-11 * ops + 1e-4)
            history.append({"method": method, "dim": 16, "length": n, "time_s": t, "time_q1_s": 0.95 * t,
                            "time_q3_s": 1.05 * t, "wall_time_s": 2 * t, "operations": ops, "faults_per_call": 0.0,
                            "peak_memory_bytes": 8 * n * n if method == "softmax_naive" else 3000 * n})
    summary = {"device": "cpu", "threads": 1, "repeats": cfg.repeats, "order": 3, "methods": list(cfg.methods),
               "dims": [16], "clock": "cpu_s", "heap_kept": True, "caches": {"L2": 2**24},
               **bench.analyse(history, cfg, {"L2": 2**24}), "cutoffs": cutoffs or {},
               "max_length": {m: {"16": LENGTHS[-1]} for m in cfg.methods}}
    q1 = report_q1.Q1Results.__new__(report_q1.Q1Results)
    q1.summary, q1.history = summary, pd.DataFrame(history)
    q1.run = SimpleNamespace(config={"config": {"exponent_tolerance": cfg.exponent_tolerance,
                                                "fit_points": cfg.fit_points, "fit_min_time_s": cfg.fit_min_time_s,
                                                "time_limit_s": cfg.time_limit_s, "min_sample_s": cfg.min_sample_s,
                                                "memory_limit_gb": cfg.memory_limit_gb}})
    return q1


def test_time_figure_plots_the_medians_and_the_line_that_is_fitted():
    q1 = results()
    fig = q1.scaling_plot("time")
    ax = fig.axes[0]
    for method, fit in ((m, q1.fit(m, 16)) for m in ("softmax_naive", "taylor_linear")):
        exponent = fit["time"]["exponent"]
        (points,) = [line for line in ax.get_lines() if line.get_label().startswith(report_q1.METHOD_NAMES[method])]
        medians = q1.history.set_index(["method", "length"]).loc[method, "time_s"]
        assert list(points.get_xdata()) == fit["time"]["lengths"]
        assert list(points.get_ydata()) == [medians[n] for n in fit["time"]["lengths"]]
        assert f"{exponent:.2f}" in points.get_label()
        (dashed,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"
                     and line.get_color() == points.get_color()]
        x, y = np.log(dashed.get_xdata()), np.log(dashed.get_ydata())
        assert (y[1] - y[0]) / (x[1] - x[0]) == pytest.approx(exponent)


def test_fit_window_leaves_out_calls_under_the_minimum_and_flags_the_difference():
    q1 = results()
    soft, taylor = q1.fit("softmax_naive", 16), q1.fit("taylor_linear", 16)
    assert soft["time"]["lengths"] == LENGTHS[-4:]       # the 4 longest, all over 1 ms
    assert soft["reason"] == "cache" and soft["time"]["exponent"] == pytest.approx(2 + math.log2(1.2), abs=0.01)
    assert taylor["time"]["lengths"] == [2048, 4096, 8192]  # 512 and 1,024 take under 1 ms
    assert [f["method"] for f in q1.flagged()] == ["softmax_naive"]


def test_exponent_table_says_why_each_method_stops():
    cutoffs = {"softmax_naive": {"16": {"length": 16384, "kind": "time", "expected": 1.53, "limit": 0.5}},
               "taylor_linear": {"16": {"length": 16384, "kind": "memory", "expected": 5.2 * 2**30,
                                        "limit": 4 * 2**30}}}
    rows = results(cutoffs).exponent_rows().set_index("Method")
    assert rows.loc["softmax, naive", "Stops because"] == "16,384 would take ≈ 1.5 s > 0.5 s"
    assert rows.loc["Taylor linear", "Stops because"] == "16,384 would need ≈ 5.2 GiB > 4.0 GiB"
    assert rows.loc["softmax, naive", "Fitted over L"] == "1,024–8,192"
    assert rows.loc["softmax, naive", "Operation count"] == "2.00"
    assert results().exponent_rows()["Stops because"].tolist() == ["last length planned"] * 2


def test_crossover_table_says_where_and_rounds_the_speed_up():
    (row,) = results().crossover_rows().to_dict("records")
    assert row["Crossing"] == "at or below 512"  # Taylor linear is already faster at the shortest length
    assert row["Speed-up at longest common L"].endswith("× at 8,192")
    speed_up = row["Speed-up at longest common L"].split("×")[0]
    assert len(speed_up.replace(",", "").replace(".", "").strip("0")) <= 2  # two significant figures


@pytest.mark.parametrize("value,text", [(625.24, "630"), (35.82, "36"), (2.43, "2.4"), (0.0712, "0.071"),
                                        (1466.0, "1,500"), (9.96, "10")])
def test_significant_figures(value, text):
    assert report_q1.significant(value) == text


def test_the_cells_that_still_page_fault_are_named_largest_first():
    q1 = results()
    assert q1.faulting_cells == []
    q1.history.loc[q1.history["length"] >= 4096, "faults_per_call"] = 100.0
    cells = q1.faulting_cells
    assert {(c["method"], c["length"]) for c in cells} == {(m, n) for m in ("softmax_naive", "taylor_linear")
                                                          for n in (4096, 8192)}
    assert [c["peak_memory_bytes"] for c in cells] == sorted((c["peak_memory_bytes"] for c in cells), reverse=True)
