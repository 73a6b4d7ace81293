"""Question 1: the configuration as a typed dataclass with the homework's values as defaults, each profile's
configuration and the profile's plan. Outside the code identity: a run's configuration enters its key by value.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from hw2.engine.errors import ConfigError
from hw2.engine.profiles import rehearsal_overrides, resolve_profile
from hw2.q1.constants import INPUT_KINDS, METHODS


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


def for_profile(profile: str, **overrides):
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
    if resolve_profile(profile) == "full":
        base = replace(base, **rehearsal_fields(base))
    try:
        cfg = replace(base, **overrides)
    except TypeError as exc:  # an unknown field name
        raise ConfigError(f"Q1 config: {exc}; the fields are {', '.join(f.name for f in fields(base))}") from None
    return cfg.validate()


# `python -m hw2 rehearse` times the full configuration at the first lengths of its grid, with the fewest rounds
# a median allows; "one-step" also shrinks the error study. It alone sets HW2_REHEARSAL.
REHEARSALS = {"few-steps": {"lengths": 4, "repeats": 3},
              "one-step": {"lengths": 3, "repeats": 3, "error_scales": (0.5, 2.0), "error_orders": (2, 3),
                           "error_trials": 1}}


def rehearsal_fields(full: AttentionBenchConfig) -> dict:
    """The `full` configuration's fields that the rehearsal in progress changes ({} outside one); `lengths`
    there is how many of the full grid's first lengths are timed."""
    overrides = rehearsal_overrides(REHEARSALS)
    if "lengths" in overrides:
        overrides["lengths"] = full.lengths[:overrides["lengths"]]
    return overrides


def plan(profile: str) -> list[dict]:
    """One benchmark run, on the machine's default device (the notebook adds the profile)."""
    resolve_profile(profile)
    return [{"device": "auto"}]
