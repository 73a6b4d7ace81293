"""Our torch.stft log-mel features equal the skeleton's torchaudio pipeline, alone and batched."""
from pathlib import Path

import numpy as np
import pytest
import torch

from hw2.q3 import audio
from hw2.q3.audio import N_FRAMES, N_MELS, log_mel, mel_filterbank

# A waveform, the exact features torchaudio's pipeline gives for it, and torchaudio's filterbank.
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
