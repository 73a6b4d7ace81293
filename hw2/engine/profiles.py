"""Profiles: `full` is the homework protocol exactly, `quick` the same code on less data and fewer epochs
(minutes on a 2-core CPU), `smoke` seconds, for tests. Default: `full` where a CUDA GPU is present, else
`quick`. Each question maps a profile to its configurations and its plan in its own `config.py`.

Two environment variables choose one, and they must agree where both are set: `PROFILE`, and `QUARTO_PROFILE`,
which `quarto render --profile quick` (and `python -m hw2 render --profile quick`) sets for the pre-render step
and the kernel. QUARTO_PROFILE is a comma-separated list of Quarto profiles; the one of them that names an hw2
profile is hw2's, the others are Quarto's alone (a `_quarto-draft.yml`, say). A `--profile` given to an hw2
command (`python -m hw2 runs --profile smoke`) comes first.
"""
from __future__ import annotations

import os

from hw2.engine.errors import ConfigError
from hw2.engine.machine import cuda_available

PROFILES = ("full", "quick", "smoke")


def resolve_profile(name: str | None = None) -> str:
    """The profile to use: `name`, else the environment's (`environment_profile`), else full on a GPU machine
    and quick elsewhere."""
    name = name or environment_profile() or ("full" if cuda_available() else "quick")
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)} (e.g. PROFILE=quick)")
    return name


def environment_profile() -> str | None:
    """The profile $PROFILE or $QUARTO_PROFILE names, or None; an error where they name different ones, or
    where QUARTO_PROFILE names two of hw2's."""
    plain = os.environ.get("PROFILE") or None
    listed = os.environ.get("QUARTO_PROFILE") or ""
    quarto = [p.strip() for p in listed.split(",") if p.strip() in PROFILES]
    if len(quarto) > 1:
        raise ConfigError(f"QUARTO_PROFILE={listed} names {len(quarto)} of hw2's profiles ({', '.join(quarto)}): "
                          f"give one (quarto render --profile {quarto[0]})")
    if plain and quarto and plain != quarto[0]:
        raise ConfigError(f"PROFILE={plain} and QUARTO_PROFILE={listed} name different profiles: unset one "
                          f"(`quarto render --profile X` sets QUARTO_PROFILE)")
    return plain or (quarto[0] if quarto else None)


# Set by `python -m hw2 rehearse` alone (hw2.rehearse): the `full` configurations for a few steps.
REHEARSAL_VARIABLE = "HW2_REHEARSAL"


def rehearsal_overrides(rehearsals: dict[str, dict]) -> dict:
    """The fields of a question's `full` configuration that the rehearsal in progress changes, from the question's
    table of rehearsals ({} outside a rehearsal)."""
    name = os.environ.get(REHEARSAL_VARIABLE)
    if name and name not in rehearsals:
        raise ConfigError(f"{REHEARSAL_VARIABLE} must be one of {', '.join(rehearsals)} (set by `python -m hw2 "
                          f"rehearse`), got {name!r}")
    return dict(rehearsals[name]) if name else {}


def banner(experiment: str, profile: str, data_source: str, device: str) -> str:
    """The line printed at the start of every run."""
    return f"[hw2] {experiment}: profile={profile} data={data_source} device={device}"
