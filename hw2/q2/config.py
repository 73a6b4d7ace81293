"""Question 2: the configuration as a typed dataclass with the homework's values as defaults, each profile's
configuration and the profile's plan. Outside the code identity: a run's configuration enters its key by value.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from hw2.engine.profiles import resolve_profile


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


LEARNING_RATES = (0.1, 0.01, 0.001)


def for_profile(profile: str, **overrides):
    """The CNN configuration of a profile, with the homework's values in `full`."""
    base = {
        "full": CNNConfig(),
        "quick": CNNConfig(epochs=6, n_train=24_000),
        "smoke": CNNConfig(epochs=2, n_train=400, n_val=200),
    }[resolve_profile(profile)]
    return replace(base, **overrides)


def plan(profile: str) -> list[dict]:
    """The sweep of the statement: lr in {0.1, 0.01, 0.001} for both variants (6 runs)."""
    return [
        {"lr": lr, "no_maxpool": no_maxpool}
        for no_maxpool in (False, True)
        for lr in LEARNING_RATES
    ]
