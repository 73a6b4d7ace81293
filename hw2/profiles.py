"""Profiles and the one place that maps a profile to each experiment's configurations.

`full` is the homework protocol exactly, `quick` the same code on less data and fewer epochs (minutes on a
2-core CPU), `smoke` seconds, for tests. Default: `full` where a CUDA GPU is present, else `quick`;
the `PROFILE` environment variable overrides.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import fields, replace
from pathlib import Path

from hw2.configs import SHORT_MAX_FRAMES, ASRConfig, AttentionBenchConfig, CNNConfig, ConfigError

__all__ = ["ConfigError", "PROFILES", "q1_config", "q2_config", "q3_config", "resolve_profile"]
PROFILES = ("full", "quick", "smoke")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_profile(name: str | None = None) -> str:
    """The profile to use: `name`, else $PROFILE, else full on a GPU machine and quick elsewhere."""
    name = name or os.environ.get("PROFILE") or ("full" if cuda_available() else "quick")
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)} (e.g. PROFILE=quick)")
    return name


def resolve_device(name: str | None = "auto") -> str:
    if name in (None, "", "auto"):
        return "cuda" if cuda_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}: use 'auto', 'cpu' or 'cuda'")
    if name == "cuda" and not cuda_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    return name


def cpu_threads() -> int:
    """Torch threads for a CPU training run: $HW2_THREADS, default 1.

    The models' ops are small (batches of 8 images, or of 64 x 200 features; one token per decoding step),
    so a second thread buys little on an idle machine and, on a shared one, makes every op wait for a
    descheduled thread (measured here under load: an ASR training step 11x, greedy decoding 4x slower);
    sweeps run side by side instead.
    """
    raw = os.environ.get("HW2_THREADS", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"HW2_THREADS must be a whole number of at least 1, got {raw!r}")
    return int(raw)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with `threads` torch threads (None: unchanged), restoring the previous number afterwards.
    Wrap a whole `store.execute`, so the run's env.json records the number it ran with."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def project_root() -> Path:
    """The project folder (the one holding _quarto.yml): the nearest above the current directory, else the one
    this package was installed from. Documents run with the kernel in report/, commands anywhere in the tree."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[1]):
        if (folder / "_quarto.yml").is_file():
            return folder
    return here


def project_path(variable: str, default: str) -> Path:
    """$variable, else `default`; a relative path is taken from the project root, never from the current
    directory, so a command started in report/ writes where one started at the root does."""
    path = Path(os.environ.get(variable) or default)
    return path if path.is_absolute() else project_root() / path


def data_dir() -> Path:
    """Where data sets live: $HW2_DATA_DIR, default `data/` in the project root."""
    return project_path("HW2_DATA_DIR", "data")


def banner(experiment: str, profile: str, data_source: str, device: str) -> str:
    """The line printed at the start of every run."""
    return f"[hw2] {experiment}: profile={profile} data={data_source} device={device}"


# --- Question 2: CNN on OCTMNIST -------------------------------------------------------------------------

Q2_LEARNING_RATES = (0.1, 0.01, 0.001)


def q2_config(profile: str, **overrides):
    """The CNN configuration of a profile, with the homework's values in `full`."""
    base = {
        "full": CNNConfig(),
        "quick": CNNConfig(epochs=6, n_train=24_000),
        "smoke": CNNConfig(epochs=2, n_train=400, n_val=200),
    }[resolve_profile(profile)]
    return replace(base, **overrides)


def q2_plan(profile: str) -> list[dict]:
    """The sweep of the statement: lr in {0.1, 0.01, 0.001} for both variants (6 runs)."""
    return [
        {"lr": lr, "no_maxpool": no_maxpool}
        for no_maxpool in (False, True)
        for lr in Q2_LEARNING_RATES
    ]


# --- Question 1: attention benchmark ------------------------------------------------------------------------

def q1_config(profile: str, **overrides):
    """The attention benchmark of a profile. `full` grows L until the quadratic methods run out of time or
    memory on the machine; `quick` is a minute or two on a 2-core CPU; `smoke` seconds. quick and smoke time
    one thread: on a busy small CPU a multi-threaded op waits for every worker to be scheduled, which added
    stalls of ~100 ms (a scheduler time slice) to sub-millisecond calls in our measurements. quick's lengths
    run to 65,536 because the Taylor methods' calls stay near a fixed cost of about 0.3 ms (D = 16) up to
    L ~ 2,000; its 0.5 s limit stops the softmax methods at 4,096 or 8,192, so a round takes a few seconds."""
    base = {
        "full": AttentionBenchConfig(),
        "quick": AttentionBenchConfig(lengths=tuple(2**p for p in range(7, 17)), repeats=7, time_limit_s=0.5,
                                      error_length=256, error_trials=2, threads=1),
        "smoke": AttentionBenchConfig(lengths=(32, 64, 128), repeats=3, min_sample_s=0.001, fit_points=3,
                                      fit_min_time_s=0.0, error_length=32, error_scales=(0.5, 2.0),
                                      error_orders=(2, 3), error_trials=1, threads=1),
    }[resolve_profile(profile)]
    try:
        cfg = replace(base, **overrides)
    except TypeError as exc:  # an unknown field name
        raise ConfigError(f"Q1 config: {exc}; the fields are {', '.join(f.name for f in fields(base))}") from None
    return cfg.validate()


def q1_plan(profile: str) -> list[dict]:
    """One benchmark run, on the machine's default device (the notebook adds the profile)."""
    resolve_profile(profile)
    return [{"device": "auto"}]


# --- Question 3: speech recognition on LJ Speech ---------------------------------------------------------

Q3_DECODERS = ("rnn", "transformer")


def q3_config(profile: str, **overrides):
    """The ASR configuration of a profile: the skeleton's protocol on LJ Speech's 13,100 clips in `full`.

    `quick` trains on the short-sentence stand-in (3-6 words, at most 352 frames a clip, so nothing is
    cropped) with batches of 32: measured here, both decoders start to listen only after several hundred
    optimizer steps, and 15 epochs of 4,500 clips in batches of 32 (2,115 steps) take about a quarter of an
    hour for both decoders side by side on 2 cores. Each field that differs from `full` is a deviation from
    the protocol, printed in the run banner and stated in the report (`q3_asr.protocol_deviations`).
    """
    base = {
        "full": ASRConfig(),
        "quick": ASRConfig(corpus="short", n_clips=6000, audio_frames=SHORT_MAX_FRAMES, batch_size=32),
        "smoke": ASRConfig(corpus="short", n_clips=40, audio_frames=SHORT_MAX_FRAMES, epochs=2, batch_size=8,
                           n_attention_clips=2),
    }[resolve_profile(profile)]
    return replace(base, **overrides)


def q3_plan(profile: str) -> list[dict]:
    """Run cells (a) and (b) of the notebook: one run per decoder."""
    return [{"decoder": decoder} for decoder in Q3_DECODERS]
