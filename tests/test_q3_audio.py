"""Our torch.stft log-mel features equal the skeleton's torchaudio pipeline, alone and batched: against
torchaudio's own output for one clip (fixtures/logmel_reference.npz, see fixtures/README.md) and against the
documented pipeline written out below in numpy float64, so the claim does not rest on that one file."""
from pathlib import Path

import numpy as np
import pytest
import torch

from hw2.q3 import audio
from hw2.q3.audio import N_FRAMES, N_MELS, log_mel, mel_filterbank

# A waveform, the exact features torchaudio's pipeline gives for it, and torchaudio's filterbank (made with
# torchaudio where it imports; how, in fixtures/README.md).
REFERENCE = np.load(Path(__file__).parent / "fixtures" / "logmel_reference.npz")


def test_constants():
    assert (audio.SAMPLE_RATE_ASSUMED, audio.N_FFT, audio.HOP, N_MELS, N_FRAMES) == (16000, 400, 160, 80, 2754)
    assert int(REFERENCE["sample_rate"]) == 22050


def test_filterbank_equals_torchaudio_slaney_filterbank():
    fb = mel_filterbank()
    assert fb.shape == (201, 80) and fb.dtype == torch.float32
    np.testing.assert_allclose(fb.numpy(), REFERENCE["mel_fbank"], rtol=0, atol=1e-5)
    assert mel_filterbank(dtype=torch.float64).dtype == torch.float64


def test_features_equal_the_reference_to_1e_5():
    waveform = torch.from_numpy(REFERENCE["waveform"])
    feats = log_mel(waveform)
    assert feats.shape == (80, 2754) and feats.dtype == torch.float32
    np.testing.assert_allclose(feats.numpy(), REFERENCE["features"], rtol=0, atol=1e-5)
    # Padding comes after normalisation: exact zeros past the clip's 1 + 55125 // 160 = 345 frames.
    assert (feats[:, 345:] == 0).all() and (feats[:, :345] != 0).any(dim=0).all()


def test_numpy_input_is_accepted():
    feats = log_mel(REFERENCE["waveform"])
    np.testing.assert_allclose(feats.numpy(), REFERENCE["features"], rtol=0, atol=1e-5)


def test_batched_features_equal_each_clip_computed_alone():
    full = torch.from_numpy(REFERENCE["waveform"])
    rng = np.random.default_rng(0)
    # 201 is the shortest clip reflect padding allows.
    lengths = [55125, 30001, 201, 12345, 40000, 1000]
    clips = [full[-n:] * float(rng.uniform(0.2, 1.5)) for n in lengths]
    batch, lens = audio.pad_waveforms(clips)
    assert batch.shape == (6, 55125) and lens.tolist() == lengths
    assert (batch[1, 30001:] == 0).all() and torch.equal(batch[1, :30001], clips[1])
    feats = log_mel(batch, lengths=lens)
    assert feats.shape == (6, 80, 2754)
    for k, clip in enumerate(clips):
        alone = log_mel(clip)
        np.testing.assert_allclose(feats[k].numpy(), alone.numpy(), rtol=0, atol=1e-5)
        assert (feats[k, :, 1 + lengths[k] // 160 :] == 0).all()


def test_chunked_cpu_path_equals_one_pass(monkeypatch):
    wave = torch.from_numpy(REFERENCE["waveform"])
    batch, lengths = audio.pad_waveforms([wave[1000 * i: 1000 * i + 20000 + 4000 * i] * (0.3 + i) for i in range(7)])
    chunked = log_mel(batch, lengths, n_frames=None)
    monkeypatch.setattr(audio, "CPU_CHUNK", 64)
    whole = log_mel(batch, lengths, n_frames=None)
    assert chunked.shape == whole.shape == (7, 80, 1 + 44000 // 160)
    np.testing.assert_allclose(chunked.numpy(), whole.numpy(), rtol=0, atol=1e-5)


def test_n_frames_none_keeps_the_batch_frames_and_small_n_frames_crops():
    wave = torch.from_numpy(REFERENCE["waveform"])
    batch = torch.stack([wave, wave])
    assert log_mel(batch, n_frames=None).shape == (2, 80, 345)
    cropped = log_mel(wave, n_frames=100)
    np.testing.assert_allclose(cropped.numpy(), REFERENCE["features"][:, :100], rtol=0, atol=1e-5)


def test_bad_input_is_rejected_clearly():
    with pytest.raises(ValueError, match="more than 200"):
        log_mel(torch.zeros(200))
    with pytest.raises(ValueError, match="3 lengths for a batch of 2"):
        log_mel(torch.zeros(2, 1000), lengths=[1000, 1000, 1000])
    with pytest.raises(ValueError, match="floating point"):
        log_mel(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="shape"):
        log_mel(torch.zeros(1, 2, 1000))
    with pytest.raises(ValueError, match="clip lengths"):
        log_mel(torch.zeros(2, 1000), lengths=[1000, 1001])


# --- the skeleton's pipeline from its documented parameters, in numpy float64 --------------------------------
# Spectrogram(n_fft=400, win_length=400, hop_length=160, window_fn=torch.hann_window (periodic), power=2,
# center=True, pad_mode="reflect", normalized=False, onesided) -> MelScale(n_mels=80, sample_rate=16000 (the
# default the skeleton keeps, although the clips are 22,050 Hz), f_min=0, f_max=8000, n_stft=201,
# norm="slaney", mel_scale="slaney") -> log10(clamp(x, 1e-10)) -> max(x, utterance max - 8) -> (x + 4) / 4
# -> 2,754 zero frames padded on the right -> the first 2,754 frames. Nothing here is taken from hw2.q3.audio.


def slaney_hz_to_mel(hz):
    """Slaney's (Auditory Toolbox) mel scale: 3 mels per 200 Hz below 1 kHz, logarithmic above: 27 mels per
    factor 6.4, so 1 kHz is mel 15."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz < 1000.0, hz * 3.0 / 200.0, log_part)


def slaney_mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * np.exp((np.maximum(mel, 15.0) - 15.0) * np.log(6.4) / 27.0))


def slaney_filterbank(sample_rate=16000, n_fft=400, n_mels=80) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels): triangles between mel-spaced edges from 0 Hz to the Nyquist frequency the
    filterbank assumes, each scaled to area 1 (Slaney's norm: 2 / (upper edge - lower edge))."""
    freqs = np.arange(n_fft // 2 + 1) * (sample_rate / 2) / (n_fft // 2)
    edges = slaney_mel_to_hz(np.linspace(0.0, float(slaney_hz_to_mel(sample_rate / 2)), n_mels + 2))
    fb = np.zeros((freqs.size, n_mels))
    for m in range(n_mels):
        low, centre, high = edges[m:m + 3]
        rising, falling = (freqs - low) / (centre - low), (high - freqs) / (high - centre)
        fb[:, m] = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (high - low)
    return fb


def skeleton_log_mel(wave, n_frames=2754, n_fft=400, hop=160) -> np.ndarray:
    """(80, n_frames) float64 features of one clip, frame by frame with numpy.fft.rfft."""
    x = np.asarray(wave, dtype=np.float64)
    pad = n_fft // 2
    x = np.concatenate([x[1:pad + 1][::-1], x, x[-pad - 1:-1][::-1]])  # reflect: the edge sample is not repeated
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann, torch.hann_window's
    n = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[t * hop:t * hop + n_fft] * window for t in range(n)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (n, 201)
    logs = np.log10(np.maximum(power @ slaney_filterbank(), 1e-10)).T  # (80, n)
    logs = (np.maximum(logs, logs.max() - 8.0) + 4.0) / 4.0
    out = np.zeros((N_MELS, n_frames))
    out[:, :min(n, n_frames)] = logs[:, :n_frames]
    return out


def _chirp(n: int = 31_337) -> np.ndarray:
    """A decaying chirp rising from 100 Hz to 4.4 kHz in noise, at 22,050 Hz, of a length no multiple of the hop,
    with 4,000 samples of digital silence (whose frames only the floor at max - 8 keeps finite)."""
    t = np.arange(n) / 22050
    noise = np.random.default_rng(0).standard_normal(n)
    wave = (0.5 * np.sin(2 * np.pi * (100 + 1500 * t) * t) + 0.05 * noise) * np.exp(-t)
    wave[12_000:16_000] = 0.0
    return wave.astype(np.float32)


def test_slaney_filterbank_from_its_definition():
    fb = slaney_filterbank()
    # Mel 15 is 1 kHz on both branches; the 80 triangles tile 0-8 kHz, each of area 1 in Hz.
    assert slaney_hz_to_mel(1000.0) == pytest.approx(15.0) and slaney_mel_to_hz(15.0) == pytest.approx(1000.0)
    assert fb.shape == (201, 80) and fb[0].sum() == 0 and (fb.max(axis=0) > 0).all()
    # ours is computed in float32 as torchaudio does: its weights (at most 0.026) round at about 6e-8
    np.testing.assert_allclose(mel_filterbank(dtype=torch.float64).numpy(), fb, rtol=0, atol=2e-7)
    np.testing.assert_allclose(REFERENCE["mel_fbank"], fb, rtol=0, atol=2e-7)


# Our features and torchaudio's are float32. The FFT's rounding is relative to a frame's whole energy, and the
# features keep bands down to 8 decades (10^-8 in power) below the utterance's peak, where that rounding is
# ~1e-4 of the band's power: 4e-5 in log10, 1e-5 in a feature (measured: 9e-6 on the fixture's clip, 1.6e-5
# on the chirp, 1.3e-5 for torchaudio's own output). 4e-5 leaves room for another FFT library; a symmetric
# instead of periodic window, zero instead of reflect padding, 22,050 Hz mels, a floor at max - 7 or the
# natural log each move some feature of these clips by 0.02 or more (measured).
FLOAT32_ATOL = 4e-5


@pytest.mark.parametrize("clip", ["fixture", "chirp"])
def test_features_equal_the_float64_pipeline(clip):
    wave = REFERENCE["waveform"] if clip == "fixture" else _chirp()
    expected = skeleton_log_mel(wave)
    n_valid = 1 + len(wave) // 160
    assert (expected[:, n_valid:] == 0).all()  # padded after normalisation
    if clip == "chirp":  # the floor at the utterance's max - 8 (features: max - 2) is exercised
        assert np.isclose(expected[:, :n_valid], expected.max() - 2, rtol=0, atol=1e-12).sum() >= 20 * N_MELS
    np.testing.assert_allclose(log_mel(torch.from_numpy(wave)).numpy(), expected, rtol=0, atol=FLOAT32_ATOL)
    cropped = log_mel(torch.from_numpy(wave), n_frames=120).numpy()
    np.testing.assert_allclose(cropped, skeleton_log_mel(wave, n_frames=120), rtol=0, atol=FLOAT32_ATOL)


def test_the_fixture_is_the_documented_pipeline():
    """torchaudio's stored output is what the float64 pipeline gives for the stored clip: the fixture holds
    what its README says, not some other transform's output."""
    np.testing.assert_allclose(REFERENCE["features"], skeleton_log_mel(REFERENCE["waveform"]), rtol=0,
                               atol=FLOAT32_ATOL)
