"""Question 1 measured: softmax attention (naive and fused SDPA) against Taylor linear attention.

One run (`run`) measures, for every D in `dims` and L in `lengths`, each method's
  wall time  : seconds per call after one warm-up call, over at least `repeats` calls (more for short calls,
               until a quarter second has run; CUDA calls are synchronised): median `time_s`, fastest
               `time_min_s`;
  peak memory: the most bytes the call held at once through torch's allocator, above what was allocated
               before it (inputs excluded, the output included). On CUDA this is the caching allocator's
               `max_memory_allocated`; on CPU it is the running sum of every allocation and free that the
               torch profiler records (`profile_memory=True`) during one extra, untimed call, so it counts
               exactly the tensors torch allocates, not interpreter or allocator overhead.
The fits and crossovers use the fastest call (`time_min_s`): other processes only ever add time to a call,
so the minimum is the least disturbed estimate on a shared machine; the median is kept beside it.
A method stops growing L once its fastest call takes longer than `time_limit_s` (that length is still
recorded) or once its peak memory, extrapolated quadratically from the previous length, would pass the
memory limit (default: half the device's memory).
It then fits the growth exponent of time and memory on a log-log scale, finds the measured crossover length
where Taylor linear attention becomes faster than each softmax method, and sets it beside the flop-count L*
of the derivation. Finally it measures the approximation error of Taylor attention against softmax attention
as the scale of q^T k grows, on random and structured inputs, for several orders K.

Run folder: history.csv (one row per method x D x L), approx_error.csv (one row per input kind x K x scale
x trial), summary.json (exponents, crossovers, L*, M, cut-offs, checks, error-study summary).
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time

import numpy as np
import torch

from hw2 import store
from hw2.attention import taylor
from hw2.configs import AttentionBenchConfig, ConfigError
from hw2.profiles import banner, resolve_device, resolve_profile, torch_threads

EXPERIMENT = "q1_attention"
NOTEBOOK = "analysis/q1_attention.ipynb"
DATA_SOURCE = "synthetic"
SOFTMAX_METHODS = ("softmax_naive", "softmax_sdpa")


# --- the runner's interface ---------------------------------------------------------------------------------

def prepare_data(profile: str) -> str:
    """The benchmark draws random tensors: there is no data set to prepare."""
    return DATA_SOURCE


def plan(profile: str) -> list[dict]:
    from hw2.profiles import q1_plan

    return q1_plan(profile)


def config(profile: str, device: str = "auto") -> AttentionBenchConfig:
    from hw2.profiles import q1_config

    return q1_config(profile, device=resolve_device(device))


def spec(params: dict, profile: str, data_source: str) -> store.RunSpec:
    cfg = config(profile, params.get("device", "auto"))
    return store.RunSpec.create(EXPERIMENT, cfg, profile, data_source, slug=f"attention-{cfg.device}")


def validate_params(profile, device) -> tuple[str, str]:
    """The notebook's parameters checked: (profile, device) resolved, or a ConfigError saying what to pass."""
    if profile is not None and not isinstance(profile, str):
        raise ConfigError(f"profile must be a string (full, quick or smoke) or None, got {profile!r}")
    if not isinstance(device, str):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return resolve_profile(profile), resolve_device(device)


def specs(params: dict, profile: str, data_source: str) -> list[store.RunSpec]:
    """The runs a notebook execution with `params` writes: one."""
    return [spec(params, profile, data_source)]


def run(profile: str | None = None, device: str = "auto") -> store.LoadedRun:
    """What the notebook calls: produce (or reuse) the run of this profile and device."""
    profile, device = validate_params(profile, device)
    cfg = config(profile, device)
    print(banner(EXPERIMENT, profile, DATA_SOURCE, cfg.device), flush=True)
    with torch_threads(cfg.threads):
        return store.execute(spec({"device": cfg.device}, profile, DATA_SOURCE), lambda r: measure(r, cfg),
                             cfg.device)


# --- measurement --------------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def call_times(fn, device: str, repeats: int, time_limit_s: float, min_total_s: float = 0.25,
               max_calls: int = 100) -> list[float]:
    """Seconds per call: one warm-up, then at least `repeats` timed calls, more (up to `max_calls`) until
    `min_total_s` of timed calls have run, as timeit does for short calls; just the warm-up if it ran past
    the time limit."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    warmup = time.perf_counter() - start
    if warmup > time_limit_s:
        return [warmup]
    times = []
    while len(times) < repeats or (sum(times) < min_total_s and len(times) < max_calls):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


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


def flop_counts():
    """Operation counts of the derivation (1.1 and 1.4) as numeric functions of (L, D[, M])."""
    import sympy as sp

    from hw2.attention import derivations as dv

    softmax = sp.lambdify((dv.L, dv.D), dv.softmax_attention_cost()["total"])
    linear = sp.lambdify((dv.L, dv.D, dv.M), dv.linear_attention_cost()["total"])
    return {"softmax_naive": lambda n, d, m: softmax(n, d), "softmax_sdpa": lambda n, d, m: softmax(n, d),
            "taylor_linear": lambda n, d, m: linear(n, d, m)}


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


def benchmark(run: store.Run, cfg: AttentionBenchConfig) -> dict:
    """Time and memory of every method x D x L (rows in history.csv); returns the cut-offs and checks."""
    state = run.load_checkpoint() or {"done_dims": [], "cutoffs": {}, "checks": {}}
    limit = memory_limit_bytes(cfg)
    flops = flop_counts()
    source = "cuda max_memory_allocated" if cfg.device == "cuda" else "torch profiler allocation events"
    for dim in cfg.dims:
        if dim in state["done_dims"]:
            continue
        state["checks"][str(dim)] = check_methods(cfg, dim)
        feat = taylor.feature_dim(dim, cfg.order, cfg.symmetric)
        active = {m: None for m in cfg.methods}  # method -> (length, peak bytes) of its last measurement
        for length in cfg.lengths:
            q, k, v = inputs(length, dim, cfg.device, cfg.seed)
            for method in [m for m in cfg.methods if m in active]:
                last = active[method]
                if last is not None and last[1] * (length / last[0])**2 > limit:
                    state["cutoffs"].setdefault(method, {})[str(dim)] = {
                        "length": length, "reason": f"memory: about {last[1] * (length / last[0])**2 / 2**30:.1f} "
                                                    f"GiB expected, limit {limit / 2**30:.1f} GiB"}
                    del active[method]
                    continue
                fn = method_fn(method, q, k, v, cfg)
                with torch.inference_mode():
                    times = call_times(fn, cfg.device, cfg.repeats, cfg.time_limit_s)
                    peak = peak_memory_bytes(fn, cfg.device)
                median = statistics.median(times)
                count = flops[method](length, dim, feat) if method in flops else None
                row = {"method": method, "dim": dim, "length": length,
                       "feature_dim": feat if method.startswith("taylor") else None,
                       "time_s": median, "time_min_s": min(times), "time_max_s": max(times), "calls": len(times),
                       "peak_memory_bytes": peak, "memory_source": source,
                       "flops": count, "gflops_per_s": count / min(times) / 1e9 if count else None,
                       "device": cfg.device, "threads": torch.get_num_threads()}
                run.log_epoch(row)
                print(f"D={dim:3d} L={length:6d} {method:14s} {min(times) * 1e3:10.2f} ms (median "
                      f"{median * 1e3:.2f} ms, {len(times)} calls)  peak {peak / 2**20:9.1f} MiB", flush=True)
                active[method] = (length, peak)
                if min(times) > cfg.time_limit_s:
                    state["cutoffs"].setdefault(method, {})[str(dim)] = {
                        "length": length, "reason": f"time: {min(times):.1f} s per call > {cfg.time_limit_s} s"}
                    del active[method]
            del q, k, v
        state["done_dims"].append(dim)
        run.save_checkpoint(state)
    return state


def fit_exponent(lengths, values, points: int) -> dict:
    """Least-squares slope of log(value) against log(L) over the `points` longest lengths."""
    lengths, values = list(lengths)[-points:], list(values)[-points:]
    if len(lengths) < 2:
        return {"exponent": None, "lengths": lengths}
    slope, intercept = np.polyfit(np.log(lengths), np.log(values), 1)
    return {"exponent": float(slope), "log_coefficient": float(intercept), "lengths": [int(n) for n in lengths]}


def crossover(lengths, t_softmax, t_linear, fit_softmax: dict, fit_linear: dict) -> dict:
    """Where linear attention becomes faster than softmax attention for good.

    measured     : the ratio t_softmax / t_linear crosses 1 between two measured lengths and stays above:
                   log-log interpolation between them;
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
        return {**result, "kind": "measured",
                "length": float(math.exp(math.log(l0) + frac * (math.log(l1) - math.log(l0))))}
    b_s, b_l = fit_softmax.get("exponent"), fit_linear.get("exponent")
    if b_s is None or b_l is None or b_s <= b_l:
        return {**result, "kind": "none", "length": None}
    length = math.exp((fit_linear["log_coefficient"] - fit_softmax["log_coefficient"]) / (b_s - b_l))
    return {**result, "kind": "extrapolated", "length": float(length)}


def analyse(history, cfg: AttentionBenchConfig) -> dict:
    """Exponents per method and D, crossovers against each softmax method, and the flop-count L*."""
    from hw2.attention.derivations import crossover_value

    exponents, crossovers, l_star, feature_dims = {}, {}, {}, {}
    for dim in cfg.dims:
        feat = taylor.feature_dim(dim, cfg.order, cfg.symmetric)
        feature_dims[str(dim)] = feat
        l_star[str(dim)] = crossover_value(dim, feat)
        rows = {m: sorted((r["length"], r["time_min_s"], r["peak_memory_bytes"]) for r in history
                          if r["method"] == m and r["dim"] == dim) for m in cfg.methods}
        for method, pts in rows.items():
            exponents.setdefault(method, {})[str(dim)] = {
                "time": fit_exponent([p[0] for p in pts], [p[1] for p in pts], cfg.fit_points),
                "memory": fit_exponent([p[0] for p in pts], [max(p[2], 1) for p in pts], cfg.fit_points)}
        linear = {p[0]: p[1] for p in rows["taylor_linear"]}
        for method in [m for m in SOFTMAX_METHODS if m in cfg.methods]:
            soft = {p[0]: p[1] for p in rows[method]}
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
    analysis = analyse(run.history, cfg)
    rows = error_study(cfg)
    store.write_csv(run.dir / "approx_error.csv", rows)
    errors = summarise_errors(rows, cfg)
    report_lines(analysis, errors, cfg)
    return {"device": cfg.device, "threads": used, "timing_statistic": "time_min_s",
            "order": cfg.order,
            "symmetric": cfg.symmetric, "methods": list(cfg.methods), "dims": list(cfg.dims),
            **analysis, "cutoffs": state["cutoffs"], "checks": state["checks"],
            "max_length": {m: {str(d): max((r["length"] for r in run.history if r["method"] == m
                                            and r["dim"] == d), default=None) for d in cfg.dims}
                           for m in cfg.methods},
            "error_study": errors}


def report_lines(analysis: dict, errors: dict, cfg: AttentionBenchConfig) -> None:
    """Print what was measured: exponents, crossovers against L*, and the error study's headline."""
    for method, per_dim in analysis["exponents"].items():
        for dim, fits in per_dim.items():
            t_exp, m_exp = fits["time"]["exponent"], fits["memory"]["exponent"]
            print(f"{method:14s} D={dim:>3s}: time ~ L^{t_exp:.2f}, peak memory ~ L^{m_exp:.2f} "
                  f"(fit over L in {fits['time']['lengths']})" if t_exp is not None else
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
        {"method": m, "D": int(d), "time exponent": f["time"]["exponent"], "memory exponent": f["memory"]["exponent"],
         "max L": summary["max_length"][m][d]}
        for m, per_dim in summary["exponents"].items() for d, f in per_dim.items()])
    crossovers = pd.DataFrame([
        {"against": m, "D": int(d), "M": summary["feature_dims"][d], "measured crossover L": c["length"],
         "kind": c["kind"], "flop-count L*": c["L_star"], "speed-up at longest L": c["ratio_at_longest"]}
        for m, per_dim in summary["crossovers"].items() for d, c in per_dim.items()])
    return exponents, crossovers


def find_run(profile: str | None = None, device: str = "auto") -> store.LoadedRun:
    """The finished run of a profile and device for the report, or a RunError naming `make runs-q1`."""
    profile, device = validate_params(profile, device)
    return store.find(spec({"device": device}, profile, DATA_SOURCE), "runs-q1")
