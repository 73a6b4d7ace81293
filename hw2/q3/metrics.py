"""Question 3's string similarities, computed and aggregated exactly as the skeleton's trainer does.

Per sample, the target is cut right after its first ">" and the generation after its first ">" (forced at
position 98 when absent); textdistance's normalized Jaccard, cosine and Damerau-Levenshtein (restricted,
the 4.x default) are applied to these lists of integer ids, "<" and ">" included.

Aggregation: the skeleton keeps, per batch, the similarity sums, the mean loss and n. The per-epoch value it
plots is the UNWEIGHTED mean over batches of (sum / n); the value it prints during validation and the test
summary are weighted (sum / total n), with the loss as the mean of the batch means.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from hw2.q3.text import cut_after_stop

# The three similarities: a short name (the report's) for each key of the skeleton's trainer (the runs' records).
SIMILARITIES = {"jaccard": "jaccard_similarity", "cosine": "cosine_similarity",
                "damerau_levenshtein": "damerau-levenshtein_similarity"}
SIMILARITY_NAMES = tuple(SIMILARITIES.values())
DAMERAU_LEVENSHTEIN = SIMILARITIES["damerau_levenshtein"]


@functools.cache
def _similarity() -> dict:
    """{name: textdistance's function}; imported on first use, so that training imports this module where
    textdistance is absent (bench/gpu.py on a GPU image)."""
    import textdistance

    return {
        "jaccard_similarity": textdistance.jaccard.normalized_similarity,
        "cosine_similarity": textdistance.cosine.normalized_similarity,
        # textdistance hands this to rapidfuzz's OSA distance when installed (as the skeleton's
        # "textdistance[extras]" does): the same integer distance, thousands of times faster than pure Python.
        "damerau-levenshtein_similarity": textdistance.damerau_levenshtein.normalized_similarity,
    }


Ids = torch.Tensor | Sequence[int]


def cut_target(ids: Ids) -> list[int]:
    """A target's ids up to and including its first ">"."""
    return cut_after_stop(ids)


def cut_generated(ids: Ids) -> list[int]:
    """A generation's ids up to and including its first ">"; with none, ">" is forced at position 98 first.

    The skeleton overwrites its generation tensor in place; here the caller's ids are left untouched.
    """
    return cut_after_stop(ids, force_stop=True)


def _rows(batch: torch.Tensor | Sequence[Ids]) -> list[list[int]]:
    if isinstance(batch, torch.Tensor):
        if batch.dim() != 2:
            raise ValueError(f"expected a (batch, length) tensor of ids, got shape {tuple(batch.shape)}")
        return batch.tolist()  # one transfer for the whole batch
    return [r.tolist() if isinstance(r, torch.Tensor) else list(r) for r in batch]


def string_similarities(
    target_ids: torch.Tensor | Sequence[Ids], generated_ids: torch.Tensor | Sequence[Ids]
) -> dict[str, list[float]]:
    """Per-sample similarities {name: [value per sample]} of a batch of targets and greedy generations."""
    targets, generated = _rows(target_ids), _rows(generated_ids)
    if len(targets) != len(generated):
        raise ValueError(f"{len(targets)} targets but {len(generated)} generations: the batch sizes must match")
    pairs = [(cut_target(t), cut_generated(g)) for t, g in zip(targets, generated)]
    return {name: [float(f(t, g)) for t, g in pairs] for name, f in _similarity().items()}


class EpochAccumulator:
    """The batches of one evaluation pass (validation epoch or test), kept as the skeleton keeps them."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {name: [] for name in SIMILARITY_NAMES}
        self.losses: list[float] = []
        self.ns: list[int] = []

    def add(self, loss: float | torch.Tensor, similarities: dict[str, list[float]]) -> None:
        """Record one batch: its mean loss and the per-sample similarities from `string_similarities`."""
        sizes = {len(similarities[name]) for name in SIMILARITY_NAMES}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"every similarity needs the same, non-zero number of samples; got sizes {sizes}")
        for name in SIMILARITY_NAMES:
            self.sums[name].append(sum(similarities[name]))
        self.losses.append(float(loss))
        self.ns.append(sizes.pop())

    def add_batch(
        self, loss: float | torch.Tensor, target_ids: torch.Tensor, generated_ids: torch.Tensor
    ) -> dict[str, list[float]]:
        """Score a batch, record it, and return its per-sample similarities."""
        similarities = string_similarities(target_ids, generated_ids)
        self.add(loss, similarities)
        return similarities

    def _check(self) -> None:
        if not self.ns:
            raise ValueError("no batch was recorded: call add() for every evaluation batch first")

    def epoch_values(self) -> dict[str, float]:
        """The per-epoch values the skeleton plots: mean over batches of (sum / n), unweighted; mean loss."""
        self._check()
        out = {name: sum(s / n for s, n in zip(self.sums[name], self.ns)) / len(self.ns) for name in SIMILARITY_NAMES}
        out["loss"] = sum(self.losses) / len(self.losses)
        return out

    def summary(self) -> dict[str, float]:
        """The values the skeleton prints after validation and as the test summary: sum / total n for the
        similarities, sum of batch losses / number of batches for the loss (keys in the skeleton's order)."""
        self._check()
        total = sum(self.ns)
        out = {name: sum(self.sums[name]) / total for name in SIMILARITY_NAMES}
        out["loss"] = sum(self.losses) / len(self.losses)
        return out

    def as_dict(self) -> dict[str, list]:
        """The raw record in the layout of the skeleton's pickles: batch sums, batch mean losses, sizes."""
        return {**{name: list(v) for name, v in self.sums.items()}, "loss": list(self.losses), "n": list(self.ns)}


# --- reading a set of predictions ------------------------------------------------------------------------------

LOOP_MIN_REPEATS = 3  # a unit repeated this often at the end of a prediction that never stopped is a loop
LOOP_MAX_UNIT = 12  # longest repeated unit, in characters, looked for


def is_looping(prediction: str) -> bool:
    """Whether a prediction never produced ">" before the forced stop and ends by repeating one unit
    (e.g. "the the the ..." or "oooo") at least LOOP_MIN_REPEATS times."""
    body = prediction.removeprefix("<")
    if not body.endswith(">") or len(body) < LOOP_MAX_UNIT * LOOP_MIN_REPEATS:
        return False  # a prediction that stopped by itself before the forced position is not a loop
    body = body[:-1]
    for unit in range(1, LOOP_MAX_UNIT + 1):
        tail = body[-unit * LOOP_MIN_REPEATS:]
        if tail == tail[:unit] * LOOP_MIN_REPEATS:
            return True
    return False


def degenerate_output(predictions: Sequence[str], constant_share: float = 0.5,
                      looping_share: float = 0.5) -> dict:
    """How degenerate a set of greedy predictions is: the share of the most common prediction, the share of
    looping predictions (`is_looping`), and `kind`: "constant" when one prediction makes up at least
    `constant_share` of them, "looping" when at least `looping_share` loop, else None."""
    if not predictions:
        raise ValueError("no predictions to read")
    counts: dict[str, int] = {}
    for p in predictions:
        counts[p] = counts.get(p, 0) + 1
    most_common, top = max(counts.items(), key=lambda item: item[1])
    loops = sum(is_looping(p) for p in predictions) / len(predictions)
    share = top / len(predictions)
    kind = "constant" if share >= constant_share else "looping" if loops >= looping_share else None
    return {"kind": kind, "distinct": len(counts), "most_common": most_common,
            "most_common_share": share, "looping_share": loops}


def chance_similarities(target_ids: torch.Tensor | Sequence[Ids]) -> dict[str, float]:
    """The mean similarities of unrelated transcripts: each target scored against the next one (cyclically),
    as if it were that clip's prediction. A decoder that ignores the audio but writes fluent text of the
    corpus scores about this."""
    targets = [cut_target(t) for t in _rows(target_ids)]
    if len(targets) < 2:
        raise ValueError("the chance baseline needs at least two targets")
    pairs = list(zip(targets, targets[1:] + targets[:1]))
    return {name: sum(float(f(a, b)) for a, b in pairs) / len(pairs) for name, f in _similarity().items()}
