"""How the attention benchmark times and fits: interleaved rounds, the median, the fit window, the length
cut-offs, the diagnosis of an exponent that differs from the operation count's, and the kept heap."""
import json
import platform
import subprocess
import sys

import pytest
import torch

from hw2.engine.errors import ConfigError
from hw2.q1 import benchmark as bench
from hw2.q1.config import for_profile as q1_config

LENGTHS = [1024, 2048, 4096, 8192]


class FakeCall:
    """Stands for one method's call on inputs of one length; calling it does nothing."""

    def __init__(self, method, length):
        self.method, self.length = method, length

    def __call__(self):
        return None


class FakeRun:
    def __init__(self):
        self.checkpoints = 0

    def save_checkpoint(self, state):
        self.checkpoints += 1


def fake_clock(monkeypatch, seconds_of_cell, burst=range(0)):
    """Sampling without torch: a cell's sample takes seconds_of_cell(method, length), five times as long for
    the samples whose position in time falls in `burst` (another process taking the core)."""
    taken = []

    def sample_seconds(fn, device, calls):
        seconds = seconds_of_cell(fn.method, fn.length) * (5 if len(taken) in burst else 1)
        taken.append((fn.method, fn.length))
        return {"wall_s": seconds, "cpu_s": seconds, "faults_per_call": 0.0}

    monkeypatch.setattr(bench, "inputs", lambda length, dim, device, seed: (length, None, None))
    monkeypatch.setattr(bench, "method_fn", lambda method, q, k, v, cfg: FakeCall(method, q))
    monkeypatch.setattr(bench, "sample_seconds", sample_seconds)
    return taken


def state_of(methods=("softmax_naive",), lengths=LENGTHS):
    cells = [{"method": m, "dim": 16, "length": n, "feature_dim": 153, "first_s": 1.0, "calls": 1,
              "peak_memory_bytes": 4 * n * n} for m in methods for n in lengths]
    return {"cells": cells, "cutoffs": {}, "checks": {}, "samples": [], "rounds_done": 0, "clock": "cpu_s"}


def fitted_exponent(state, cfg):
    rows = bench.cell_rows(state, cfg, bench.operation_counts(), threads=1)
    return bench.analyse(rows, cfg)["exponents"]["softmax_naive"]["16"]["time"]["exponent"]


@pytest.mark.parametrize("start", range(0, 28 - 8 + 1))
def test_a_burst_of_load_anywhere_leaves_the_fitted_exponent_alone(monkeypatch, start):
    # 4 lengths x 7 rounds = 28 samples; a burst of 8 consecutive samples (two lengths' worth) falls on at
    # most 3 of the 7 rounds, so the median of every length is undisturbed
    cfg = q1_config("quick", methods=("softmax_naive", "taylor_linear"), dims=(16,), repeats=7,
                    fit_min_time_s=0.0)
    fake_clock(monkeypatch, lambda method, n: 1e-9 * n * n, burst=range(start, start + 8))
    state = state_of()
    bench.time_rounds(FakeRun(), cfg, state)
    assert fitted_exponent(state, cfg) == pytest.approx(2.0, abs=1e-9)


def test_length_by_length_timing_would_have_moved_it(monkeypatch):
    # the same burst on all 7 samples of the longest length, as timing one length after another allows
    cfg = q1_config("quick", methods=("softmax_naive", "taylor_linear"), dims=(16,), repeats=7,
                    fit_min_time_s=0.0)
    state = state_of()
    state["samples"] = [{"method": "softmax_naive", "dim": 16, "length": n, "round": r, "calls": 1,
                         "cpu_s": 1e-9 * n * n * (5 if n == LENGTHS[-1] else 1), "wall_s": 0.0,
                         "faults_per_call": 0.0} for n in LENGTHS for r in range(7)]
    assert fitted_exponent(state, cfg) > 2.5


def test_every_round_samples_every_cell_once_in_a_fresh_order(monkeypatch):
    cfg = q1_config("quick", repeats=5)
    taken = fake_clock(monkeypatch, lambda method, n: 1e-6 * n)
    state, run = state_of(methods=("softmax_naive", "taylor_linear")), FakeRun()
    bench.time_rounds(run, cfg, state)
    rounds = [taken[i:i + 8] for i in range(0, len(taken), 8)]
    assert len(rounds) == 5 and all(sorted(r) == sorted(rounds[0]) for r in rounds)
    assert len({tuple(r) for r in rounds}) == 5                 # shuffled afresh each round
    assert run.checkpoints == 5 and state["rounds_done"] == 5
    # a resumed run takes only the rounds that are missing
    state["rounds_done"], state["samples"] = 3, state["samples"][:24]
    bench.time_rounds(run, cfg, state)
    assert len(state["samples"]) == 40 and [s["round"] for s in state["samples"]][24:] == [3] * 8 + [4] * 8


def test_history_rows_hold_the_median_and_quartiles_of_the_samples(monkeypatch):
    cfg = q1_config("quick", repeats=5)
    state = state_of(lengths=[1024])
    state["samples"] = [{"method": "softmax_naive", "dim": 16, "length": 1024, "round": r, "calls": 1,
                         "cpu_s": t, "wall_s": 2 * t, "faults_per_call": 0.0}
                        for r, t in enumerate([1.0, 9.0, 2.0, 3.0, 4.0])]
    (row,) = bench.cell_rows(state, cfg, bench.operation_counts(), threads=1)
    assert (row["time_s"], row["time_q1_s"], row["time_q3_s"]) == (3.0, 2.0, 4.0)
    assert row["wall_time_s"] == 6.0 and row["samples"] == 5


def test_fit_window_rule():
    times = [1e-5, 1e-4, 2e-3, 8e-3, 3e-2, 1e-1, 4e-1]
    lengths = [2**p for p in range(7, 14)]
    assert bench.fit_window(lengths, times, 4, 1e-3) == (lengths[-4:], False)
    assert bench.fit_window(lengths, times, 6, 1e-3) == (lengths[2:], False)      # only calls >= 1 ms
    assert bench.fit_window(lengths, times, 4, 0.05) == (lengths[-4:], True)      # fewer than 3 qualify


def test_fit_exponent_recovers_a_power_law():
    fit = bench.fit_exponent(LENGTHS, [3e-9 * n**2 for n in LENGTHS])
    assert fit["exponent"] == pytest.approx(2.0) and fit["lengths"] == LENGTHS
    assert bench.fit_exponent([128], [1.0])["exponent"] is None


def rows_for(seconds, peak=lambda n: 4 * n * n, spread=0.0):
    counts = bench.operation_counts()["softmax_naive"]
    return [{"length": n, "time_s": seconds(n), "time_q1_s": seconds(n) * (1 - spread / 2),
             "time_q3_s": seconds(n) * (1 + spread / 2), "operations": counts(n, 16, 153),
             "peak_memory_bytes": peak(n)} for n in LENGTHS]


@pytest.mark.parametrize("seconds,spread,caches,reason", [
    (lambda n: 1e-9 * n**2, 0.0, {"L2": 2**21}, None),                      # as the count says
    (lambda n: 1e-9 * n**2.4, 0.0, {"L1": 2**23, "L2": 2**25, "L3": 2**27}, "cache"),  # every step crosses one
    (lambda n: 1e-9 * n**2 * (1.6 if n > 1024 else 1), 0.0, {"L2": 2**23, "L3": 2**30}, "cache"),  # one step
    (lambda n: 1e-9 * n**2.4, 0.0, {"L2": 2**21}, "unexplained"),           # already past L2: no cache crossed
    (lambda n: 1e-9 * n**2.4, 0.3, {}, "spread"),                           # no cache known, noisy samples
    (lambda n: 1e-9 * n**2.4, 0.0, {}, "unexplained"),
    (lambda n: 5e-3 + 1e-9 * n**2, 0.0, {"L2": 2**21}, "fixed_cost"),      # a fixed 5 ms per call
])
def test_diagnose_names_the_measured_reason(seconds, spread, caches, reason):
    cfg = q1_config("quick")
    verdict = bench.diagnose(rows_for(seconds, spread=spread), LENGTHS, False, cfg, caches)
    assert verdict["reason"] == reason and verdict["outside"] == (reason is not None)
    if reason == "cache":
        # the cache named is one that a call's memory crosses during the steepest step
        assert verdict["step_peak_from_bytes"] <= verdict["cache_passed_bytes"] < verdict["step_peak_to_bytes"]
        rows = rows_for(seconds)
        per_op = [r["time_s"] / r["operations"] for r in rows]
        assert verdict["per_op_ratio"] == pytest.approx(per_op[-1] / per_op[0], rel=1e-6)
    if "L3" in caches and "L1" not in caches:  # one step: where the time per operation jumps, and the memory there
        assert (verdict["step_from"], verdict["step_to"], verdict["step_peak_to_bytes"]) == (1024, 2048, 4 * 2048**2)
        assert verdict["step_ratio"] == pytest.approx(1.6, rel=0.01)
    if reason == "fixed_cost":
        assert verdict["fixed_cost_s"] == pytest.approx(5e-3, rel=0.01)


def test_plan_stops_a_method_when_its_next_call_would_pass_the_time_limit(monkeypatch):
    # calls take 0.1 ns per operation: naive softmax at D = 16 would take 0.44 s at 8,192 (0.11 s at 4,096)
    cfg = q1_config("quick", dims=(16,), methods=("softmax_naive", "taylor_linear"), time_limit_s=0.3,
                    lengths=(2048, 4096, 8192))
    counts = bench.operation_counts()
    monkeypatch.setattr(bench, "check_methods", lambda cfg, dim: {})
    monkeypatch.setattr(bench, "inputs", lambda length, dim, device, seed: (length, None, None))
    monkeypatch.setattr(bench, "method_fn", lambda method, q, k, v, cfg: FakeCall(method, q))
    monkeypatch.setattr(bench, "sample_seconds", lambda fn, device, calls: {
        "cpu_s": 1e-10 * counts[fn.method](fn.length, 16, 153), "wall_s": 0.0, "faults_per_call": 0.0})
    monkeypatch.setattr(bench, "peak_memory_bytes", lambda fn, device: 4 * fn.length)
    cells, cutoffs, _ = bench.plan_cells(cfg, counts, limit=2**40, clock="cpu_s")
    assert [(c["method"], c["length"]) for c in cells] == [
        ("softmax_naive", 2048), ("taylor_linear", 2048), ("softmax_naive", 4096), ("taylor_linear", 4096),
        ("taylor_linear", 8192)]
    cut = cutoffs["softmax_naive"]["16"]
    assert (cut["length"], cut["kind"], cut["limit"]) == (8192, "time", 0.3)
    assert cut["expected"] == pytest.approx(1e-10 * counts["softmax_naive"](8192, 16, 153))


KEPT_HEAP_PROBE = """
import json, resource, torch
from hw2.q1 import benchmark as bench

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        torch.ones(2**24).sum()  # 64 MiB (16,384 pages), freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

outside = faults()
with bench.heap_kept("cpu") as kept:
    faults()                     # the heap grows to hold a block,
    faults()                     # and now and then once more (one block's 16,384 faults, seen in full suites)
    inside = faults()
print(json.dumps({"kept": kept, "outside": outside, "inside": inside, "after": faults()}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_heap_spares_the_page_faults_of_large_blocks():
    # In a process of its own: glibc's allocator settings and heap are process-wide, and other tests of this
    # session (mallopt calls, large tensors kept alive) would change what the first blocks cost.
    done = subprocess.run([sys.executable, "-c", KEPT_HEAP_PROBE], capture_output=True, text=True, timeout=120,
                          check=True)
    measured = json.loads(done.stdout.splitlines()[-1])
    kept, outside, inside, after = (measured[k] for k in ("kept", "outside", "inside", "after"))
    assert kept and outside > 50_000 and inside < outside / 10, measured
    assert after > outside / 2, measured  # glibc's defaults are back
    with bench.heap_kept("cuda") as kept_on_gpu:
        assert kept_on_gpu is False


def test_config_rejects_too_few_repeats_and_fit_points():
    with pytest.raises(ConfigError, match=r"repeats must be >= 3 .*got repeats=1"):
        q1_config("smoke", repeats=1)
    with pytest.raises(ConfigError, match="fit_points >= 3"):
        q1_config("smoke", fit_points=2)
    with pytest.raises(ConfigError, match="exponent_tolerance > 0"):
        q1_config("smoke", exponent_tolerance=0)


def test_cpu_time_is_the_clock_of_a_one_thread_cpu_run():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert bench.timing_clock("cpu") == "cpu_s"
        torch.set_num_threads(2)
        assert bench.timing_clock("cpu") == "wall_s"
    finally:
        torch.set_num_threads(before)
    assert bench.timing_clock("cuda") == "wall_s"
