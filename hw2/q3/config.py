"""Question 3: the configuration as a typed dataclass with the homework's values as defaults, each profile's
configuration and the profile's plan. Outside the code identity: a run's configuration enters its key by value.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from hw2.engine.errors import ConfigError
from hw2.engine.machine import native_bf16, resolve_device
from hw2.engine.profiles import rehearsal_overrides, resolve_profile
from hw2.q3.constants import DECODERS, MAX_ENCODER_LAYERS, N_FRAMES, SHORT_MAX_FRAMES


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
    bf16: bool = False  # bf16 autocast (weights, optimizer state and loss stay fp32); the protocol is fp32
    n_attention_clips: int = 4  # validation clips whose cross-attention is saved
    # Optimizer steps per epoch (None: every batch); only `python -m hw2 rehearse` sets it. In the run key only
    # when set (hw2.engine.store.KEY_IF_SET), so runs that leave it keep their keys.
    max_steps: int | None = field(default=None, metadata={"key": "if set"})

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
        if self.max_steps is not None:
            positive_int("max_steps", self.max_steps)
        if self.n_clips < 20:
            raise ConfigError(f"n_clips must be at least 20 so that every split has clips, got {self.n_clips}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative whole number, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing!r}")
        return self


PRECISIONS = ("auto", "fp32", "bf16")


def use_bf16(profile: str, device: str | None = "auto") -> bool:
    """Whether a profile trains with bf16 autocast: as $HW2_PRECISION says (fp32 or bf16), else (auto) only in
    `quick` and only on a device with bf16 in hardware, where it is faster (measured on the CPU, one thread, a
    quick training step: 1.55x on an AMD EPYC with AVX512-BF16, 2.0x on an Intel Xeon with AMX). `full` is the
    protocol, fp32; where bf16 would be emulated it is slower than fp32."""
    choice = os.environ.get("HW2_PRECISION") or "auto"
    if choice not in PRECISIONS:
        raise ConfigError(f"HW2_PRECISION must be one of {', '.join(PRECISIONS)}, got {choice!r} "
                          "(auto: bf16 autocast in the quick profile where the device computes bf16 natively)")
    if choice != "auto":
        return choice == "bf16"
    return resolve_profile(profile) == "quick" and native_bf16(resolve_device(device))


def for_profile(profile: str, device: str | None = "auto", **overrides):
    """The ASR configuration of a profile: the skeleton's protocol on LJ Speech's 13,100 clips in `full`.

    `quick` trains on the short-sentence stand-in (3-6 words, at most 352 frames a clip, so nothing is
    cropped) for 6 epochs in batches of 16 (1,692 optimizer steps). Both decoders start to listen only after
    several hundred optimizer steps, so for the same computation smaller batches learn more; and the
    skeleton's schedule has no warm-up epoch at 6 epochs (int(0.15 * 6) = 0), where at 7 or 8 the first epoch
    runs at lr / 100. Measured (AMD EPYC, bf16), test Damerau-Levenshtein of the Transformer decoder, which
    learns more slowly: 0.9926 after 6 epochs of 16, 0.9926 after 8 of 16, 0.8828 after 8 of 32 (the same
    computation as 8 of 16) and 0.9937 after 15 of 32 (the former recipe, 2.5 times the computation of 6 of
    16); the LSTM decoder's: 0.9954 after 6 of 16, 0.9967 after 8 of 16. On 2 cores both decoders train side
    by side in about 6 minutes.

    Each field that differs from `full` is a deviation from the protocol, printed in the run banner and stated
    in the report (`protocol_deviations`); so is `bf16`, which `quick` turns on where the device computes
    bf16 natively (`use_bf16`, for `device`).
    """
    base = {
        "full": ASRConfig(),
        "quick": ASRConfig(corpus="short", n_clips=6000, audio_frames=SHORT_MAX_FRAMES, epochs=6, batch_size=16),
        "smoke": ASRConfig(corpus="short", n_clips=40, audio_frames=SHORT_MAX_FRAMES, epochs=2, batch_size=8,
                           n_attention_clips=2),
    }[resolve_profile(profile)]
    if resolve_profile(profile) == "full":
        base = replace(base, **rehearsal_overrides(REHEARSALS))
    if "bf16" not in overrides:
        overrides["bf16"] = use_bf16(profile, device)
    if overrides["bf16"] and resolve_device(device) == "cpu":
        # Under bf16 autocast on the CPU, torch's fused (flash) attention kernel is the slower one: a quick
        # training step took 1.36x (Transformer) and 1.28x (LSTM) as long as the explicit attention, measured
        # on an AMD EPYC with AVX512-BF16. Both compute the same attention to float rounding.
        overrides.setdefault("fused_attention", False)
    return replace(base, **overrides)


# `python -m hw2 rehearse` runs the full configuration for a few optimizer steps: a few hundred clips of the
# paragraph corpus (every clip padded to the full 2,754 frames, batches of 64), two epochs so that a run is
# interrupted after the first and resumed. It alone sets HW2_REHEARSAL, in its own process and its kernels.
REHEARSALS = {"few-steps": {"n_clips": 256, "epochs": 2, "max_steps": 2},
              "one-step": {"n_clips": 20, "epochs": 2, "max_steps": 1}}


def plan(profile: str) -> list[dict]:
    """Run cells (a) and (b) of the notebook: one run per decoder."""
    return [{"decoder": decoder} for decoder in DECODERS]


PROTOCOL_FIELDS = ("corpus", "n_clips", "audio_frames", "batch_size", "epochs", "n_encoder_layers", "lr",
                   "weight_decay", "label_smoothing", "eval_batch_size", "bf16", "max_steps")


def protocol_deviations(cfg: ASRConfig) -> dict[str, dict]:
    """{field: {"value": ..., "protocol": ...}} for every protocol field that differs from the skeleton's."""
    protocol = ASRConfig()
    return {name: {"value": getattr(cfg, name), "protocol": getattr(protocol, name)}
            for name in PROTOCOL_FIELDS if getattr(cfg, name) != getattr(protocol, name)}


def deviations_text(deviations: dict[str, dict]) -> str:
    """'corpus short (protocol ljspeech), batch_size 32 (protocol 64)', or 'none'."""
    return ", ".join(f"{k} {v['value']} (protocol {v['protocol']})" for k, v in deviations.items()) or "none"
