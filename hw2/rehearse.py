"""`python -m hw2 rehearse` (`make rehearse`): the `full` profile rehearsed on this machine before a GPU sees it.

Every experiment of the `full` profile runs for a few optimizer steps on full-size inputs, through the same
runner, notebooks, checkpoints, decoding and report helpers as a real run: Question 3 on a few hundred clips
of the paragraph stand-in padded to 2,754 frames in batches of 64, Question 2 in batches of 8 over the whole
training split, Question 1 at the first lengths of the full grid. Question 3's runs are stopped by Ctrl-C after
their first checkpoint and resumed, as a user's would be. The runs go to a scratch store (`results-rehearsal/`,
never the report's); their configurations say what the rehearsal changed (`HW2_REHEARSAL`, read by each
question's `config.py`), so their keys are their own. Downloads are skipped: the stand-ins stand in.

It then prints, from what the runs measured, each run's step time and its projected wall time for the whole
`full` profile on this machine, and the memory the `full` profile needs: host memory for the waveforms, GPU
memory for the cached features and a training step, and what a 16 GB GPU with 12 GB of host memory (Colab's
free tier) and 16 GB with 30 GB (Kaggle) get.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from hw2.engine.errors import UserError
from hw2.engine.paths import data_dir, project_root, results_dir
from hw2.engine.profiles import REHEARSAL_VARIABLE
from hw2.engine.registry import by_question
from hw2.engine.runner import Interrupted, run_question

SIZES = ("few-steps", "one-step")  # the rehearsals each question's config.py knows (REHEARSALS)
STORE = "results-rehearsal"
GB = 1e9
# The machines students train on: (name, GPU memory, host memory), in bytes.
MACHINES = (("a 16 GB GPU with 12 GB of host memory (Colab's free tier)", 16 * GB, 12 * GB),
            ("a 16 GB GPU with 30 GB of host memory (Kaggle)", 16 * GB, 30 * GB))


@contextlib.contextmanager
def rehearsal_environment(size: str, store: Path):
    """The variables the rehearsal runs under, in this process and the notebooks' kernels; restored after."""
    values = {REHEARSAL_VARIABLE: size, "HW2_RESULTS_DIR": str(store), "HW2_OFFLINE": "1", "PROFILE": "full",
              "HW2_STALE": ""}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def ctrl_c_after_first_checkpoint(experiment: str):
    """Ctrl-C, as a user presses it, once every run of `experiment` in progress has saved a checkpoint (and only
    while the runner's own handler is installed): the runner stops, the runs keep their checkpoints, the next call
    resumes them."""
    folder, done = results_dir() / experiment, threading.Event()

    def watch():
        while not done.wait(0.2):
            partial = list(folder.glob("*.partial"))
            if partial and all((p / "checkpoint.pt").exists() for p in partial) and \
                    signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
                os.kill(os.getpid(), signal.SIGINT)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def run_all(jobs: int) -> dict[str, float]:
    """Each question's runs through the runner (Question 3 interrupted once and resumed); their wall seconds."""
    seconds = {}
    for question in ("q1", "q2", "q3"):
        start = time.perf_counter()
        if question == "q3":
            try:
                with ctrl_c_after_first_checkpoint(by_question("q3").name):
                    run_question(question, "full", jobs)
                raise UserError("Question 3's runs finished before the rehearsal could interrupt them")
            except Interrupted as stop:
                print(f"[rehearse] {stop}; resuming", flush=True)
        if run_question(question, "full", jobs) != 0:
            raise UserError(f"the rehearsal's {question} runs failed (see above)")
        seconds[question] = time.perf_counter() - start
    return seconds


# --- projections from the runs' records ----------------------------------------------------------------------

def _wall(run) -> float:
    return float(run.env["wall_time_s"])


def project_q1(q1) -> dict:
    """The benchmark's run: its measured wall time plus, for the full grid's further lengths, each method's
    calls (a warm-up, a first call, a memory call and `repeats` samples) at the time its longest measured
    length took, scaled by the operation count, while that stays within the time and memory limits."""
    from hw2.q1 import benchmark, config, taylor

    full = config.AttentionBenchConfig()
    counts, limit = benchmark.operation_counts(), benchmark.memory_limit_bytes(full)
    extra = 0.0
    for (method, dim), rows in q1.history.groupby(["method", "dim"]):
        last = rows.sort_values("length").iloc[-1]
        feat = taylor.feature_dim(int(dim), full.order, full.symmetric)
        for length in (n for n in full.lengths if n > last["length"]):
            scale = counts[method](length, int(dim), feat) / counts[method](int(last["length"]), int(dim), feat)
            seconds = float(last["time_s"]) * scale
            memory = float(last["peak_memory_bytes"]) * (length / last["length"]) ** benchmark.MEMORY_DEGREE[method]
            if seconds > full.time_limit_s or memory > limit:
                break
            extra += (3 + full.repeats) * max(seconds, full.min_sample_s)
    return {"step_s": None, "full_s": _wall(q1.run) + extra}


def project_q2(runs) -> dict:
    """Per variant (its learning rates train together): the measured step time of the last epoch times the full
    split's steps, plus its validation, for 15 epochs, plus what the run spent outside its epochs."""
    from hw2.q2 import config

    full = config.CNNConfig()
    out = {}
    for run in runs:
        last = run.history.iloc[-1]
        step_s = float(last["train_seconds"]) / run.summary["steps_per_epoch"]
        validation_s = float(last["seconds"] - last["train_seconds"])
        outside_s = _wall(run) - float(run.history["seconds"].sum())
        steps = math.ceil(run.summary["n_train"] / full.batch_size)
        variant = "no max-pooling" if run.config["config"]["no_maxpool"] else "max-pooling"
        out[variant] = {"step_s": step_s, "full_s": outside_s + full.epochs * (steps * step_s + validation_s)}
    return out


def full_split_sizes() -> dict[str, int]:
    """Clips per split of LJ Speech 1.1."""
    from hw2.q3 import ljspeech

    return {split: len(r) for split, r in ljspeech.split_ranges(ljspeech.REAL_CLIPS).items()}


def project_q3(q3) -> dict:
    """Per decoder: the measured step time of the resumed epoch; the full profile's 15 epochs of 154 steps, its
    655 validation and 2,620 test clips at the rates measured per clip, and its features at the measured time per
    clip (per batch for the splits that this machine's cache would not hold, `cached_splits`)."""
    from hw2.q3 import config, train

    full, sizes = config.ASRConfig(), full_split_sizes()
    cached = train.cached_splits({s: train.feature_bytes(n, full.audio_frames) for s, n in sizes.items()},
                                 train.HOST_FEATURE_CACHE)
    out = {}
    for name, decoder in q3.decoders.items():
        run, summary = decoder.run, decoder.run.summary
        last = run.history.iloc[-1]
        step_s = float(last["train_seconds"]) / summary["steps_per_epoch"]
        clips = summary["n_train"] + summary["n_validation"] + summary["n_test"]
        feature_s = float(summary["feature_seconds"]) / clips  # every split was cached: loading + features
        validation_s = float(last["seconds"] - last["train_seconds"]) / summary["n_validation"]
        test_s = float(summary["test_seconds"]) / summary["n_test"]
        per_batch = {s: 0.0 if cached[s] else feature_s for s in sizes}
        steps = math.ceil(sizes["train"] / full.batch_size)
        epoch_s = (steps * (step_s + full.batch_size * per_batch["train"])
                   + sizes["validation"] * (validation_s + per_batch["validation"]))
        full_s = (sum(sizes[s] for s in sizes if cached[s]) * feature_s + full.epochs * epoch_s
                  + sizes["test"] * (test_s + per_batch["test"]))
        out[name] = {"step_s": step_s, "full_s": full_s, "cached": cached}
    return out


# --- memory ---------------------------------------------------------------------------------------------------

def corpus_samples(corpus: Path) -> tuple[int, int]:
    """(samples, clips) of a corpus's 16-bit wav files, from their sizes (44-byte headers)."""
    sizes = [p.stat().st_size - 44 for p in (corpus / "wavs").glob("*.wav")]
    return sum(sizes) // 2, len(sizes)


def step_peak_cpu(decoder: str, batches: tuple[int, int]) -> float:
    """The bytes one fp32 training step at the protocol's sizes takes, from torch's allocation events on the CPU
    at two small batch sizes, extended linearly to a batch of 64 (activations grow with the batch; the weights,
    gradients and AdamW state do not). A GPU's kernels allocate somewhat differently."""
    import torch

    from hw2.q1.benchmark import peak_memory_bytes
    from hw2.q3 import config, text, train
    from hw2.q3.asr import build_asr_model
    from hw2.q3.audio import log_mel

    cfg = config.ASRConfig(decoder=decoder)
    peaks = []
    for rows in batches:
        with torch.random.fork_rng():
            model = build_asr_model(decoder, cfg.n_encoder_layers, fused=cfg.fused_attention)
            optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            longest = (cfg.audio_frames - 1) * 160
            waves, tokens = torch.full((rows, longest), 0.01), torch.zeros(rows, text.MAX_LEN, dtype=torch.long)

            def step():
                audio = log_mel(waves, [longest] * rows, n_frames=cfg.audio_frames)
                train._loss(model(audio, tokens[:, :-1]), tokens[:, 1:], cfg).backward()
                optimizer.step()

            peaks.append(peak_memory_bytes(step, "cpu"))
    (b1, b2), (p1, p2) = batches, peaks
    return p1 + (p2 - p1) / (b2 - b1) * (cfg.batch_size - b1)


def memory_lines(corpus: Path, step_bytes: float) -> list[str]:
    from hw2.q3 import config, train

    full, sizes = config.ASRConfig(), full_split_sizes()
    samples, clips = corpus_samples(corpus)
    per_clip = samples / clips
    total = per_clip * sum(sizes.values())
    source = "this corpus" if clips == sum(sizes.values()) else f"the {clips} rehearsal clips' mean length"
    features = {s: train.feature_bytes(n, full.audio_frames) for s, n in sizes.items()}
    lines = [f"host: waveforms {total * 2 / GB:.1f} GB as int16 ({total * 4 / GB:.1f} GB as float32 before), from "
             f"{source} times {sum(sizes.values()):,} clips",
             "GPU: cached fp32 features " + ", ".join(f"{s} {b / GB:.2f} GB" for s, b in features.items())
             + f"; a training step at batch {full.batch_size} {step_bytes / GB:.2f} GB (measured on the CPU; on "
             f"CUDA each run measures its own step and evaluation chunk before it caches features)"]
    for name, gpu, host in MACHINES:
        budget = max(0, int(gpu - step_bytes - train.GPU_RESERVE))
        cached = train.cached_splits(features, budget)
        waves = {s: per_clip * n * 2 for s, n in sizes.items()}
        kept = sum(waves[s] for s in sizes if not cached[s])
        peak = kept + max([waves[s] for s in sizes if cached[s]], default=0)  # a cached split's, while loading
        says = ", ".join(f"{s} {'cached' if cached[s] else 'per batch'}" for s in sizes)
        lines.append(f"{name}: features {says}; waveforms on the host {kept / GB:.1f} GB during training, "
                     f"{peak / GB:.1f} GB at most while loading ({'fits' if peak < host else 'does NOT fit'} "
                     f"beside the process itself)")
    return lines


# --- the command --------------------------------------------------------------------------------------------------

def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def rehearse(size: str = "few-steps", store: Path | None = None, jobs: int = 2) -> list[str]:
    """Run the rehearsal; return the lines it prints at the end (also printed)."""
    from hw2.q1.report import Q1Results
    from hw2.q2.report import Q2Results
    from hw2.q3 import experiment as q3_experiment
    from hw2.q3.report import Q3Results

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    store = store or project_root() / STORE
    if store.exists():  # scratch: every rehearsal measures afresh
        print(f"[rehearse] removing the previous rehearsal's runs in {store}", flush=True)
        shutil.rmtree(store)
    start = time.perf_counter()
    with rehearsal_environment(size, store):
        print(f"[rehearse] the full profile, {size}, into {store} (data in {data_dir()}; no downloads)", flush=True)
        seconds = run_all(jobs)
        # The report's helpers read the runs back, as a chapter would; code edited while the rehearsal ran (which
        # makes its first runs stale) leaves them readable, as HW2_STALE=use does for a report.
        os.environ["HW2_STALE"] = "use"
        q1, q2, q3 = Q1Results("full"), Q2Results("full"), Q3Results("full")
        q1.exponent_table("tbl-rehearsal", "Rehearsal."), q2.table("tbl-rehearsal", "Rehearsal.")
        q3.test_table("tbl-rehearsal", "Rehearsal.")
        projected = {"q1 benchmark": project_q1(q1),
                     **{f"q2 {k}": v for k, v in project_q2(q2.runs[::len(q2.learning_rates)]).items()},
                     **{f"q3 {k}": v for k, v in project_q3(q3).items()}}
        corpus = q3_experiment.corpus_dir("full")
        steps = (1, 2) if size == "one-step" else (2, 4)
        step_bytes = max(step_peak_cpu(d, steps) for d in q3.decoders)
    lines = [f"rehearsal ({size}) done in {_minutes(time.perf_counter() - start)}: "
             + ", ".join(f"{q} {_minutes(s)}" for q, s in seconds.items()),
             "projected wall time of the full profile on this machine (CPU, one thread a run):"]
    for name, p in projected.items():
        step = "" if p["step_s"] is None else f"{p['step_s'] * 1e3:.2f} ms a step; " if p["step_s"] < 1 else \
            f"{p['step_s']:.1f} s a step; "
        lines.append(f"  {name}: {step}{_minutes(p['full_s'])}")
    lines += memory_lines(corpus, step_bytes)
    for line in lines:
        print(f"[rehearse] {line}", flush=True)
    return lines


def main(size: str, store: str | None, jobs: int) -> int:
    try:
        rehearse(size, Path(store).resolve() if store else None, jobs)
    except UserError as exc:  # a failed run has said why above; the line says which
        print(f"hw2: {exc}", file=sys.stderr)
        return 1
    return 0

