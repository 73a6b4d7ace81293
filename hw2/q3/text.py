"""The skeleton's 35-token character vectorizer for Question 3 (encode transcripts, decode ids).

Index: 0 "<" start, 1 ">" stop, 2 "@" empty (padding), 3 "#" unknown, then " " , . ? - and a..z.
A transcript is lowercased, truncated to 97 characters, wrapped as "<" + text + ">" and right-padded with
"@" to 99 ids; a character outside the vocabulary (apostrophe, quote, ";", ":", "!", digit, accent) is 3.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

VOCAB: tuple[str, ...] = ("<", ">", "@", "#", " ", ",", ".", "?", "-", *"abcdefghijklmnopqrstuvwxyz")
START, STOP, EMPTY, UNK = 0, 1, 2, 3
N_VOCAB = len(VOCAB)
MAX_LEN = 99
# The skeleton's generations have MAX_LEN ids; one with no stop token gets ">" forced at this position.
FORCED_STOP_POSITION = MAX_LEN - 1

_INDEX = {token: i for i, token in enumerate(VOCAB)}
assert N_VOCAB == 35 and len(_INDEX) == N_VOCAB


def _ids(ids: torch.Tensor | Sequence[int]) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"expected a 1-d sequence of token ids, got a tensor of shape {tuple(ids.shape)}")
        return ids.tolist()
    return [int(i) for i in ids]


def encode(text: str, max_len: int = MAX_LEN) -> torch.Tensor:
    """Token ids (max_len,) of one transcript: "<" + lowercased text[:max_len - 2] + ">", padded with "@"."""
    if max_len < 2:
        raise ValueError(f"max_len must leave room for the start and stop tokens (>= 2), got {max_len}")
    chars = "<" + text.lower()[: max_len - 2] + ">"
    ids = [_INDEX.get(c, UNK) for c in chars] + [EMPTY] * (max_len - len(chars))
    return torch.tensor(ids, dtype=torch.long)


def encode_batch(texts: Iterable[str], max_len: int = MAX_LEN) -> torch.Tensor:
    """Token ids (B, max_len) of several transcripts."""
    rows = [encode(t, max_len) for t in texts]
    if not rows:
        return torch.empty((0, max_len), dtype=torch.long)
    return torch.stack(rows)


def _chars(ids: list[int]) -> list[str]:
    bad = [i for i in ids if not 0 <= i < N_VOCAB]
    if bad:
        raise ValueError(f"token ids must lie in [0, {N_VOCAB}); got {bad[:5]}")
    return [VOCAB[i] for i in ids]


def decode(ids: torch.Tensor | Sequence[int]) -> str:
    """Characters of the ids with every "@" removed: how the skeleton detokenizes a target."""
    return "".join(c for c in _chars(_ids(ids)) if c != "@")


def cut_after_stop(ids: torch.Tensor | Sequence[int], force_stop: bool = False) -> list[int]:
    """The ids up to and including the first ">".

    With `force_stop`, a sequence with no ">" first gets ">" at position 98 (the last of the skeleton's 99
    generated ids; the last id of a shorter sequence), as the skeleton overwrites its generations.
    Without it, such a sequence is returned whole. The caller's ids are never modified.
    """
    ids = _ids(ids)
    if STOP in ids:
        return ids[: ids.index(STOP) + 1]
    if force_stop and ids:
        position = min(FORCED_STOP_POSITION, len(ids) - 1)
        return ids[:position] + [STOP]
    return ids


def decode_until_stop(ids: torch.Tensor | Sequence[int]) -> str:
    """Characters up to and including the first ">" (forced at position 98 when absent; "@" kept).

    This is how the skeleton prints a prediction: after its forced stop, every prediction ends with ">".
    """
    return "".join(_chars(cut_after_stop(ids, force_stop=True)))
