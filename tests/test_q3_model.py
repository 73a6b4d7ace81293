"""The Question 3 model: the skeleton's sizes and names, its attention numerics, and cached greedy decoding."""
import math

import pytest
import torch

from hw2.common.params import get_number_trainable_params
from hw2.q3.asr import AudioEncoderTransformer, MultiHeadAttention, build_asr_model, sinusoids
from hw2.q3.metrics import cut_generated
from hw2.q3.text import EMPTY, MAX_LEN, N_VOCAB, START, STOP, decode_until_stop, encode

A = int(encode("a")[1])

FRAMES = 64  # short audio keeps these tests fast; the model takes any frame count up to 2,754


@pytest.fixture(autouse=True)
def one_thread():
    """Step-by-step decoding is hundreds of tiny ops: on a busy machine two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def audio(batch: int, seed: int = 0, frames: int = FRAMES) -> torch.Tensor:
    return torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(seed))


def model(decoder: str, fused: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_asr_model(decoder, fused=fused).eval()


@pytest.mark.parametrize("decoder, total, dec", [("rnn", 1_471_235, 658_435), ("transformer", 1_329_835, 517_035)])
def test_parameter_counts_are_the_skeletons(decoder, total, dec):
    m = build_asr_model(decoder)
    assert get_number_trainable_params(m) == total
    assert get_number_trainable_params(m._enc) == 812_800
    assert get_number_trainable_params(m._dec) == dec


def test_four_block_encoder_has_the_statements_count():
    assert get_number_trainable_params(AudioEncoderTransformer(n_layers=4)) == 1_456_800
    assert get_number_trainable_params(build_asr_model("rnn", n_encoder_layers=4)) == 1_456_800 + 658_435


def test_module_names_follow_the_skeleton():
    rnn = build_asr_model("rnn").state_dict()
    tr = build_asr_model("transformer").state_dict()
    for key in ("_enc._pos_embed", "_enc._att_blocks.1._att._query.bias", "_enc._out_norm.weight",
                "_dec._embed.weight", "_dec._rnn_norm.weight", "_dec._rnn.weight_ih_l0",
                "_dec._cross_att._mlp.0.weight", "_dec._out_norm.weight", "_dec._classifier.weight"):
        assert key in rnn, key
    for key in ("_dec._pos_embed", "_dec._att._att._value.weight", "_dec._cross_att._att_norm.weight"):
        assert key in tr, key
    assert "_dec._mask" not in tr  # a non-persistent buffer
    assert not any(k.startswith("_dec._att._mlp") for k in tr)  # the self-attention layer has no MLP
    assert all("_key.bias" not in k for k in list(rnn) + list(tr))
    m = build_asr_model("transformer")
    assert m._dec._pos_embed.shape == (98, 200)
    assert 0 <= m._dec._pos_embed.min() and m._dec._pos_embed.max() < 1  # torch.rand, U[0, 1)
    mask = m._dec._mask
    assert mask.shape == (99, 99) and torch.isinf(mask.triu(1)[0, 1:]).all() and (mask.tril() == 0).all()


def test_sinusoids_use_timescale_3000_and_sin_then_cos():
    table = build_asr_model("rnn")._enc._pos_embed
    assert table.shape == (1377, 200)
    assert torch.equal(table[0, :100], torch.zeros(100)) and torch.equal(table[0, 100:], torch.ones(100))
    pos, i = 7, 13
    inv = math.exp(-i * math.log(3000) / 99)
    assert table[pos, i].item() == pytest.approx(math.sin(pos * inv), abs=1e-6)
    assert table[pos, 100 + i].item() == pytest.approx(math.cos(pos * inv), abs=1e-6)
    assert table[1, 99].item() == pytest.approx(math.sin(1 / 3000), abs=1e-7)
    assert torch.equal(sinusoids(1377, 200), table)


def test_encoder_halves_the_frames():
    assert build_asr_model("rnn")._enc(audio(2)).shape == (2, FRAMES // 2, 200)
    with pytest.raises(ValueError, match="position table"):
        build_asr_model("rnn")._enc(torch.zeros(1, 80, 2756))


def test_attention_matches_the_skeletons_formula():
    torch.manual_seed(1)
    att = MultiHeadAttention(200, 2)
    x, xa = torch.randn(3, 5, 200), torch.randn(3, 9, 200)
    mask = torch.full((5, 5), float("-inf")).triu(1)
    scale = 100 ** -0.25
    for keys, m in ((xa, None), (x, mask)):
        q = (x @ att._query.weight.T + att._query.bias).view(3, -1, 2, 100).permute(0, 2, 1, 3) * scale
        k = (keys @ att._key.weight.T).view(3, -1, 2, 100).permute(0, 2, 3, 1) * scale  # no key bias
        v = (keys @ att._value.weight.T + att._value.bias).view(3, -1, 2, 100).permute(0, 2, 1, 3)
        scores = q @ k + (m if m is not None else 0)
        out = (torch.softmax(scores.float(), -1) @ v).permute(0, 2, 1, 3).flatten(2)
        expected = out @ att._out.weight.T + att._out.bias
        got = att(x, keys if m is None else None, mask=m)
        assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("decoder", ["rnn", "transformer"])
def test_fused_attention_is_numerically_equivalent(decoder):
    plain, fused = model(decoder), build_asr_model(decoder, fused=True).eval()
    fused.load_state_dict(plain.state_dict())
    x, tokens = audio(3), torch.randint(0, N_VOCAB, (3, 98))
    with torch.no_grad():
        assert torch.allclose(plain(x, tokens), fused(x, tokens), atol=1e-5)
        assert torch.equal(plain.generate(x), fused.generate(x))


def test_transformer_decoder_is_causal():
    m = model("transformer")
    x = audio(2)
    a, b = torch.randint(0, N_VOCAB, (2, 98)), torch.randint(0, N_VOCAB, (2, 98))
    b[:, :40] = a[:, :40]
    with torch.no_grad():
        assert torch.allclose(m(x, a)[..., :40], m(x, b)[..., :40], atol=1e-5)
        assert not torch.allclose(m(x, a)[..., 40:], m(x, b)[..., 40:], atol=1e-3)


@pytest.mark.parametrize("decoder", ["rnn", "transformer"])
def test_incremental_decoder_equals_teacher_forcing_position_by_position(decoder):
    m = model(decoder, seed=3)
    x = audio(3, seed=3)
    tokens = torch.randint(0, N_VOCAB, (3, MAX_LEN - 1), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        latent = m._enc(x)
        forced = m._dec(tokens, latent)  # (B, 35, 98)
        state = m._dec.start(latent)
        for t in range(tokens.shape[1]):
            step = m._dec.step(tokens[:, t:t + 1], state)
            assert torch.allclose(step, forced[:, :, t], atol=1e-5), f"position {t}"


def test_recurrent_decoder_returns_the_lstm_state_it_was_given():
    m = model("rnn")
    x, tokens = audio(2), torch.randint(0, N_VOCAB, (2, 20))
    with torch.no_grad():
        latent = m._enc(x)
        whole, (h, c) = m._dec._forward(tokens, latent, None)
        first, state = m._dec._forward(tokens[:, :12], latent, None)
        rest, (h2, c2) = m._dec._forward(tokens[:, 12:], latent, state)
    assert whole.shape == (2, N_VOCAB, 20) and h.shape == c.shape == (1, 2, 200)
    assert torch.allclose(torch.cat([first, rest], dim=2), whole, atol=1e-5)
    assert torch.allclose(h, h2, atol=1e-6) and torch.allclose(c, c2, atol=1e-6)


@pytest.mark.parametrize("decoder, fused", [("rnn", False), ("transformer", False), ("transformer", True)])
def test_cached_greedy_decoding_emits_the_recomputing_tokens(decoder, fused):
    m = model(decoder, fused=fused, seed=5)
    # Sharpen the classifier so greedy decoding wanders over many tokens instead of repeating one.
    with torch.no_grad():
        m._dec._classifier.weight.mul_(20)
    x = audio(4, seed=5)
    cached, recomputed = m.generate(x, until_all_stopped=False), m.generate_recomputing(x)
    assert cached.shape == (4, MAX_LEN) and cached.dtype == torch.long
    assert (cached[:, 0] == START).all()
    assert len(torch.unique(cached)) > 5
    assert torch.equal(cached, recomputed)


class _ScriptedDecoder(torch.nn.Module):
    """Emits, in row r, ">" at step stops[r] and "a" before; counts its steps."""

    def __init__(self, stops: list[int]):
        super().__init__()
        self.stops, self.steps = stops, 0

    def start(self, latent):
        self.steps = 0
        return None

    def step(self, token, state):
        logits = torch.zeros(len(self.stops), N_VOCAB)
        for row, stop in enumerate(self.stops):
            logits[row, STOP if self.steps == stop else A] = 1.0
        self.steps += 1
        return logits


def test_decoding_ends_once_every_row_has_stopped_and_reads_as_the_full_decoding():
    m = model("rnn")
    m._dec = _ScriptedDecoder([3, 9, 5])
    latent = torch.zeros(3, 4, 200)
    early = m.generate(latent=latent)
    assert m._dec.steps == 10, "the loop ends at the step where the last row stops"
    full = m.generate(latent=latent, until_all_stopped=False)
    assert m._dec.steps == MAX_LEN - 1
    assert [cut_generated(row) for row in early] == [cut_generated(row) for row in full]
    assert [decode_until_stop(row) for row in early] == ["<aaa>", "<aaaaaaaaa>", "<aaaaa>"]
    assert (early[:, 11:] == EMPTY).all() and early.shape == full.shape


def test_decoding_that_never_stops_runs_all_98_steps():
    m = model("rnn")
    m._dec = _ScriptedDecoder([3, 200])
    early = m.generate(latent=torch.zeros(2, 4, 200))
    assert m._dec.steps == MAX_LEN - 1
    assert decode_until_stop(early[1]) == "<" + "a" * (MAX_LEN - 2) + ">"


def test_cross_attention_weights_are_distributions_over_encoder_frames():
    m = model("transformer")
    weights = m.cross_attention(audio(2), torch.randint(0, N_VOCAB, (2, 98)))
    assert weights.shape == (2, 2, 98, FRAMES // 2)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 98), atol=1e-5)
    assert m._dec._cross_att._att.record is None


def test_unknown_decoder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown decoder 'lstm'"):
        build_asr_model("lstm")
