"""Profiles: `full` is the homework protocol exactly, `quick` the same code on less data and fewer epochs
(minutes on a 2-core CPU), `smoke` seconds, for tests. Default: `full` where a CUDA GPU is present, else
`quick`; the `PROFILE` environment variable overrides. Each question maps a profile to its configurations and
its plan in its own `config.py`.
"""
from __future__ import annotations

import os

from hw2.engine.errors import ConfigError
from hw2.engine.machine import cuda_available

PROFILES = ("full", "quick", "smoke")


def resolve_profile(name: str | None = None) -> str:
    """The profile to use: `name`, else $PROFILE, else full on a GPU machine and quick elsewhere."""
    name = name or os.environ.get("PROFILE") or ("full" if cuda_available() else "quick")
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)} (e.g. PROFILE=quick)")
    return name


def banner(experiment: str, profile: str, data_source: str, device: str) -> str:
    """The line printed at the start of every run."""
    return f"[hw2] {experiment}: profile={profile} data={data_source} device={device}"
