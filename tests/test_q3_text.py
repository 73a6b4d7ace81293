"""The 35-token vectorizer encodes and decodes as the skeleton's TokenVectorizer does."""
import pytest
import torch

from hw2.q3 import text
from hw2.q3.text import EMPTY, MAX_LEN, N_VOCAB, START, STOP, UNK


def test_vocabulary_layout():
    assert N_VOCAB == 35 and len(text.VOCAB) == 35
    assert text.VOCAB[:9] == ("<", ">", "@", "#", " ", ",", ".", "?", "-")
    assert text.VOCAB[9] == "a" and text.VOCAB[34] == "z"
    assert (START, STOP, EMPTY, UNK) == (0, 1, 2, 3)
    assert MAX_LEN == 99


def test_encode_worked_example():
    ids = text.encode("Hi, Bob!")
    assert ids.dtype == torch.long and ids.shape == (99,)
    # "<" h i , " " b o b "!"->unk ">" then padding
    assert ids[:11].tolist() == [0, 16, 17, 5, 4, 10, 23, 10, 3, 1, 2]
    assert (ids[10:] == EMPTY).all()


def test_out_of_vocabulary_characters_map_to_unk():
    assert text.decode(text.encode("It's \"A\"; b: c! 7 é")) == "<it#s #a## b# c# # #>"


def test_truncates_to_97_characters_and_keeps_the_stop_token():
    ids = text.encode("a" * 150)
    assert ids.shape == (99,)
    assert ids[0] == START and ids[98] == STOP
    assert (ids[1:98] == 9).all()
    exact = text.encode("b" * 97)
    assert exact[98] == STOP and EMPTY not in exact.tolist()


def test_encode_batch_and_round_trip():
    batch = text.encode_batch(["The cat.", "-why? yes"])
    assert batch.shape == (2, 99)
    assert text.decode(batch[0]) == "<the cat.>"
    assert text.decode(batch[1]) == "<-why? yes>"
    assert text.encode_batch([]).shape == (0, 99)


def test_decode_until_stop_keeps_padding_before_the_stop_and_forces_a_stop():
    assert text.decode_until_stop([0, 9, 2, 10, 1, 11, 12]) == "<a@b>"
    no_stop = torch.full((99,), 9, dtype=torch.long)
    no_stop[0] = START
    printed = text.decode_until_stop(no_stop)
    assert printed == "<" + "a" * 97 + ">"
    assert (no_stop != STOP).all(), "the caller's ids must not be modified"


def test_cut_after_stop():
    assert text.cut_after_stop([0, 5, 1, 1, 2]) == [0, 5, 1]
    assert text.cut_after_stop([0, 5, 6]) == [0, 5, 6]
    assert text.cut_after_stop([0, 5, 6], force_stop=True) == [0, 5, 1]


def test_bad_ids_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 35\)"):
        text.decode([0, 35])
    with pytest.raises(ValueError, match=r"\[0, 35\)"):
        text.decode_until_stop([0, -1, 5, 6])
    with pytest.raises(ValueError, match="1-d"):
        text.decode(torch.zeros((2, 3), dtype=torch.long))
