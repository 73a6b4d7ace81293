"""Every experiment's configuration as a typed dataclass, with the homework's values as defaults.

A leaf module: it imports nothing of hw2 and nothing heavy (no torch), so the profile tables (`profiles.py`),
the experiments, the report and the tests can all read it without an import cycle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


class ConfigError(ValueError):
    """A parameter or profile that cannot be used, with a message that says what to do instead."""


# --- Question 1: the attention benchmark ----------------------------------------------------------------------

METHODS = ("softmax_naive", "softmax_sdpa", "taylor_linear", "taylor_causal")
INPUT_KINDS = ("random", "clustered", "opposite")


@dataclass(frozen=True)
class AttentionBenchConfig:
    """The benchmark's sizes; defaults follow the issue (D in {16, 64}, K = 3, symmetric map)."""

    dims: tuple[int, ...] = (16, 64)
    order: int = 3
    symmetric: bool = True
    lengths: tuple[int, ...] = tuple(2**p for p in range(7, 18))  # 128 .. 131,072
    methods: tuple[str, ...] = METHODS
    repeats: int = 9                      # timed samples per method x D x L, one per interleaved round
    min_sample_s: float = 0.01            # a sample repeats a short call until this long (timer resolution)
    time_limit_s: float = 20.0            # a method skips a length whose expected call time passes this
    memory_limit_gb: float | None = None  # None: half the device's memory (RAM on CPU)
    fit_points: int = 4                   # exponents are fitted on at most this many of the longest lengths
    fit_min_time_s: float = 1e-3          # ... whose median call takes at least this (fixed costs stay small)
    exponent_tolerance: float = 0.15      # a fitted exponent further than this from the operation count's
    chunk_size: int = 128                 # causal linear attention
    error_dim: int = 16
    error_length: int = 512
    error_scales: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    error_kinds: tuple[str, ...] = INPUT_KINDS
    error_orders: tuple[int, ...] = (2, 3, 4, 5)
    error_trials: int = 3
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # torch CPU threads during the run (None: torch's default)

    def validate(self) -> "AttentionBenchConfig":
        problems = []
        if not self.dims or min(self.dims) < 1:
            problems.append(f"dims must be positive integers, got {self.dims}")
        if self.order < 2:
            problems.append(f"order (K) must be >= 2, got {self.order}")
        if len(self.lengths) < 2 or list(self.lengths) != sorted(set(self.lengths)) or self.lengths[0] < 1:
            problems.append(f"lengths must be >= 2 increasing positive integers, got {self.lengths}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or "taylor_linear" not in self.methods:
            problems.append(f"methods must include 'taylor_linear' and come from {METHODS}, got {self.methods}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1 or None, got {self.threads}")
        if self.repeats < 3 or self.time_limit_s <= 0 or self.fit_points < 3 or self.min_sample_s < 0:
            problems.append(f"repeats must be >= 3 (a median of fewer is no more robust than one call), "
                            f"fit_points >= 3, time_limit_s > 0 and min_sample_s >= 0; got repeats={self.repeats}, "
                            f"fit_points={self.fit_points}, time_limit_s={self.time_limit_s}, "
                            f"min_sample_s={self.min_sample_s}")
        if self.fit_min_time_s < 0 or self.exponent_tolerance <= 0:
            problems.append(f"fit_min_time_s must be >= 0 and exponent_tolerance > 0, got {self.fit_min_time_s} "
                            f"and {self.exponent_tolerance}")
        if self.memory_limit_gb is not None and self.memory_limit_gb <= 0:
            problems.append(f"memory_limit_gb must be positive or None, got {self.memory_limit_gb}")
        bad_kinds = [k for k in self.error_kinds if k not in INPUT_KINDS]
        if bad_kinds:
            problems.append(f"error_kinds must come from {INPUT_KINDS}, got {bad_kinds}")
        if not self.error_orders or min(self.error_orders) < 1 or self.error_trials < 1:
            problems.append("error_orders must be >= 1 and error_trials >= 1")
        if problems:
            raise ConfigError("invalid Q1 benchmark config: " + "; ".join(problems))
        return self


# --- Question 2: the CNN on OCTMNIST --------------------------------------------------------------------------

@dataclass(frozen=True)
class CNNConfig:
    """One run of Question 2; defaults are the homework's (15 epochs, SGD, batch 8, dropout 0.7)."""

    lr: float = 0.01
    no_maxpool: bool = False
    epochs: int = 15
    batch_size: int = 8
    dropout: float = 0.7
    l2_decay: float = 0.0
    seed: int = 42
    n_train: int | None = None  # None: the whole training split (97,477)
    n_val: int | None = None  # None: the whole validation split (10,832)

    @property
    def label(self) -> str:
        """The skeleton's config string, e.g. 0.01-0.7-0-sgd-False."""
        decay = int(self.l2_decay) if float(self.l2_decay).is_integer() else self.l2_decay
        return f"{self.lr}-{self.dropout}-{decay}-sgd-{self.no_maxpool}"

    @property
    def slug(self) -> str:
        return f"lr{self.lr:g}-{'nomaxpool' if self.no_maxpool else 'maxpool'}-s{self.seed}"


# --- Question 3: the speech recogniser ------------------------------------------------------------------------

DECODERS = ("rnn", "transformer")
N_FRAMES = 2754  # the skeleton pads every clip's features to this many frames
MAX_ENCODER_LAYERS = 12
SHORT_MAX_FRAMES = 352  # every clip of the short-sentence stand-in has at most this many frames


@dataclass(frozen=True)
class ASRConfig:
    """One training run. The defaults are the skeleton's (run cells (a) and (b)) on the full corpus."""

    decoder: str = "rnn"
    corpus: str = "ljspeech"  # LJ Speech 1.1 (its paragraph stand-in without it), or "short": 3-6-word stand-in
    n_encoder_layers: int = 2  # the skeleton's code; the statement's appendix says 4
    epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.15  # warm-up epochs: int(0.15 * epochs)
    decay_fraction: float = 0.85  # decay epochs: int(0.85 * epochs)
    lr_start_factor: float = 0.01  # warm-up starts at lr / 100
    lr_end_factor: float = 0.01  # decay ends at lr / 100
    batch_size: int = 64
    eval_batch_size: int = 16
    label_smoothing: float = 0.1
    seed: int = 42
    n_clips: int = 13_100  # corpus size (LJ Speech 1.1 has 13,100); splits 75 / 5 / 20 %
    audio_frames: int = N_FRAMES  # frames per clip after padding/cropping; fewer changes results
    fused_attention: bool = True  # scaled_dot_product_attention: same values to float rounding
    bf16: bool = False  # bf16 autocast, on CUDA only
    n_attention_clips: int = 4  # validation clips whose cross-attention is saved

    def validate(self) -> "ASRConfig":
        def positive_int(name: str, value, upper: int | None = None) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (upper and value > upper):
                bound = f" and at most {upper}" if upper else ""
                raise ConfigError(f"{name} must be a whole number of at least 1{bound}, got {value!r}")

        if self.corpus not in ("ljspeech", "short"):
            raise ConfigError(f"corpus must be 'ljspeech' or 'short', got {self.corpus!r}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {', '.join(map(repr, DECODERS))}, got {self.decoder!r}")
        positive_int("epochs", self.epochs)
        positive_int("n_encoder_layers", self.n_encoder_layers, MAX_ENCODER_LAYERS)
        positive_int("batch_size", self.batch_size)
        positive_int("eval_batch_size", self.eval_batch_size)
        positive_int("audio_frames", self.audio_frames, N_FRAMES)
        if self.n_clips < 20:
            raise ConfigError(f"n_clips must be at least 20 so that every split has clips, got {self.n_clips}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative whole number, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing!r}")
        return self


# Fields that are the homework's protocol: a run whose value differs is not the skeleton's experiment.
