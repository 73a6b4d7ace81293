"""The global-RNG draws a `torch.utils.data.DataLoader` makes, so data held on the device can be visited in
the skeleton's order without a DataLoader.

Each time a DataLoader is iterated, its iterator draws a base seed for its workers (one int64 from the
global RNG, shuffled or not); a shuffling loader's `RandomSampler` then draws one more int64 and permutes
with a generator seeded by it. Model initialisation and dropout share the same global stream, so skipping
or adding a draw changes everything after it.
"""
from __future__ import annotations

import torch


def loader_iteration_seed() -> None:
    """The draw of an iterator over an unshuffled DataLoader (validation, test): consumed, never used here."""
    torch.empty((), dtype=torch.int64).random_()


def loader_permutation(n: int) -> torch.Tensor:
    """The order in which an iteration over `DataLoader(dataset_of_n, shuffle=True)` visits the items, drawn
    with exactly its draws (the iterator's base seed, then the sampler's seed)."""
    loader_iteration_seed()
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(n, generator=generator)
