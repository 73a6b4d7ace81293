"""`python -m hw2 rehearse`: the full profile for one step through the runner, and what it relies on: a step limit
that leaves every other run's key alone, int16 waveforms that give the float32 path's features bit for bit, and
the feature cache planned split by split."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from hw2.engine import store
from hw2.q1 import config as q1_config
from hw2.q2 import config as q2_config
from hw2.q3 import config as q3_config
from tests.conftest import ROOT, subprocess_env


@pytest.mark.parametrize("module", [q2_config, q3_config], ids=["q2", "q3"])
def test_the_step_limit_enters_a_key_only_when_set(module, monkeypatch):
    monkeypatch.delenv("HW2_REHEARSAL", raising=False)
    for profile in ("full", "quick", "smoke"):
        cfg = module.for_profile(profile)
        before = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "max_steps"}  # as keys were made
        assert store._jsonable(cfg) == store._jsonable(before)
        assert store.RunSpec.create("x", cfg, profile, "d").key == store.RunSpec.create("x", before, profile, "d").key
    monkeypatch.setenv("HW2_REHEARSAL", "few-steps")
    rehearsed = module.for_profile("full")
    assert store._jsonable(rehearsed)["max_steps"] == module.REHEARSALS["few-steps"]["max_steps"]
    assert module.for_profile("quick") == module.for_profile("quick", max_steps=None)  # other profiles unchanged


def test_the_rehearsal_variable_changes_only_the_full_profile_and_is_checked(monkeypatch):
    monkeypatch.setenv("HW2_REHEARSAL", "one-step")
    assert q1_config.for_profile("full").lengths == q1_config.AttentionBenchConfig().lengths[:3]
    assert q3_config.for_profile("full").n_clips == 20 and q3_config.for_profile("smoke").n_clips == 40
    assert "max_steps" in q3_config.protocol_deviations(q3_config.for_profile("full"))
    monkeypatch.setenv("HW2_REHEARSAL", "lots")
    with pytest.raises(q3_config.ConfigError, match="HW2_REHEARSAL must be one of"):
        q3_config.for_profile("full")


def test_int16_waveforms_give_the_float32_paths_features_bit_for_bit(tmp_path):
    """16-bit PCM kept as int16 on the host: the same float32 samples as libsndfile's float32 read (the loader
    before), hence identical features, cached or per batch."""
    from hw2.q3 import ljspeech, train
    from hw2.q3.audio import log_mel

    rng = np.random.default_rng(0)
    (tmp_path / "wavs").mkdir()
    clips = []
    for i, n in enumerate((3000, 5000, 4100)):
        samples = rng.integers(-32768, 32768, n).astype(np.int16)
        samples[:2] = (-32768, 32767)
        sf.write(tmp_path / "wavs" / f"C{i}.wav", samples, 22050, subtype="PCM_16")
        clips.append(f"C{i}")
    before = [sf.read(tmp_path / "wavs" / f"{c}.wav", dtype="float32")[0] for c in clips]
    kept = [ljspeech.load_waveform(tmp_path, c, keep_pcm16=True) for c in clips]
    assert all(w.dtype == np.int16 for w in kept)
    for clip, old in zip(clips, before):
        assert np.array_equal(ljspeech.load_waveform(tmp_path, clip).view(np.int32), old.view(np.int32))
    reference = torch.stack([log_mel(torch.from_numpy(w), n_frames=60) for w in before])
    for cache_bytes in (1 << 30, 0):
        split = train.SplitData([(w, "a b") for w in kept], 60, "cpu", cache_bytes)
        assert split.waves == [] if cache_bytes else split.waves[0].dtype == np.int16
        assert torch.equal(split.audio(slice(0, 3)), reference)


def test_a_float_wav_stays_float32(tmp_path):
    from hw2.q3 import ljspeech

    (tmp_path / "wavs").mkdir()
    samples = np.linspace(-0.5, 0.5, 3000, dtype=np.float32)
    sf.write(tmp_path / "wavs" / "F.wav", samples, 22050, subtype="FLOAT")
    wave = ljspeech.load_waveform(tmp_path, "F", keep_pcm16=True)
    assert wave.dtype == np.float32 and np.array_equal(wave, samples)


def test_the_feature_cache_takes_splits_in_order_while_they_fit():
    from hw2.q3 import train

    sizes = {"train": 8, "validation": 1, "test": 3}
    assert train.cached_splits(sizes, 12) == {"train": True, "validation": True, "test": True}
    assert train.cached_splits(sizes, 10) == {"train": True, "validation": True, "test": False}
    assert train.cached_splits(sizes, 5) == {"train": False, "validation": True, "test": True}
    assert train.feature_bytes(9825, 2754) == 9825 * 80 * 2754 * 4


@pytest.mark.slow
def test_one_step_rehearsal_runs_every_full_experiment_and_projects(tmp_path, octmnist_standin):
    """The test suite's rehearsal: one optimizer step an epoch, Question 3 interrupted after its first checkpoint
    and resumed, the report helpers reading the runs, projections and memory printed."""
    from hw2.q2 import octmnist

    data = tmp_path / "data"
    data.mkdir()
    (data / octmnist.FILE).symlink_to(octmnist_standin)
    done = subprocess.run([sys.executable, "-m", "hw2", "rehearse", "--size", "one-step", "--store",
                           str(tmp_path / "scratch")], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=subprocess_env(HW2_DATA_DIR=data))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "stopped by Ctrl-C" in out and "resuming" in out
    for name in ("q1 benchmark", "q2 max-pooling", "q2 no max-pooling", "q3 rnn", "q3 transformer"):
        assert re.search(rf"\[rehearse\]   {name}: .*(min|h)\n", out), name
    assert "16 GB GPU with 12 GB of host memory" in out and "as int16" in out
