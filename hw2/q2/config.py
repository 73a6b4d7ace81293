"""Question 2: the configuration as a typed dataclass with the homework's values as defaults, each profile's
configuration and the profile's plan. Outside the code identity: a run's configuration enters its key by value.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from hw2.engine.profiles import rehearsal_overrides, resolve_profile


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
    # Optimizer steps per epoch (None: every batch); only `python -m hw2 rehearse` sets it. In the run key only
    # when set (hw2.engine.store.KEY_IF_SET), so runs that leave it keep their keys.
    max_steps: int | None = field(default=None, metadata={"key": "if set"})

    @property
    def label(self) -> str:
        """The skeleton's config string, e.g. 0.01-0.7-0-sgd-False."""
        decay = int(self.l2_decay) if float(self.l2_decay).is_integer() else self.l2_decay
        return f"{self.lr}-{self.dropout}-{decay}-sgd-{self.no_maxpool}"

    @property
    def slug(self) -> str:
        return f"lr{self.lr:g}-{'nomaxpool' if self.no_maxpool else 'maxpool'}-s{self.seed}"


# The statement's sweep, per profile: the learning rates trained for each variant (with and without max
# pooling). The report, its prose, the notebook's plan and the tests all read them from here.
LEARNING_RATES = {"full": (0.1, 0.01, 0.001), "quick": (0.1, 0.01, 0.001), "smoke": (0.1, 0.01, 0.001)}
VARIANTS = (False, True)  # no_maxpool: Q2.1, then Q2.2


def for_profile(profile: str, **overrides):
    """The CNN configuration of a profile, with the homework's values in `full`."""
    base = {
        "full": CNNConfig(),
        "quick": CNNConfig(epochs=6, n_train=24_000),
        "smoke": CNNConfig(epochs=2, n_train=400, n_val=200),
    }[resolve_profile(profile)]
    if resolve_profile(profile) == "full":
        base = replace(base, **rehearsal_overrides(REHEARSALS))
    return replace(base, **overrides)


# `python -m hw2 rehearse` runs the full configuration (the whole training split, batches of 8) for a few
# optimizer steps in each of two epochs, so that the sweep checkpoints between them. It alone sets HW2_REHEARSAL.
REHEARSALS = {"few-steps": {"epochs": 2, "max_steps": 500}, "one-step": {"epochs": 2, "max_steps": 1}}


def plan(profile: str) -> list[dict]:
    """The profile's sweep: each learning rate of `LEARNING_RATES` for both variants (6 runs in every profile)."""
    return [{"lr": lr, "no_maxpool": no_maxpool}
            for no_maxpool in VARIANTS for lr in LEARNING_RATES[resolve_profile(profile)]]
