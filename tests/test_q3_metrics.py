"""String similarities and their aggregation match the skeleton's trainer, on examples worked by hand."""
import math
import random

import pytest
import textdistance
import torch

from hw2.q3.metrics import (
    SIMILARITY_NAMES,
    EpochAccumulator,
    cut_generated,
    cut_target,
    string_similarities,
)

JAC, COS, DL = SIMILARITY_NAMES


def sims(target, generated):
    out = string_similarities([target], [generated])
    return out[JAC][0], out[COS][0], out[DL][0]


def test_names_in_the_skeleton_order():
    assert SIMILARITY_NAMES == ("jaccard_similarity", "cosine_similarity", "damerau-levenshtein_similarity")


def test_cuts():
    assert cut_target([0, 9, 10, 1, 2, 2]) == [0, 9, 10, 1]
    assert cut_generated([0, 9, 1, 1, 4]) == [0, 9, 1]
    generated = torch.tensor([0] + [9] * 98)
    assert cut_generated(generated) == [0] + [9] * 97 + [1]
    assert generated[98] == 9, "the caller's tensor must not be modified"


def test_one_substitution():
    # <ab> vs <ac>: multisets {<,a,b,>} and {<,a,c,>} share 3 of 5 distinct ids; one substitution in 4.
    j, c, d = sims([0, 9, 10, 1, 2, 2], [0, 9, 11, 1, 5, 5])
    assert j == pytest.approx(3 / 5, abs=1e-15)
    assert c == pytest.approx(3 / math.sqrt(4 * 4), abs=1e-15)
    assert d == pytest.approx(1 - 1 / 4, abs=1e-15)


def test_transposition_costs_one_edit_but_nothing_to_the_bag_measures():
    j, c, d = sims([0, 9, 10, 1], [0, 10, 9, 1])
    assert (j, c) == (1.0, 1.0)
    assert d == pytest.approx(1 - 1 / 4, abs=1e-15)


def test_repeated_ids_count_as_a_multiset():
    # <aaa> vs <a>: intersection 3 (one each of <, a, >), union 5 (a counted 3 times), sizes 5 and 3.
    j, c, d = sims([0, 9, 9, 9, 1], [0, 9, 1])
    assert j == pytest.approx(3 / 5, abs=1e-15)
    assert c == pytest.approx(3 / math.sqrt(5 * 3), abs=1e-15)
    assert d == pytest.approx(1 - 2 / 5, abs=1e-15)


def test_generation_without_stop_gets_the_forced_stop():
    # "<a>" against 99 ids "<aaaa...": the forced ">" at 98 makes "<" + 97 a + ">".
    j, c, d = sims([0, 9, 1, 2], [0] + [9] * 98)
    assert j == pytest.approx(3 / 99, abs=1e-15)
    assert c == pytest.approx(3 / math.sqrt(3 * 99), abs=1e-15)
    assert d == pytest.approx(1 - 96 / 99, abs=1e-15)


def test_tokens_after_the_first_stop_are_ignored():
    assert sims([0, 9, 1, 2, 2], [0, 9, 1, 12, 13]) == (1.0, 1.0, 1.0)


def test_equal_to_pure_python_textdistance_on_random_id_lists():
    rng = random.Random(0)
    jaccard = textdistance.Jaccard(external=False).normalized_similarity
    cosine = textdistance.Cosine(external=False).normalized_similarity
    osa = textdistance.DamerauLevenshtein(external=False).normalized_similarity
    targets, generated = [], []
    for _ in range(60):
        t = [0] + [rng.randrange(4, 12) for _ in range(rng.randrange(0, 40))] + [1]
        g = list(t)
        for _ in range(rng.randrange(0, 6)):  # substitutions, swaps, insertions and deletions
            i = rng.randrange(1, len(g))
            op = rng.randrange(4)
            if op == 0:
                g[i] = rng.randrange(4, 12)
            elif op == 1 and i + 1 < len(g):
                g[i - 1], g[i] = g[i], g[i - 1]
            elif op == 2:
                g.insert(i, rng.randrange(4, 12))
            elif len(g) > 2:
                del g[i]
        targets.append(t + [2] * (99 - len(t)))
        generated.append((g + [rng.randrange(2, 12) for _ in range(99)])[:99])
    out = string_similarities(torch.tensor(targets), torch.tensor(generated))
    for k, (t, g) in enumerate(zip(targets, generated)):
        t, g = cut_target(t), cut_generated(g)
        assert out[JAC][k] == jaccard(t, g)
        assert out[COS][k] == cosine(t, g)
        assert out[DL][k] == osa(t, g)


def test_batch_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="batch sizes"):
        string_similarities([[0, 1]], [[0, 1], [0, 1]])


def test_unweighted_epoch_value_differs_from_the_weighted_summary_on_an_uneven_batch():
    acc = EpochAccumulator()
    acc.add(1.0, string_similarities([[0, 9, 1]] * 3, [[0, 9, 1]] * 3))  # 3 perfect clips
    acc.add(torch.tensor(3.0), {JAC: [0.0], COS: [0.0], DL: [0.0]})  # 1 clip scoring 0
    epoch = acc.epoch_values()
    summary = acc.summary()
    for name in SIMILARITY_NAMES:
        assert epoch[name] == pytest.approx((3 / 3 + 0 / 1) / 2)  # 0.5: mean of batch means
        assert summary[name] == pytest.approx(3 / 4)  # 0.75: sum / total n
    assert epoch["loss"] == summary["loss"] == pytest.approx(2.0)  # mean of batch mean losses
    assert list(summary) == [*SIMILARITY_NAMES, "loss"]
    assert acc.as_dict() == {JAC: [3.0, 0.0], COS: [3.0, 0.0], DL: [3.0, 0.0], "loss": [1.0, 3.0], "n": [3, 1]}


def test_add_batch_scores_and_records():
    acc = EpochAccumulator()
    per_sample = acc.add_batch(0.5, torch.tensor([[0, 9, 1], [0, 10, 1]]), torch.tensor([[0, 9, 1], [0, 9, 1]]))
    assert per_sample[DL] == [1.0, pytest.approx(2 / 3)]
    assert acc.ns == [2] and acc.sums[DL] == [pytest.approx(5 / 3)]


def test_empty_accumulator_and_ragged_batch_are_errors():
    with pytest.raises(ValueError, match="no batch"):
        EpochAccumulator().summary()
    with pytest.raises(ValueError, match="same"):
        EpochAccumulator().add(1.0, {JAC: [1.0], COS: [1.0, 1.0], DL: [1.0]})


# --- degenerate output and the chance baseline -----------------------------------------------------------------

def test_looping_and_constant_predictions_are_detected():
    from hw2.q3.metrics import degenerate_output, is_looping

    looping = "<" + ("the " * 30)[:97] + ">"  # never stopped: ">" forced at position 98
    assert is_looping(looping) and is_looping("<e " + "o" * 95 + ">")
    assert not is_looping("<the the the>")  # stopped by itself: short, not a loop
    assert not is_looping("<" + "tina saw five carpets. rose laughed sadly. the monkeys were lucky. alice"
                          " saw twenty candles ok>")
    healthy = ["<tina saw five carpets.>", "<rose laughed sadly.>", "<is the pencil dirty?>"]
    assert degenerate_output(healthy)["kind"] is None
    other_loop = "<" + ("and " * 30)[:97] + ">"
    assert degenerate_output([looping, other_loop, healthy[0]])["kind"] == "looping"
    constant = degenerate_output(["<the monkeys were lucky.>"] * 3 + healthy[:1])
    assert constant["kind"] == "constant" and constant["most_common_share"] == 0.75 and constant["distinct"] == 2


def test_chance_baseline_scores_each_target_against_the_next():
    from hw2.q3.metrics import chance_similarities
    from hw2.q3.text import encode_batch

    texts = ["ab", "ba", "cd"]
    chance = chance_similarities(encode_batch(texts))
    pairs = [("<ab>", "<ba>"), ("<ba>", "<cd>"), ("<cd>", "<ab>")]
    dl = [1 - textdistance.damerau_levenshtein(a, b) / max(len(a), len(b)) for a, b in pairs]
    assert chance[DL] == pytest.approx(sum(dl) / 3)
    assert chance[JAC] == pytest.approx(sum(textdistance.jaccard.normalized_similarity(a, b) for a, b in pairs) / 3)
