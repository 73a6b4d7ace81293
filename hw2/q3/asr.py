"""The speech recogniser of Question 3: the skeleton's encoder, both decoders, and greedy decoding.

Module names, shapes and numerics follow the course notebook (`homework-skeleton.md`, section 2.5):
pre-norm residual blocks, multi-head attention whose key projection has no bias and whose queries and keys
are each scaled by d_head^-1/4 before a float32 softmax, a convolutional audio embedding plus fixed
sinusoids (timescale 3000, [sin | cos] layout), an LSTM decoder and a causal Transformer decoder.

Greedy decoding runs from "<" as the skeleton's does, until every clip has emitted ">" (the skeleton always
runs 98 steps; what follows a stop is never read), and incrementally: the LSTM carries its state, the
Transformer keeps a key/value cache of its self-attention and computes the cross-attention keys and values of
the encoder output once. `generate_recomputing` is the skeleton's way (the whole prefix through the decoder at
every step) and is the reference the cached path is tested against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hw2.q3.audio import N_FRAMES, N_MELS
from hw2.q3.text import EMPTY, N_VOCAB, START, STOP
from hw2.q3.text import MAX_LEN as MAX_TEXT_LEN

HIDDEN = 200
N_HEADS = 2
FEED_FORWARD = 400
POS_TIMESCALE = 3000  # the skeleton's max timescale for the encoder's sinusoids
STOP_CHECK_EVERY = 8  # greedy decoding steps between checks that every row has stopped, on a GPU
from hw2.q3.constants import DECODERS  # noqa: E402


class MultiHeadAttention(nn.Module):
    """Multi-head attention as in the skeleton: `_key` has no bias; q and k are each scaled by d^-1/4.

    `fused=True` computes the same thing with `scaled_dot_product_attention` (scale 1 on the pre-scaled
    q and k). Setting `record` to a list makes the module append its attention weights
    (B, heads, T_q, T_k) there, through the explicit path.
    """

    def __init__(self, hidden_dim: int, n_heads: int, fused: bool = False):
        super().__init__()
        if hidden_dim % n_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.d_head = hidden_dim // n_heads
        self.fused = fused
        self.record: list[torch.Tensor] | None = None
        self._query = nn.Linear(hidden_dim, hidden_dim)
        self._key = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self._value = nn.Linear(hidden_dim, hidden_dim)
        self._out = nn.Linear(hidden_dim, hidden_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, heads, T, d_head)."""
        return x.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)

    def keys_values(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scaled keys and the values of `xa`, per head: what a cache keeps."""
        return self._heads(self._key(xa)) * self.d_head ** -0.25, self._heads(self._value(xa))

    def forward(self, x: torch.Tensor, xa: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Attend from `x` to `xa` (or to `x` itself); `kv` passes precomputed `keys_values`."""
        q = self._heads(self._query(x)) * self.d_head ** -0.25
        k, v = kv if kv is not None else self.keys_values(x if xa is None else xa)
        n_q = q.shape[-2]
        if mask is not None:
            mask = mask[:n_q, :n_q]
        if self.fused and self.record is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        else:
            scores = q @ k.transpose(-1, -2)
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            if self.record is not None:
                self.record.append(weights.detach())
            out = weights @ v
        return self._out(out.transpose(1, 2).flatten(2))


class ResidualAttentionBlock(nn.Module):
    """x + att(LN(x), cross_x), then x + mlp(LN(x)): pre-norm, no mask (encoder blocks, cross-attention)."""

    def __init__(self, hidden_dim: int, n_heads: int, feed_fwd_dim: int, fused: bool = False):
        super().__init__()
        self._att_norm = nn.LayerNorm(hidden_dim)
        self._att = MultiHeadAttention(hidden_dim, n_heads, fused)
        self._mlp_norm = nn.LayerNorm(hidden_dim)
        self._mlp = nn.Sequential(nn.Linear(hidden_dim, feed_fwd_dim), nn.GELU(),
                                  nn.Linear(feed_fwd_dim, hidden_dim))

    def forward(self, x: torch.Tensor, cross_x: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self._att(self._att_norm(x), cross_x, kv=kv)
        return x + self._mlp(self._mlp_norm(x))


class ResidualAttentionLayer(nn.Module):
    """x + att(LN(x), mask): the Transformer decoder's masked self-attention (`ff` is unused, no MLP)."""

    def __init__(self, hidden_dim: int, n_heads: int, feed_fwd_dim: int, fused: bool = False):
        super().__init__()
        self._att_norm = nn.LayerNorm(hidden_dim)
        self._att = MultiHeadAttention(hidden_dim, n_heads, fused)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + self._att(self._att_norm(x), mask=mask)

    def step(self, x: torch.Tensor, cache: "_SelfAttentionCache") -> torch.Tensor:
        """One new position (B, 1, H) attending to itself and the cached earlier positions."""
        h = self._att_norm(x)
        k, v = self._att.keys_values(h)
        keys, values = cache.append(k, v)
        return x + self._att(h, kv=(keys, values))


class SpeechEmbedding(nn.Module):
    """Conv1d(80->200, k3, pad 1) + GELU, Conv1d(200->200, k3, stride 2, pad 1) + GELU; (B, T/2, 200) out."""

    def __init__(self, freq_dim: int, hidden_dim: int):
        super().__init__()
        self._conv1 = nn.Conv1d(freq_dim, hidden_dim, kernel_size=3, padding=1)
        self._conv2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self._conv1(x))
        x = F.gelu(self._conv2(x))
        return x.permute(0, 2, 1)


def sinusoids(length: int, channels: int, max_timescale: float = POS_TIMESCALE) -> torch.Tensor:
    """(length, channels): [sin(pos * inv_ts) | cos(pos * inv_ts)], inv_ts[i] = exp(-i ln(ts) / (C/2 - 1))."""
    half = channels // 2
    inv_timescales = torch.exp(-math.log(max_timescale) / (half - 1) * torch.arange(half, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class AudioEncoderTransformer(nn.Module):
    """Conv embedding + fixed sinusoids, `n_layers` pre-norm blocks (self-attention, no padding mask), LN."""

    def __init__(self, n_layers: int = 2, freq_dim: int = N_MELS, time_dim: int = N_FRAMES // 2,
                 hidden_dim: int = HIDDEN, n_heads: int = N_HEADS, feed_fwd_dim: int = FEED_FORWARD,
                 fused: bool = False):
        super().__init__()
        self._embed = SpeechEmbedding(freq_dim, hidden_dim)
        self.register_buffer("_pos_embed", sinusoids(time_dim, hidden_dim))
        self._att_blocks = nn.ModuleList(
            [ResidualAttentionBlock(hidden_dim, n_heads, feed_fwd_dim, fused) for _ in range(n_layers)])
        self._out_norm = nn.LayerNorm(hidden_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 80, frames) -> (B, ceil(frames / 2), 200). With 2,754 frames the whole table is added."""
        x = self._embed(audio)
        if x.shape[1] > self._pos_embed.shape[0]:
            raise ValueError(f"{audio.shape[-1]} audio frames give {x.shape[1]} encoder positions, more than "
                             f"the {self._pos_embed.shape[0]} the position table has")
        x = x + self._pos_embed[: x.shape[1]]
        for block in self._att_blocks:
            x = block(x)
        return self._out_norm(x)


class _SelfAttentionCache:
    """Keys and values of the positions decoded so far, preallocated for all steps and filled in place."""

    def __init__(self, batch: int, n_heads: int, d_head: int, max_len: int, like: torch.Tensor):
        self.keys = like.new_empty(batch, n_heads, max_len, d_head)
        self.values = like.new_empty(batch, n_heads, max_len, d_head)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = k.shape[-2]
        self.keys[:, :, self.length:self.length + n] = k
        self.values[:, :, self.length:self.length + n] = v
        self.length += n
        return self.keys[:, :, :self.length], self.values[:, :, :self.length]


@dataclass
class DecoderState:
    """What incremental decoding carries between steps."""

    cross_kv: tuple[torch.Tensor, torch.Tensor]  # the encoder output's keys/values, computed once
    position: int = 0
    lstm: tuple[torch.Tensor, torch.Tensor] | None = None
    cache: _SelfAttentionCache | None = None


class TextDecoderRecurrent(nn.Module):
    """Embed -> LN -> LSTM -> cross-attention block on the encoder output -> LN -> classifier."""

    def __init__(self, n_layers: int = 1, freq_dim: int = N_VOCAB, hidden_dim: int = HIDDEN,
                 n_heads: int = N_HEADS, feed_fwd_dim: int = FEED_FORWARD, fused: bool = False, **kwargs):
        super().__init__()  # `time_dim` of the run cell lands in kwargs, unused, as in the skeleton
        self._embed = nn.Embedding(freq_dim, hidden_dim)
        self._rnn_norm = nn.LayerNorm(hidden_dim)
        self._rnn = nn.LSTM(hidden_dim, hidden_dim, num_layers=n_layers, batch_first=True)
        self._cross_att = ResidualAttentionBlock(hidden_dim, n_heads, feed_fwd_dim, fused)
        self._out_norm = nn.LayerNorm(hidden_dim)
        self._classifier = nn.Linear(hidden_dim, freq_dim)

    def _forward(self, x: torch.Tensor, latent: torch.Tensor | None, state=None,
                 cross_kv: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(B, T) ids -> (logits (B, 35, T), LSTM state (h, c)); `cross_kv` replaces `latent` if given."""
        h, state = self._rnn(self._rnn_norm(self._embed(x)), state)
        h = self._cross_att(h, latent, kv=cross_kv)
        return self._classifier(self._out_norm(h)).permute(0, 2, 1), state

    def forward(self, x: torch.Tensor, latent: torch.Tensor, state=None) -> torch.Tensor:
        return self._forward(x, latent, state)[0]

    def start(self, latent: torch.Tensor) -> DecoderState:
        return DecoderState(cross_kv=self._cross_att._att.keys_values(latent))

    def step(self, token: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Logits (B, 35) for the next token after `token` (B, 1); the LSTM state is carried."""
        logits, state.lstm = self._forward(token, None, state.lstm, cross_kv=state.cross_kv)
        state.position += 1
        return logits[:, :, -1]


class TextDecoderTransformer(nn.Module):
    """Embed + learned positions -> causal self-attention layer -> cross-attention block -> LN -> classifier."""

    def __init__(self, freq_dim: int = N_VOCAB, time_dim: int = MAX_TEXT_LEN, hidden_dim: int = HIDDEN,
                 n_heads: int = N_HEADS, feed_fwd_dim: int = FEED_FORWARD, fused: bool = False):
        super().__init__()
        self._embed = nn.Embedding(freq_dim, hidden_dim)
        self._pos_embed = nn.Parameter(torch.rand(time_dim - 1, hidden_dim))  # U[0, 1), as the skeleton
        self._att = ResidualAttentionLayer(hidden_dim, n_heads, feed_fwd_dim, fused)
        self._cross_att = ResidualAttentionBlock(hidden_dim, n_heads, feed_fwd_dim, fused)
        self._out_norm = nn.LayerNorm(hidden_dim)
        self._classifier = nn.Linear(hidden_dim, freq_dim)
        self.register_buffer("_mask", torch.full((time_dim, time_dim), float("-inf")).triu_(1),
                             persistent=False)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """(B, T) ids, T <= 98, and (B, T_e, H) -> logits (B, 35, T)."""
        n = x.shape[1]
        h = self._embed(x) + self._pos_embed[:n]
        h = self._att(h, mask=self._mask)
        h = self._cross_att(h, latent)
        return self._classifier(self._out_norm(h)).permute(0, 2, 1)

    def start(self, latent: torch.Tensor) -> DecoderState:
        att = self._att._att
        cache = _SelfAttentionCache(latent.shape[0], att.n_heads, att.d_head, self._pos_embed.shape[0], latent)
        return DecoderState(cross_kv=self._cross_att._att.keys_values(latent), cache=cache)

    def step(self, token: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Logits (B, 35) for the next token after `token` (B, 1) at position `state.position`."""
        h = self._embed(token) + self._pos_embed[state.position]
        h = self._att.step(h, state.cache)
        h = self._cross_att(h, kv=state.cross_kv)
        state.position += 1
        return self._classifier(self._out_norm(h))[:, -1]


class SpeechToText(nn.Module):
    """The skeleton's `SpeechToText`: `_enc` (audio encoder) and `_dec` (one of the two decoders)."""

    def __init__(self, decoder: str = "rnn", n_encoder_layers: int = 2, fused: bool = False,
                 max_text_len: int = MAX_TEXT_LEN):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}: use one of {', '.join(DECODERS)}")
        self.decoder_type = decoder
        self.max_text_len = max_text_len
        self._enc = AudioEncoderTransformer(n_layers=n_encoder_layers, fused=fused)
        if decoder == "rnn":
            self._dec = TextDecoderRecurrent(n_layers=1, time_dim=max_text_len, fused=fused)
        else:
            self._dec = TextDecoderTransformer(time_dim=max_text_len, fused=fused)

    def forward(self, audio: torch.Tensor, text_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: (B, 80, frames), (B, T) ids -> logits (B, 35, T)."""
        return self._dec(text_in, self._enc(audio))

    @torch.no_grad()
    def generate(self, audio: torch.Tensor | None = None, latent: torch.Tensor | None = None,
                 until_all_stopped: bool = True) -> torch.Tensor:
        """Greedy decoding from "<": (B, 99) ids. Pass `latent` to reuse an encoding.

        The skeleton always runs all 98 steps. Here the loop ends once every row has emitted ">" and the
        positions left are "@": everything read from a generation is cut at its first ">"
        (`text.cut_after_stop`), so what is read is the skeleton's. On a GPU the check, a host
        synchronisation, runs every `STOP_CHECK_EVERY` steps. `until_all_stopped=False` runs all 98 steps.
        """
        latent = self._enc(audio) if latent is None else latent
        tokens = torch.full((latent.shape[0], self.max_text_len), START, dtype=torch.long, device=latent.device)
        stopped = torch.zeros(latent.shape[0], dtype=torch.bool, device=latent.device)
        check_every = 1 if latent.device.type == "cpu" else STOP_CHECK_EVERY
        state = self._dec.start(latent)
        for t in range(self.max_text_len - 1):
            tokens[:, t + 1] = self._dec.step(tokens[:, t:t + 1], state).argmax(-1)
            if until_all_stopped:
                stopped |= tokens[:, t + 1] == STOP
                if (t + 1) % check_every == 0 and bool(stopped.all()):
                    tokens[:, t + 2:] = EMPTY
                    break
        return tokens

    @torch.no_grad()
    def generate_recomputing(self, audio: torch.Tensor | None = None,
                             latent: torch.Tensor | None = None) -> torch.Tensor:
        """The reference: every step runs the whole prefix through the decoder and keeps the last argmax."""
        latent = self._enc(audio) if latent is None else latent
        tokens = torch.full((latent.shape[0], 1), START, dtype=torch.long, device=latent.device)
        for _ in range(self.max_text_len - 1):
            logits = self._dec(tokens, latent)
            tokens = torch.cat([tokens, logits.argmax(dim=-2)[:, -1:]], dim=1)
        return tokens

    @torch.no_grad()
    def cross_attention(self, audio: torch.Tensor, text_in: torch.Tensor) -> torch.Tensor:
        """The decoder's cross-attention weights under teacher forcing: (B, heads, T_text, T_audio/2)."""
        att = self._dec._cross_att._att
        att.record = []
        try:
            self(audio, text_in)
            return att.record[0].float()
        finally:
            att.record = None


def build_asr_model(decoder: str = "rnn", n_encoder_layers: int = 2, fused: bool = False) -> SpeechToText:
    """The model of run cell (a) (`decoder="rnn"`) or (b) (`"transformer"`), with the skeleton's sizes."""
    return SpeechToText(decoder, n_encoder_layers, fused)
