"""Taylor linear attention on tensors against the quadratic forms and the softmax references."""
import itertools

import pytest
import torch

from hw2.q1 import taylor


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dim,order", [(1, 3), (3, 2), (4, 3), (5, 4), (16, 3), (6, 5)])
def test_full_and_symmetric_maps_give_the_truncated_exponential_kernel(dim, order):
    q, k = rand(2, 11, dim, seed=1), rand(2, 13, dim, seed=2)
    reference = taylor.taylor_exp(q @ k.transpose(-1, -2), order)
    for symmetric in (True, False):
        fq, fk = taylor.taylor_features(q, order, symmetric), taylor.taylor_features(k, order, symmetric)
        assert fq.shape == (2, 11, taylor.feature_dim(dim, order, symmetric))
        torch.testing.assert_close(fq @ fk.transpose(-1, -2), reference, rtol=1e-12, atol=1e-12)


def test_maps_agree_in_float32():
    q, k = rand(64, 16, seed=3, dtype=torch.float32) / 2, rand(64, 16, seed=4, dtype=torch.float32) / 2
    full = taylor.taylor_features(q, 3, False) @ taylor.taylor_features(k, 3, False).T
    sym = taylor.taylor_features(q, 3, True) @ taylor.taylor_features(k, 3, True).T
    torch.testing.assert_close(sym, full, rtol=1e-5, atol=1e-5)


def test_symmetric_map_coordinates_are_weighted_monomials():
    x = rand(5, seed=5)
    phi = taylor.taylor_features(x.unsqueeze(0), 3).squeeze(0)
    expected = [1.0, *x.tolist()]
    for i, j in itertools.combinations_with_replacement(range(5), 2):
        expected.append(float(x[i] * x[j]) / (2**0.5 if i == j else 1.0))
    torch.testing.assert_close(phi, torch.tensor(expected, dtype=torch.float64))


def test_feature_dim_closed_forms():
    assert [taylor.feature_dim(d, 3) for d in (2, 4, 16, 64, 200)] == [6, 15, 153, 2145, 20301]
    assert taylor.feature_dim(64, 3, symmetric=False) == 1 + 64 + 64**2
    assert taylor.feature_dim(10, 5) == 1001
    with pytest.raises(ValueError, match="dim >= 1"):
        taylor.feature_dim(0, 3)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_noncausal_linear_attention_equals_quadratic_normalised_form(order):
    q, k, v = rand(3, 40, 6, seed=6), rand(3, 40, 6, seed=7), rand(3, 40, 5, seed=8)
    phi_q, phi_k = taylor.taylor_features(q, order), taylor.taylor_features(k, order)
    scores = phi_q @ phi_k.transpose(-1, -2)                   # Phi(Q) Phi(K)^T, L x L
    normaliser = scores @ torch.ones(40, 1, dtype=q.dtype)     # Phi(Q) Phi(K)^T 1_L
    expected = (scores @ v) / normaliser                       # D^-1 Phi(Q) Phi(K)^T V
    torch.testing.assert_close(taylor.linear_attention(q, k, v, order), expected)
    torch.testing.assert_close(taylor.linear_attention(q, k, v, order, symmetric=False), expected)
    torch.testing.assert_close(taylor.kernel_attention(q, k, v, order), expected)


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64, 500])
def test_causal_linear_attention_equals_masked_quadratic_form(chunk_size):
    q, k, v = rand(2, 67, 8, seed=9), rand(2, 67, 8, seed=10), rand(2, 67, 3, seed=11)
    phi_q, phi_k = taylor.taylor_features(q, 3), taylor.taylor_features(k, 3)
    scores = (phi_q @ phi_k.transpose(-1, -2)).tril()          # same kernel, future keys masked
    expected = (scores @ v) / scores.sum(-1, keepdim=True)
    got = taylor.linear_attention(q, k, v, 3, causal=True, chunk_size=chunk_size)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(taylor.kernel_attention(q, k, v, 3, causal=True), expected)


def test_scale_is_applied_to_the_scores():
    q, k, v = rand(20, 4, seed=12), rand(20, 4, seed=13), rand(20, 4, seed=14)
    torch.testing.assert_close(taylor.linear_attention(q, k, v, scale=0.5),
                               taylor.kernel_attention(q * 0.5, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_references_agree(causal):
    q, k, v = rand(2, 33, 8, seed=15), rand(2, 33, 8, seed=16), rand(2, 33, 8, seed=17)
    naive = taylor.softmax_attention(q, k, v, scale=0.7, causal=causal)
    torch.testing.assert_close(taylor.sdpa_attention(q, k, v, scale=0.7, causal=causal), naive)
    weights = torch.exp(0.7 * q @ k.transpose(-1, -2))
    if causal:
        weights = weights.tril()
    torch.testing.assert_close(naive, (weights @ v) / weights.sum(-1, keepdim=True))


def test_second_order_kernel_never_vanishes():
    t = torch.linspace(-1e3, 1e3, 2_000_001, dtype=torch.float64)
    kernel = taylor.taylor_exp(t, 3)
    assert kernel.min().item() == pytest.approx(0.5, abs=1e-9)
    assert t[kernel.argmin()].item() == pytest.approx(-1.0, abs=1e-3)
    assert taylor.taylor_exp(torch.tensor([-3.0]), 2).item() < 0  # 1 + t: the K = 2 normaliser can vanish
    q, k, v = taylor.make_inputs("opposite", 128, 8, 20.0, torch.Generator().manual_seed(0))
    err = taylor.attention_error(q, k, v, order=3)
    assert err["min_kernel"] >= 0.5 and err["min_normaliser"] >= 0.5 * 128


@pytest.mark.parametrize("kind", taylor.INPUT_KINDS)
def test_error_grows_with_the_scale_of_scores(kind):
    g = torch.Generator().manual_seed(1)
    small = taylor.attention_error(*taylor.make_inputs(kind, 96, 8, 0.1, g))
    large = taylor.attention_error(*taylor.make_inputs(kind, 96, 8, 4.0, g))
    assert small["score_std"] == pytest.approx(0.1) and large["score_std"] == pytest.approx(4.0)
    assert small["rel_error"] < 0.02 < 0.1 < large["rel_error"]
    assert 0 <= small["weight_tv"] < large["weight_tv"] <= 1


def test_higher_order_approximates_better_at_moderate_scale():
    q, k, v = taylor.make_inputs("random", 96, 8, 1.0, torch.Generator().manual_seed(2))
    errors = [taylor.attention_error(q, k, v, order)["rel_error"] for order in (3, 5, 7)]
    assert errors[0] > errors[1] > errors[2]


def test_unknown_input_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown input kind 'noise'"):
        taylor.make_inputs("noise", 8, 2, 1.0, torch.Generator())
