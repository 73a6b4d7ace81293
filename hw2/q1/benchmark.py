"""Question 1 measured: softmax attention (naive and fused SDPA) against Taylor linear attention.

One run (`run`) measures, for every D in `dims` and L in `lengths`, each method's
  wall time  : seconds per call. First each method grows L (`plan_cells`) until the next call, extrapolated
               by the operation count, would pass `time_limit_s`, or its peak memory (L^2 for softmax, L for
               Taylor) the memory limit (default: half the device's memory). Then `repeats` rounds each take
               one sample of every method x D x L, in a fresh random order every round (`time_rounds`): a
               burst of load from another process hits a few random samples, not one length. A sample
               repeats a short call until `min_sample_s` has run (CUDA calls synchronised). The statistic is
               the median over the rounds (`time_s`), with the quartiles beside it, of the thread's CPU time
               in a one-thread CPU run and of wall time otherwise (`timing_clock`); every sample is in
               samples.csv, with both clocks. On the CPU freed memory stays in the process (`heap_kept`).
  peak memory: the most bytes the call held at once through torch's allocator, above what was allocated
               before it (inputs excluded, the output included). On CUDA this is the caching allocator's
               `max_memory_allocated`; on CPU it is the running sum of every allocation and free that the
               torch profiler records (`profile_memory=True`) during one extra, untimed call, so it counts
               exactly the tensors torch allocates, not interpreter or allocator overhead.
It then fits the growth exponent of the median time and of the memory on a log-log scale over a window of
the longest lengths (`fit_window`), sets it beside the operation count's exponent over the same window and
names the measured reason for a difference (`diagnose`), finds the measured crossover length where Taylor
linear attention becomes faster than each softmax method, and sets it beside the flop-count L* of the
derivation. Finally it measures the approximation error of Taylor attention against softmax attention as
the scale of q^T k grows, on random and structured inputs, for several orders K.

Run folder: history.csv (one row per method x D x L), samples.csv (one row per timed sample),
approx_error.csv (one row per input kind x K x scale x trial), summary.json (exponents with their
diagnosis, crossovers, L*, M, cut-offs, checks, cache sizes, error-study summary).
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hw2.engine import store
from hw2.q1 import taylor
from hw2.q1.config import AttentionBenchConfig

SOFTMAX_METHODS = ("softmax_naive", "softmax_sdpa")


# --- measurement --------------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def sample_seconds(fn, device: str, calls: int) -> dict:
    """Per call, over `calls` back-to-back calls (CUDA synchronised): wall seconds, CPU seconds of this thread
    (user and system) and minor page faults."""
    _sync(device)
    faults, cpu = _minor_faults(), time.thread_time()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    wall = time.perf_counter() - start
    return {"wall_s": wall / calls, "cpu_s": (time.thread_time() - cpu) / calls,
            "faults_per_call": (_minor_faults() - faults) / calls}


def timing_clock(device: str) -> str:
    """The clock the statistics use: on a CPU with one torch thread, the CPU time of the thread doing all the
    work, which does not count the time the scheduler gives other processes (on a 2-core machine shared with
    a busy process, most of a short call's wall time); elsewhere wall time (CUDA or several threads)."""
    return "cpu_s" if device == "cpu" and torch.get_num_threads() == 1 else "wall_s"


def peak_memory_bytes(fn, device: str) -> int:
    """Peak bytes allocated by torch during one call of `fn`, above the level before it (see module doc)."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return int(peak)


@contextlib.contextmanager
def _native_stderr_silenced():
    """The profiler's native library logs two lines per start/stop straight to file descriptor 2 (no setting
    turns them off); hide them so the run's output stays readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@contextlib.contextmanager
def heap_kept(device: str):
    """While timing on the CPU, keep freed memory in the process, as CUDA's caching allocator does. glibc
    otherwise hands each large block back to the kernel when it is freed, and the next call of the same size
    pays for page faults while the kernel zeroes fresh pages: measured here, 49,000 faults per naive softmax
    call at L = 4,096 and 2.4 times the time per score, a cost of the allocator that grew with the load on
    the machine. Yields whether the heap is kept (glibc only); the defaults are restored afterwards."""
    if device != "cpu" or platform.libc_ver()[0] != "glibc":
        yield False
        return
    libc = ctypes.CDLL("libc.so.6")
    kept = bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))  # a C int
    try:
        yield kept
    finally:
        libc.mallopt(_M_MMAP_MAX, 65536)            # glibc's defaults
        libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
        libc.malloc_trim(0)


def cache_sizes(device: str) -> dict[str, int]:
    """Data cache sizes of the device in bytes by level ({'L1': ..., 'L2': ..., 'L3': ...}), {} if unknown."""
    if device == "cuda":
        size = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0)
        return {"L2": int(size)} if size else {}
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    sizes = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind, level, size = ((index / name).read_text().strip() for name in ("type", "level", "size"))
            sizes[f"L{int(level)}"] = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            del sizes[f"L{int(level)}"]
    return sizes


def memory_limit_bytes(cfg: AttentionBenchConfig) -> int:
    if cfg.memory_limit_gb is not None:
        return int(cfg.memory_limit_gb * 2**30)
    if cfg.device == "cuda":
        return torch.cuda.get_device_properties(0).total_memory // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def method_fn(method: str, q, k, v, cfg: AttentionBenchConfig):
    if method == "softmax_naive":
        return lambda: taylor.softmax_attention(q, k, v)
    if method == "softmax_sdpa":
        return lambda: taylor.sdpa_attention(q, k, v)
    if method == "taylor_linear":
        return lambda: taylor.linear_attention(q, k, v, cfg.order, cfg.symmetric)
    return lambda: taylor.linear_attention(q, k, v, cfg.order, cfg.symmetric, causal=True,
                                           chunk_size=cfg.chunk_size)


def operation_counts() -> dict:
    """Operation counts of the derivation (1.1 and 1.4) as numeric functions of (L, D, M), per method. The
    causal method gets the non-causal count: its chunks of fixed size make its work linear in L too, though
    larger, so it is used for ratios between lengths only (its `flops` column stays empty)."""
    import sympy as sp

    from hw2.q1 import derivations as dv

    softmax = sp.lambdify((dv.L, dv.D), dv.softmax_attention_cost()["total"])
    linear = sp.lambdify((dv.L, dv.D, dv.M), dv.linear_attention_cost()["total"])
    return {"softmax_naive": lambda n, d, m: softmax(n, d), "softmax_sdpa": lambda n, d, m: softmax(n, d),
            "taylor_linear": linear, "taylor_causal": linear}


EXACT_COUNTS = ("softmax_naive", "softmax_sdpa", "taylor_linear")
MEMORY_DEGREE = {"softmax_naive": 2, "softmax_sdpa": 2, "taylor_linear": 1, "taylor_causal": 1}


def inputs(length: int, dim: int, device: str, seed: int):
    """Q, K, V of shape (1, L, D) with q^T k of unit standard deviation (values do not change the timing)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, length, dim, generator=g) for _ in range(3))
    return q.mul_(dim**-0.25).to(device), k.mul_(dim**-0.25).to(device), v.to(device)


def check_methods(cfg: AttentionBenchConfig, dim: int) -> dict:
    """The methods agree where they should, on the device in float32: SDPA = naive softmax, linear attention
    = the quadratic kernel form, causal linear = the masked quadratic form (max abs deviation)."""
    q, k, v = inputs(min(cfg.lengths[0], 512) + 3, dim, cfg.device, cfg.seed)  # +3: a ragged last chunk
    deviations = {
        "sdpa_vs_naive": taylor.sdpa_attention(q, k, v) - taylor.softmax_attention(q, k, v),
        "linear_vs_kernel": taylor.linear_attention(q, k, v, cfg.order, cfg.symmetric)
        - taylor.kernel_attention(q, k, v, cfg.order),
        "causal_vs_masked_kernel": taylor.linear_attention(q, k, v, cfg.order, cfg.symmetric, causal=True,
                                                           chunk_size=min(cfg.chunk_size, 64))
        - taylor.kernel_attention(q, k, v, cfg.order, causal=True),
    }
    result = {name: float(d.abs().max()) for name, d in deviations.items()}
    bad = {name: err for name, err in result.items() if not err < 1e-4}
    if bad:
        raise AssertionError(f"attention methods disagree at D={dim}: {bad} (tolerance 1e-4)")
    return result


def plan_cells(cfg: AttentionBenchConfig, counts: dict, limit: int, clock: str) -> tuple[list[dict], dict, dict]:
    """The lengths each method is timed at: L grows until the call expected next (the last call scaled by the
    ratio of operation counts; peak memory scaled by L^2 for softmax, L for Taylor) would pass the time or
    memory limit. Each measured length gets one warm-up call, one timed call (which sets how many calls one
    sample repeats, at least `min_sample_s` of them) and one call that measures peak memory.
    Returns (cells, cut-offs, method checks)."""
    cells, cutoffs, checks = [], {}, {}
    for dim in cfg.dims:
        checks[str(dim)] = check_methods(cfg, dim)
        feat = taylor.feature_dim(dim, cfg.order, cfg.symmetric)
        last = {m: None for m in cfg.methods}  # method -> its last cell
        for length in cfg.lengths:
            if not last:
                break
            q, k, v = inputs(length, dim, cfg.device, cfg.seed)
            for method in list(last):
                prev = last[method]
                if prev is not None:
                    ratio = length / prev["length"]
                    expected_s = prev["first_s"] * counts[method](length, dim, feat) / counts[method](
                        prev["length"], dim, feat)
                    expected_b = prev["peak_memory_bytes"] * ratio**MEMORY_DEGREE[method]
                    cut = ({"kind": "memory", "expected": expected_b, "limit": limit} if expected_b > limit else
                           {"kind": "time", "expected": expected_s, "limit": cfg.time_limit_s}
                           if expected_s > cfg.time_limit_s else None)
                    if cut:
                        cutoffs.setdefault(method, {})[str(dim)] = {"length": length, **cut}
                        del last[method]
                        continue
                fn = method_fn(method, q, k, v, cfg)
                with torch.inference_mode():
                    fn()  # first-call costs (allocation, kernel choice) stay out of every timing
                    first_s = sample_seconds(fn, cfg.device, 1)[clock]
                    peak = peak_memory_bytes(fn, cfg.device)
                calls = max(1, min(10_000, math.ceil(cfg.min_sample_s / max(first_s, 1e-9))))
                last[method] = {"method": method, "dim": dim, "length": length, "feature_dim": feat,
                                "first_s": first_s, "calls": calls, "peak_memory_bytes": peak}
                cells.append(last[method])
                print(f"D={dim:3d} L={length:6d} {method:14s} first call {first_s * 1e3:9.2f} ms, "
                      f"{calls:5d} calls a sample, peak {peak / 2**20:9.1f} MiB", flush=True)
    return cells, cutoffs, checks


def time_rounds(run: store.Run, cfg: AttentionBenchConfig, state: dict) -> None:
    """`repeats` rounds; each takes one sample of every cell, in an order shuffled afresh each round, so a
    burst of load from another process falls on a few random cells of one round instead of on all samples of
    one length, and the median over rounds leaves it out. Checkpointed after every round."""
    tensors = {}
    for cell in state["cells"]:
        key = (cell["dim"], cell["length"])
        if key not in tensors:
            tensors[key] = inputs(cell["length"], cell["dim"], cfg.device, cfg.seed)
    start = time.perf_counter()
    for rnd in range(state["rounds_done"], cfg.repeats):
        order = list(range(len(state["cells"])))
        random.Random(cfg.seed * 1_000_003 + rnd).shuffle(order)
        for i in order:
            cell = state["cells"][i]
            fn = method_fn(cell["method"], *tensors[(cell["dim"], cell["length"])], cfg)
            with torch.inference_mode():
                sample = sample_seconds(fn, cfg.device, cell["calls"])
            state["samples"].append({"method": cell["method"], "dim": cell["dim"], "length": cell["length"],
                                     "round": rnd, "calls": cell["calls"], **sample})
        state["rounds_done"] = rnd + 1
        run.save_checkpoint(state)
        print(f"round {rnd + 1}/{cfg.repeats}: {len(order)} samples, {time.perf_counter() - start:.0f} s so far",
              flush=True)


def cell_rows(state: dict, cfg: AttentionBenchConfig, counts: dict, threads: int) -> list[dict]:
    """One history row per method x D x L: the median of its samples on the run's clock (`time_s`, the
    statistic every fit, crossover and figure uses), their quartiles and extremes, the median wall time,
    page faults, peak memory and the operation count."""
    clock = state["clock"]
    source = "cuda max_memory_allocated" if cfg.device == "cuda" else "torch profiler allocation events"
    samples = {}
    for s in state["samples"]:
        samples.setdefault((s["method"], s["dim"], s["length"]), []).append(s)
    rows = []
    for cell in state["cells"]:
        mine = samples[(cell["method"], cell["dim"], cell["length"])]
        seconds = sorted(s[clock] for s in mine)
        q1, median, q3 = statistics.quantiles(seconds, n=4, method="inclusive")
        count = counts[cell["method"]](cell["length"], cell["dim"], cell["feature_dim"])
        exact = cell["method"] in EXACT_COUNTS
        rows.append({"method": cell["method"], "dim": cell["dim"], "length": cell["length"],
                     "feature_dim": cell["feature_dim"] if cell["method"].startswith("taylor") else None,
                     "time_s": median, "time_q1_s": q1, "time_q3_s": q3, "time_min_s": seconds[0],
                     "time_max_s": seconds[-1], "wall_time_s": statistics.median(s["wall_s"] for s in mine),
                     "samples": len(seconds), "calls_per_sample": cell["calls"],
                     "faults_per_call": statistics.median(s["faults_per_call"] for s in mine),
                     "peak_memory_bytes": cell["peak_memory_bytes"], "memory_source": source,
                     "operations": count, "flops": count if exact else None,
                     "gflops_per_s": count / median / 1e9 if exact else None,
                     "device": cfg.device, "threads": threads})
    return rows


def benchmark(run: store.Run, cfg: AttentionBenchConfig) -> dict:
    """Time and memory of every method x D x L (rows in history.csv, every sample in samples.csv); returns
    the cut-offs, checks, cache sizes and whether the heap was kept."""
    counts = operation_counts()
    state = run.load_checkpoint()
    with heap_kept(cfg.device) as kept:
        if state is None:
            clock, start = timing_clock(cfg.device), time.perf_counter()
            cells, cutoffs, checks = plan_cells(cfg, counts, memory_limit_bytes(cfg), clock)
            print(f"planned {len(cells)} method x D x L cells in {time.perf_counter() - start:.0f} s", flush=True)
            state = {"cells": cells, "cutoffs": cutoffs, "checks": checks, "samples": [], "rounds_done": 0,
                     "clock": clock}
            run.save_checkpoint(state)
        time_rounds(run, cfg, state)
    store.write_csv(run.dir / "samples.csv", state["samples"])
    for row in cell_rows(state, cfg, counts, torch.get_num_threads()):
        run.log_epoch(row)
    return {"cutoffs": state["cutoffs"], "checks": state["checks"], "heap_kept": kept,
            "caches": cache_sizes(cfg.device), "clock": state["clock"]}


def fit_exponent(lengths, values) -> dict:
    """Least-squares slope of log(value) against log(L) over all the points given."""
    lengths, values = list(lengths), list(values)
    if len(lengths) < 2:
        return {"exponent": None, "lengths": [int(n) for n in lengths]}
    slope, intercept = np.polyfit(np.log(lengths), np.log(values), 1)
    return {"exponent": float(slope), "log_coefficient": float(intercept), "lengths": [int(n) for n in lengths]}


def fit_window(lengths, medians, points: int, min_time_s: float) -> tuple[list[int], bool]:
    """The lengths an exponent is fitted on: the `points` longest whose median call takes at least
    `min_time_s` (in shorter calls a fixed per-call cost is a visible share), when at least three do;
    otherwise the `points` longest. Returns (lengths, whether calls under `min_time_s` had to be used)."""
    lengths = [int(n) for n in lengths]
    long_enough = [n for n, t in zip(lengths, medians) if t >= min_time_s]
    if len(long_enough) >= 3:
        return long_enough[-points:], False
    return lengths[-points:], True


def fixed_cost_s(operations, seconds) -> float:
    """a in time = a + b * operations, fitted on relative errors over all lengths of one method and D: the
    per-call cost that does not grow with the work."""
    ops, secs = np.asarray(operations, float), np.asarray(seconds, float)
    design = np.stack([1 / secs, ops / secs], axis=1)
    (a, _), *_ = np.linalg.lstsq(design, np.ones_like(secs), rcond=None)
    return float(a)


def diagnose(rows: list[dict], window: list[int], short_calls: bool, cfg: AttentionBenchConfig,
             caches: dict) -> dict:
    """The time exponent over `window` beside the operation count's own exponent over it (`predicted`),
    and the run's numbers that explain a difference larger than `exponent_tolerance` (`reason`):
      cache       : above the count, and the memory one call uses at the step where the time per operation
                    rises most (between two fitted lengths, `step_*`) passes a cache level of the device;
      fixed_cost  : below the count, and calls under `fit_min_time_s` had to be fitted or the fixed per-call
                    cost is at least a tenth of the shortest fitted call;
      spread      : the samples at some fitted L spread by more than a tenth of their median (IQR / median);
      unexplained : none of these.
    Also: the change of the time per operation across the window (`per_op_ratio`) and the numbers behind
    each reason."""
    by_length = {r["length"]: r for r in rows}
    first = by_length[window[0]]
    time_fit = fit_exponent(window, [by_length[n]["time_s"] for n in window])
    predicted = fit_exponent(window, [by_length[n]["operations"] for n in window])["exponent"]
    fixed = fixed_cost_s([r["operations"] for r in rows], [r["time_s"] for r in rows])
    spreads = {n: (by_length[n]["time_q3_s"] - by_length[n]["time_q1_s"]) / by_length[n]["time_s"] for n in window}
    widest = max(spreads, key=spreads.get)
    per_op = {n: by_length[n]["time_s"] / by_length[n]["operations"] for n in window}
    step = max(zip(window, window[1:]), key=lambda pair: per_op[pair[1]] / per_op[pair[0]], default=None)
    step_peak = by_length[step[1]]["peak_memory_bytes"] if step else 0
    # A cache explains the steepest rise only if one call's memory crosses its size during that step.
    step_start = by_length[step[0]]["peak_memory_bytes"] if step else 0
    passed = [(size, name) for name, size in caches.items() if step_start <= size < step_peak]
    exponent = time_fit["exponent"]
    deviation = None if exponent is None or predicted is None else exponent - predicted
    if deviation is None or abs(deviation) <= cfg.exponent_tolerance:
        reason = None
    elif deviation > 0 and passed:
        reason = "cache"
    elif deviation < 0 and (short_calls or fixed >= 0.1 * first["time_s"]):
        reason = "fixed_cost"
    elif spreads[widest] > 0.1:
        reason = "spread"
    else:
        reason = "unexplained"
    return {"predicted": predicted, "deviation": deviation, "outside": reason is not None, "reason": reason,
            "short_calls": short_calls, "per_op_ratio": per_op[window[-1]] / per_op[window[0]],
            "step_from": step[0] if step else None, "step_to": step[1] if step else None,
            "step_ratio": per_op[step[1]] / per_op[step[0]] if step else None,
            "step_peak_from_bytes": by_length[step[0]]["peak_memory_bytes"] if step else None,
            "step_peak_to_bytes": step_peak or None,
            "cache_passed": max(passed)[1] if passed else None,
            "cache_passed_bytes": max(passed)[0] if passed else None,
            "fixed_cost_s": fixed, "first_time_s": first["time_s"],
            "widest_spread": spreads[widest], "widest_spread_length": widest}


def crossover(lengths, t_softmax, t_linear, fit_softmax: dict, fit_linear: dict) -> dict:
    """Where linear attention becomes faster than softmax attention for good.

    measured     : the ratio t_softmax / t_linear crosses 1 between two measured lengths and stays above:
                   log-log interpolation between them (`between`);
    below_range  : linear is already faster at the shortest common length;
    extrapolated : never faster within the measured range; the two fitted power laws meet at `length`.
    """
    ratio = [s / lin for s, lin in zip(t_softmax, t_linear)]
    result = {"ratio_at_shortest": ratio[0], "ratio_at_longest": ratio[-1], "longest_common": int(lengths[-1])}
    faster_from = next((i for i in range(len(ratio)) if all(r >= 1 for r in ratio[i:])), None)
    if faster_from == 0:
        return {**result, "kind": "below_range", "length": float(lengths[0])}
    if faster_from is not None:
        (l0, r0), (l1, r1) = (lengths[faster_from - 1], ratio[faster_from - 1]), (lengths[faster_from], ratio[faster_from])
        frac = -math.log(r0) / (math.log(r1) - math.log(r0))
        return {**result, "kind": "measured", "between": [int(l0), int(l1)],
                "length": float(math.exp(math.log(l0) + frac * (math.log(l1) - math.log(l0))))}
    b_s, b_l = fit_softmax.get("exponent"), fit_linear.get("exponent")
    if b_s is None or b_l is None or b_s <= b_l:
        return {**result, "kind": "none", "length": None}
    length = math.exp((fit_linear["log_coefficient"] - fit_softmax["log_coefficient"]) / (b_s - b_l))
    return {**result, "kind": "extrapolated", "length": float(length)}


def analyse(history, cfg: AttentionBenchConfig, caches: dict | None = None) -> dict:
    """Exponents per method and D (fitted on medians over `fit_window`, with `diagnose`'s verdict),
    crossovers against each softmax method, and the flop-count L*."""
    from hw2.q1.derivations import crossover_value

    exponents, crossovers, l_star, feature_dims = {}, {}, {}, {}
    for dim in cfg.dims:
        feat = taylor.feature_dim(dim, cfg.order, cfg.symmetric)
        feature_dims[str(dim)] = feat
        l_star[str(dim)] = crossover_value(dim, feat)
        rows = {m: sorted((r for r in history if r["method"] == m and r["dim"] == dim), key=lambda r: r["length"])
                for m in cfg.methods}
        for method, pts in rows.items():
            if len(pts) < 2:
                exponents.setdefault(method, {})[str(dim)] = {
                    "time": {"exponent": None, "lengths": [r["length"] for r in pts]},
                    "memory": {"exponent": None, "lengths": [r["length"] for r in pts]}, "outside": False}
                continue
            window, short = fit_window([r["length"] for r in pts], [r["time_s"] for r in pts], cfg.fit_points,
                                       cfg.fit_min_time_s)
            fitted = [r for r in pts if r["length"] in window]
            exponents.setdefault(method, {})[str(dim)] = {
                "time": fit_exponent(window, [r["time_s"] for r in fitted]),
                "memory": fit_exponent(window, [max(r["peak_memory_bytes"], 1) for r in fitted]),
                **diagnose(pts, window, short, cfg, caches or {})}
        linear = {r["length"]: r["time_s"] for r in rows["taylor_linear"]}
        for method in [m for m in SOFTMAX_METHODS if m in cfg.methods]:
            soft = {r["length"]: r["time_s"] for r in rows[method]}
            common = sorted(set(soft) & set(linear))
            if len(common) < 2:
                continue
            crossovers.setdefault(method, {})[str(dim)] = {
                **crossover(common, [soft[n] for n in common], [linear[n] for n in common],
                            exponents[method][str(dim)]["time"], exponents["taylor_linear"][str(dim)]["time"]),
                "L_star": l_star[str(dim)]}
    return {"exponents": exponents, "crossovers": crossovers, "L_star": l_star, "feature_dims": feature_dims}


# --- approximation error ------------------------------------------------------------------------------------

def error_study(cfg: AttentionBenchConfig) -> list[dict]:
    """Rows of Taylor-vs-softmax error (float64) for every input kind x order x scale of q^T k x trial."""
    g = torch.Generator().manual_seed(cfg.seed)
    rows = []
    for kind in cfg.error_kinds:
        for scale in cfg.error_scales:
            for trial in range(cfg.error_trials):
                q, k, v = taylor.make_inputs(kind, cfg.error_length, cfg.error_dim, scale, g)
                for order in cfg.error_orders:
                    rows.append({"kind": kind, "order": order,
                                 "feature_dim": taylor.feature_dim(cfg.error_dim, order, True),
                                 "target_score_std": scale, "trial": trial,
                                 **taylor.attention_error(q, k, v, order)})
    return rows


def summarise_errors(rows: list[dict], cfg: AttentionBenchConfig) -> dict:
    grid = torch.linspace(-100, 100, 200_001, dtype=torch.float64)
    median = {kind: {str(order): [statistics.median(r["rel_error"] for r in rows if r["kind"] == kind and
                                                    r["order"] == order and r["target_score_std"] == s)
                                  for s in cfg.error_scales] for order in cfg.error_orders}
              for kind in cfg.error_kinds}
    return {
        "dim": cfg.error_dim, "length": cfg.error_length, "scales": list(cfg.error_scales),
        "kinds": list(cfg.error_kinds), "orders": list(cfg.error_orders),
        "median_rel_error": median,
        "min_kernel": {str(o): min(r["min_kernel"] for r in rows if r["order"] == o) for o in cfg.error_orders},
        "min_normaliser": {str(o): min(r["min_normaliser"] for r in rows if r["order"] == o)
                           for o in cfg.error_orders},
        # 1 + t + t^2/2 on t in [-100, 100]: its minimum is 1/2, at t = -1
        "order3_kernel_min_on_grid": float(taylor.taylor_exp(grid, 3).min()),
        "order3_kernel_argmin_on_grid": float(grid[taylor.taylor_exp(grid, 3).argmin()]),
    }


def measure(run: store.Run, cfg: AttentionBenchConfig) -> dict:
    """The whole run: timings, analysis, error study. Returns summary.json's content."""
    torch.manual_seed(cfg.seed)
    used = torch.get_num_threads()
    state = benchmark(run, cfg)
    analysis = analyse(run.history, cfg, state["caches"])
    rows = error_study(cfg)
    store.write_csv(run.dir / "approx_error.csv", rows)
    errors = summarise_errors(rows, cfg)
    report_lines(analysis, errors, cfg)
    return {"device": cfg.device, "threads": used, "timing_statistic": "median of the interleaved samples",
            "repeats": cfg.repeats, "order": cfg.order,
            "symmetric": cfg.symmetric, "methods": list(cfg.methods), "dims": list(cfg.dims),
            **analysis, **state,
            "max_length": {m: {str(d): max((r["length"] for r in run.history if r["method"] == m
                                            and r["dim"] == d), default=None) for d in cfg.dims}
                           for m in cfg.methods},
            "error_study": errors}


def report_lines(analysis: dict, errors: dict, cfg: AttentionBenchConfig) -> None:
    """Print what was measured: exponents, crossovers against L*, and the error study's headline."""
    for method, per_dim in analysis["exponents"].items():
        for dim, fits in per_dim.items():
            t_exp, m_exp = fits["time"]["exponent"], fits["memory"]["exponent"]
            verdict = (f"; operation count L^{fits['predicted']:.2f}, outside by {fits['deviation']:+.2f}: "
                       f"{fits['reason']}" if fits["outside"] else "")
            print(f"{method:14s} D={dim:>3s}: time ~ L^{t_exp:.2f}, peak memory ~ L^{m_exp:.2f} "
                  f"(fit over L in {fits['time']['lengths']}){verdict}" if t_exp is not None else
                  f"{method:14s} D={dim:>3s}: too few lengths to fit")
    for method, per_dim in analysis["crossovers"].items():
        for dim, c in per_dim.items():
            where = f"{c['length']:.0f}" if c["length"] is not None else "none"
            print(f"taylor_linear faster than {method} from L ~ {where} ({c['kind']}); flop-count L* = "
                  f"{c['L_star']:.0f} (D={dim}, M={analysis['feature_dims'][dim]}); speed-up at "
                  f"L={c['longest_common']}: {c['ratio_at_longest']:.2f}x")
    for kind, per_order in errors["median_rel_error"].items():
        values = ", ".join(f"{s:g}: {e:.3f}" for s, e in zip(errors["scales"], per_order.get(str(cfg.order), [])))
        print(f"relative error, K={cfg.order}, {kind} inputs, by std of q^T k: {values}")
    print(f"smallest kernel value by K: {errors['min_kernel']}; 1 + t + t^2/2 >= "
          f"{errors['order3_kernel_min_on_grid']:.4f} (at t = {errors['order3_kernel_argmin_on_grid']:.2f})")


def tables(loaded: store.LoadedRun):
    """Readable views of a finished run: (fitted exponents, crossovers) as pandas DataFrames."""
    import pandas as pd

    summary = loaded.summary
    exponents = pd.DataFrame([
        {"method": m, "D": int(d), "time exponent": f["time"]["exponent"], "operation count": f.get("predicted"),
         "reason": f.get("reason"), "memory exponent": f["memory"]["exponent"], "fitted L": f["time"]["lengths"],
         "max L": summary["max_length"][m][d]}
        for m, per_dim in summary["exponents"].items() for d, f in per_dim.items()])
    crossovers = pd.DataFrame([
        {"against": m, "D": int(d), "M": summary["feature_dims"][d], "measured crossover L": c["length"],
         "kind": c["kind"], "flop-count L*": c["L_star"], "speed-up at longest L": c["ratio_at_longest"]}
        for m, per_dim in summary["crossovers"].items() for d, c in per_dim.items()])
    return exponents, crossovers
