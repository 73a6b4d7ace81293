"""A stand-in corpus is named by its audio too: each clip's digest is recorded when the corpus is made, a load
checks sizes and modification times and hashes again only what differs, and a swapped clip makes custom data."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from hw2.q3 import ljspeech as lj


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return lj.make_standin(tmp_path_factory.mktemp("corpus"), 4, grammar="short")


@pytest.fixture
def copy(corpus, tmp_path):
    target = tmp_path / corpus.name
    shutil.copytree(corpus, target)  # new modification times: every clip is hashed again once
    return target


def test_every_clip_is_recorded_when_the_corpus_is_made(corpus):
    audio = json.loads((corpus / "standin.json").read_text())["audio"]
    assert sorted(audio) == sorted(c.id for c in lj.read_metadata(corpus))
    assert all(len(entry) == 3 and len(entry[2]) == 64 for entry in audio.values())
    assert lj.verify_audio(corpus) == []


def test_a_touched_or_copied_clip_keeps_the_name_and_is_not_hashed_twice(corpus, copy, monkeypatch):
    name = lj.data_source(corpus)
    assert name.startswith("standin-") and lj.data_source(copy) == name
    wav = copy / "wavs" / f"{lj.read_metadata(copy)[0].id}.wav"
    os.utime(wav, ns=(1, 1))
    hashed = []
    real = lj._clip_entry
    monkeypatch.setattr(lj, "_clip_entry", lambda path: hashed.append(path.name) or real(path))
    assert lj.data_source(copy) == name and hashed == [wav.name]  # only the touched clip
    assert lj.data_source(copy) == name and hashed == [wav.name]  # and its new time is recorded


def test_a_swapped_clip_makes_custom_data_named_by_its_audio(corpus, copy):
    ids = [c.id for c in lj.read_metadata(copy)]
    shutil.copyfile(copy / "wavs" / f"{ids[1]}.wav", copy / "wavs" / f"{ids[0]}.wav")  # same format, other audio
    swapped = lj.data_source(copy)
    assert swapped.startswith("custom-") and swapped != lj.data_source(corpus)
    assert lj.verify_audio(copy) == [ids[0]]
    (copy / "wavs" / f"{ids[0]}.wav").unlink()
    assert lj.data_source(copy).startswith("custom-") and lj.data_source(copy) != swapped


@pytest.mark.slow
def test_data_verify_hashes_every_clip_and_names_those_that_differ(smoke_runs, tmp_path, monkeypatch, capsys):
    from hw2.__main__ import main

    data = tmp_path / "data"
    shutil.copytree(smoke_runs.data, data, symlinks=True)
    monkeypatch.setenv("HW2_DATA_DIR", str(data))
    assert main(["data", "verify", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "q1: synthetic: verified" in out and "q3: standin-" in out and out.count("verified") == 3
    (corpus,) = data.glob("ljspeech-short-standin-*")
    ids = [c.id for c in lj.read_metadata(corpus)]
    shutil.copyfile(corpus / "wavs" / f"{ids[1]}.wav", corpus / "wavs" / f"{ids[0]}.wav")
    assert main(["data", "verify", "--profile", "smoke"]) == 1
    assert "q3: custom-" in (out := capsys.readouterr().out) and f"1 file(s) differ from the record: {ids[0]}" in out
