"""The skeleton's log-mel features for Question 3, batched and on any device, with torch.stft only.

The skeleton's torchaudio pipeline: power spectrogram (n_fft 400, Hann window 400, hop 160, centred with
reflect padding) -> 80 Slaney mels built for torchaudio's default 16 kHz (the clips are really 22,050 Hz:
kept for fidelity) -> log10 of the value clamped at 1e-10 -> floor at the utterance's max - 8 -> (v + 4) / 4
-> 2,754 zero frames padded on the right AFTER normalisation -> crop to the first 2,754 frames.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SAMPLE_RATE_ASSUMED = 16000  # MelScale's default sample rate, which the skeleton never overrides
N_FFT = 400
HOP = 160
N_MELS = 80
from hw2.q3.constants import N_FRAMES  # noqa: E402  (the skeleton's 2,754 padded frames)

N_FREQS = N_FFT // 2 + 1  # 201


def _hz_to_mel(hz: float) -> float:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    if hz < min_log_hz:
        return hz / f_sp
    return min_log_hz / f_sp + math.log(hz / min_log_hz) / (math.log(6.4) / 27.0)


def _mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    hz = f_sp * mels
    return torch.where(mels >= min_log_mel, min_log_hz * torch.exp(logstep * (mels - min_log_mel)), hz)


def mel_filterbank(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (201, 80) triangular filterbank with Slaney mel scale and Slaney (area) normalisation, for 0-8 kHz."""
    # Computed in float32 as torchaudio computes it, so the filters agree with its bits, not only to 1e-7.
    freqs = torch.linspace(0, SAMPLE_RATE_ASSUMED // 2, N_FREQS)
    mel_points = torch.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE_ASSUMED / 2), N_MELS + 2)
    hz_points = _mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]  # (81,)
    slopes = hz_points.unsqueeze(0) - freqs.unsqueeze(1)  # (201, 82)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    fb = fb * (2.0 / (hz_points[2:] - hz_points[:-2])).unsqueeze(0)  # equal area per filter
    return fb.to(device=device, dtype=dtype)


_FILTERBANKS: dict[tuple[str, torch.dtype], torch.Tensor] = {}
_WINDOWS: dict[tuple[str, torch.dtype], torch.Tensor] = {}


def _cached(cache: dict, make, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (str(device), dtype)
    if key not in cache:
        cache[key] = make(device, dtype)
    return cache[key]


def n_valid_frames(n_samples: int | torch.Tensor) -> int | torch.Tensor:
    """Frames of a clip of n samples before padding: 1 + n // 160 (centred STFT)."""
    return 1 + n_samples // HOP


PCM16_SCALE = np.float32(2.0 ** -15)


def pcm16_to_float32(wave: np.ndarray) -> np.ndarray:
    """16-bit PCM samples (int16) as float32 in [-1, 1], as libsndfile and torchaudio convert them (times 2^-15,
    exact in float32); float samples pass unchanged."""
    return wave.astype(np.float32) * PCM16_SCALE if wave.dtype == np.int16 else wave


def pad_waveforms(waveforms: list[np.ndarray | torch.Tensor], device: torch.device | str | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded float32 batch (B, longest) and the lengths (B,) for `log_mel(batch, lengths)`."""
    lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
    batch = torch.zeros(len(waveforms), int(lengths.max()), dtype=torch.float32)
    for row, wave in zip(batch, waveforms):
        row[: len(wave)] = torch.as_tensor(wave)
    return batch.to(device), lengths.to(device)


# On CPU, clips go through one at a time, each cut to its own length: the FFT's working set stays in cache
# (measured here with one thread: 1-4 clips per pass ran about 3x faster than 64) and no padding is
# transformed. A GPU takes the whole batch in one pass.
CPU_CHUNK = 1


def log_mel(
    waveforms: torch.Tensor | np.ndarray,
    lengths: torch.Tensor | np.ndarray | list[int] | None = None,
    n_frames: int | None = N_FRAMES,
) -> torch.Tensor:
    """Log-mel features of one clip (N,) -> (80, n_frames) or a right-padded batch (B, N) -> (B, 80, n_frames).

    `lengths` (B,) gives each clip's true number of samples; every clip's features then equal those of the
    clip computed alone (its own reflect padding, per-utterance max and frame count 1 + length // 160; frames
    past that are 0). Without it every row is a whole clip. `n_frames=None` gives 1 + N // 160 frames (the
    batch width's) instead of padding/cropping to 2,754. Runs on the waveforms' device.
    """
    x = torch.as_tensor(waveforms)
    if not x.is_floating_point():
        raise ValueError(f"waveforms must be floating point samples in [-1, 1], got dtype {x.dtype}")
    single = x.dim() == 1
    if single:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"waveforms must be (N,) or (batch, N), got shape {tuple(x.shape)}")
    batch, width = x.shape
    if lengths is None:
        lens = torch.full((batch,), width, dtype=torch.long, device=x.device)
    else:
        lens = torch.as_tensor(lengths, dtype=torch.long, device=x.device).reshape(-1)
        if lens.numel() != batch:
            raise ValueError(f"{lens.numel()} lengths for a batch of {batch} waveforms")
    pad = N_FFT // 2
    shortest, longest = int(lens.min()), int(lens.max())  # one host sync, to validate
    if shortest <= pad or longest > width:
        raise ValueError(
            f"clip lengths must lie in ({pad}, {width}] samples (reflect padding needs more than {pad}); "
            f"got {shortest}..{longest}"
        )
    n_out = int(n_valid_frames(width)) if n_frames is None else n_frames
    if x.device.type != "cpu" or batch <= CPU_CHUNK:
        feats = _log_mel(x, lens, n_out)
    else:
        feats = torch.empty(batch, N_MELS, n_out, dtype=x.dtype)
        for i in range(0, batch, CPU_CHUNK):
            chunk_lens = lens[i:i + CPU_CHUNK]
            feats[i:i + CPU_CHUNK] = _log_mel(x[i:i + CPU_CHUNK, : int(chunk_lens.max())], chunk_lens, n_out)
    return feats[0] if single else feats


def _log_mel(x: torch.Tensor, lens: torch.Tensor, n_out: int) -> torch.Tensor:
    """log_mel of a validated (B, N) batch, with n_out output frames."""
    batch, width = x.shape
    device, dtype, pad = x.device, x.dtype, N_FFT // 2
    # Reflect-pad every clip at its own end (torch.stft's center=True would reflect the batch's zero padding):
    # the start is the same for all clips; each end is gathered from its clip's last samples.
    padded = x.new_zeros(batch, width + 2 * pad)
    padded[:, pad:pad + width] = x
    padded[:, :pad] = x[:, 1:pad + 1].flip(1)
    k = torch.arange(pad, device=device)
    ends = lens.unsqueeze(1)
    padded.scatter_(1, ends + pad + k, torch.gather(x, 1, ends - 2 - k))

    window = _cached(_WINDOWS, lambda d, t: torch.hann_window(N_FFT, device=d, dtype=t), device, dtype)
    spec = torch.stft(padded, N_FFT, hop_length=HOP, win_length=N_FFT, window=window, center=False,
                      return_complex=True).abs().pow(2)  # (B, 201, T)
    fb = _cached(_FILTERBANKS, mel_filterbank, device, dtype)
    mel = torch.matmul(spec.transpose(1, 2), fb).transpose(1, 2)  # (B, 80, T)
    logs = torch.clamp(mel, min=1e-10).log10()

    frames = logs.shape[-1]
    valid = torch.arange(frames, device=device).unsqueeze(0) < n_valid_frames(lens).unsqueeze(1)  # (B, T)
    valid = valid.unsqueeze(1)
    peak = logs.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
    feats = (torch.maximum(logs, peak - 8.0) + 4.0) / 4.0
    feats = feats.masked_fill(~valid, 0.0)[..., :n_out]
    if feats.shape[-1] < n_out:  # zeros added after normalisation, as the skeleton's Pad
        feats = torch.nn.functional.pad(feats, (0, n_out - feats.shape[-1]))
    return feats
