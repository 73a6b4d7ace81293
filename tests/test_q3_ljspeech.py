"""LJ Speech layout reading, splits, and the espeak-ng stand-in corpus (tiny corpora in tmp dirs)."""
import hashlib
import json
import re
import shutil
import string

import numpy as np
import pytest
import soundfile as sf

from hw2.q3 import audio, sentences, text
from hw2.q3 import ljspeech as lj


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """A 6-clip stand-in corpus, generated once for this module."""
    return lj.prepare(tmp_path_factory.mktemp("data"), 6, seed=0, workers=2)


def write_corpus(root, rows, rate=22050, channels=1):
    """A corpus in the real LJ Speech layout: rows of (id, raw text, normalized text, n samples)."""
    wavs = root / "wavs"
    wavs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    samples = {}
    for clip_id, _, _, n in rows:
        pcm = rng.integers(-20000, 20000, size=(n, channels), dtype=np.int16)
        sf.write(wavs / f"{clip_id}.wav", pcm, rate, subtype="PCM_16")
        samples[clip_id] = pcm[:, 0]
    (root / "metadata.csv").write_text("".join(f"{i}|{r}|{t}\n" for i, r, t, _ in rows), encoding="utf-8")
    return samples


# --- splits and the real layout --------------------------------------------------------------------------

def test_split_sizes_of_the_homework_and_of_other_corpora():
    splits = lj.split_ranges(13_100)
    assert splits == {"train": range(0, 9825), "validation": range(9825, 10480), "test": range(10480, 13100)}
    for n, sizes in ((6, (4, 1, 1)), (1500, (1125, 75, 300)), (300, (225, 15, 60)), (3, (1, 1, 1))):
        s = lj.split_ranges(n)
        assert (len(s["train"]), len(s["validation"]), len(s["test"])) == sizes
        assert s["train"].start == 0 and s["train"].stop == s["validation"].start
        assert s["validation"].stop == s["test"].start and s["test"].stop == n
    with pytest.raises(lj.CorpusError, match="at least 3"):
        lj.split_ranges(2)


def test_real_layout_is_read_with_the_normalized_transcript(tmp_path):
    real = tmp_path / "LJSpeech-1.1"
    rows = [(f"LJ001-{i:04d}", f"Raw {i}: \"Mr. X\"", f"Raw {i}: \"Mister X\" number {i}", 4000 + 10 * i)
            for i in range(1, 11)]
    samples = write_corpus(real, rows)
    assert lj.prepare(tmp_path, 500) == real  # the real corpus wins, whatever the stand-in size
    clips = lj.read_metadata(real)
    assert clips[0] == lj.Clip("LJ001-0001", 'Raw 1: "Mister X" number 1')
    assert len(clips) == 10
    wave = lj.load_waveform(real, "LJ001-0003")
    assert wave.dtype == np.float32 and wave.shape == (4030,)
    np.testing.assert_array_equal(wave, samples["LJ001-0003"] / np.float32(32768))
    test_split = lj.load_split(real, "test")  # 10 clips: 7 / 1 / 2
    assert [t for _, t in test_split] == [c.text for c in clips[8:]]
    assert [len(w) for w, _ in test_split] == [4090, 4100]
    # The layout alone does not make LJ Speech: ten clips are someone's own corpus.
    assert re.fullmatch(r"custom-[0-9a-f]{8}", lj.data_source(real))


def _lj_metadata(folder, edit=None, clips=False):
    """A metadata.csv with LJ Speech 1.1's 13,100 ids (50 chapters), optionally with one transcript edited, and
    with `clips` an (empty) wav file for each."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"LJ{1 + i // 262:03d}-{1 + i % 262:04d}" for i in range(lj.REAL_CLIPS)]
    texts = {i: "a sentence" for i in ids} | ({ids[5]: edit} if edit else {})
    (folder / "metadata.csv").write_text("".join(f"{i}|{texts[i]}|{texts[i]}\n" for i in ids), encoding="utf-8")
    if clips:
        (folder / "wavs").mkdir()
        for clip_id in ids:
            (folder / "wavs" / f"{clip_id}.wav").touch()
    return folder


def test_data_is_identified_by_its_content_not_by_a_side_file(tmp_path, standin, monkeypatch):
    folder = _lj_metadata(tmp_path / "real", clips=True)
    # LJ Speech's 13,100 ids do not make LJ Speech 1.1: its metadata.csv (set here in-process) does, with every clip
    assert lj.data_source(folder).startswith("custom-")
    monkeypatch.setattr(lj, "METADATA_SHA256", hashlib.sha256((folder / "metadata.csv").read_bytes()).hexdigest())
    real = lj.data_source(folder)
    assert real.startswith("real-")
    edited = lj.data_source(_lj_metadata(tmp_path / "edited", edit="another sentence", clips=True))
    assert edited.startswith("custom-") and edited[-8:] != real[-8:], "two different copies must never pool"
    # A stand-in copied without its standin.json is not known to be one.
    copy = tmp_path / "copy"
    shutil.copytree(standin, copy)
    (copy / "standin.json").unlink()
    assert lj.data_source(copy).startswith("custom-")
    # Another corpus copied over a stand-in whose standin.json was left behind is not the stand-in.
    replaced = tmp_path / "replaced"
    shutil.copytree(standin, replaced)
    (replaced / "metadata.csv").write_text(
        (replaced / "metadata.csv").read_text(encoding="utf-8").replace("|", "|x", 1), encoding="utf-8")
    assert lj.data_source(replaced).startswith("custom-")
    # The LJ Speech corpus copied over a stand-in, marker left behind: real.
    over = tmp_path / "over"
    shutil.copytree(standin, over)
    shutil.copytree(folder, over, dirs_exist_ok=True)
    assert lj.data_source(over) == real
    assert lj.data_source(standin).startswith("standin-")


def test_non_utf8_metadata_names_the_line_and_byte(tmp_path):
    (tmp_path / "metadata.csv").write_bytes(b"LJ001-0001|a|a\nLJ001-0002|caf\xe9|cafe\n")
    with pytest.raises(lj.CorpusError, match=r"metadata.csv, line 2: byte 0xe9 at column 15 is not UTF-8"):
        lj.read_metadata(tmp_path)


def test_lj_speech_extracted_one_level_too_deep_is_an_error_not_the_standin(tmp_path):
    nested = tmp_path / "LJSpeech-1.1" / "LJSpeech-1.1"
    _lj_metadata(nested)
    with pytest.raises(lj.CorpusError, match=r"one level too deep. Move the contents of .*LJSpeech-1.1/LJSpeech-1.1 up"):
        lj.prepare(tmp_path, 6)
    (nested / "metadata.csv").unlink()
    with pytest.raises(lj.CorpusError, match="exists but has no metadata.csv"):
        lj.prepare(tmp_path, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LJSpeech-1.1"], "no stand-in made instead"


def test_an_unwritable_data_folder_says_so(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(lj.CorpusError, match=r"cannot write the stand-in corpus into .*a-file/data .*HW2_DATA_DIR"):
        lj.prepare(tmp_path / "a-file" / "data", 6)


def test_malformed_metadata_names_the_file_and_line(tmp_path):
    (tmp_path / "metadata.csv").write_text("LJ001-0001|a|a\nLJ001-0002|only two fields\n")
    with pytest.raises(lj.CorpusError, match=r"metadata.csv, line 2: expected 'id\|text\|normalized text'"):
        lj.read_metadata(tmp_path)
    (tmp_path / "metadata.csv").write_text("LJ001-0001|a|a\n\nLJ001-0001|b|b\n")
    with pytest.raises(lj.CorpusError, match="line 3: clip id 'LJ001-0001' appears twice"):
        lj.read_metadata(tmp_path)
    with pytest.raises(lj.CorpusError, match="not found"):
        lj.read_metadata(tmp_path / "nowhere")
    with pytest.raises(lj.CorpusError, match="unknown split 'dev'"):
        lj.load_split(tmp_path, "dev")


def test_bad_audio_gets_a_clear_error(tmp_path):
    write_corpus(tmp_path / "rate", [("A", "a", "a", 1600)], rate=16000)
    with pytest.raises(lj.CorpusError, match="16000 Hz.*22050 Hz"):
        lj.load_waveform(tmp_path / "rate", "A")
    write_corpus(tmp_path / "stereo", [("A", "a", "a", 1600)], channels=2)
    with pytest.raises(lj.CorpusError, match="2 channels"):
        lj.load_waveform(tmp_path / "stereo", "A")
    with pytest.raises(lj.CorpusError, match="'B' but its wav file is missing"):
        lj.load_waveform(tmp_path / "stereo", "B")
    (tmp_path / "stereo" / "wavs" / "C.wav").write_bytes(b"not audio")
    with pytest.raises(lj.CorpusError, match="cannot be read as audio"):
        lj.load_waveform(tmp_path / "stereo", "C")


# --- the generated sentences -----------------------------------------------------------------------------

def test_sentences_use_the_vocabulary_plus_a_few_unknown_characters():
    pairs = [sentences.clip_text(3, i) for i in range(400)]
    normalized = "".join(n.lower() for _, n in pairs)
    allowed = set(text.VOCAB[4:]) | set("'\";:!")
    assert set(normalized) <= allowed, set(normalized) - allowed
    assert set("'\";:!") <= set(normalized), "out-of-vocabulary characters should occur"
    assert any(set(string.digits) & set(r) for r, _ in pairs), "raw text keeps digits, as LJ Speech does"
    assert max(len(n) for _, n in pairs) <= sentences.MAX_NORMALIZED_CHARS
    words = {w.strip(".,;:!?\"'").lower() for _, n in pairs for w in n.split()}
    assert len(words) > 400


def test_clip_text_is_a_function_of_seed_and_index():
    assert sentences.clip_text(0, 5) == sentences.clip_text(0, 5)
    assert sentences.clip_text(0, 5) != sentences.clip_text(1, 5)


def test_numbers_are_spelled_out():
    assert sentences.number_words(0) == "zero"
    assert sentences.number_words(45) == "forty-five"
    assert sentences.number_words(33_800) == "thirty-three thousand eight hundred"
    assert sentences.ordinal_words(3) == "third" and sentences.ordinal_words(22) == "twenty-second"
    assert sentences.ordinal_words(20) == "twentieth" and sentences.ordinal_words(11) == "eleventh"
    assert sentences.year_words(1864) == "eighteen sixty-four"
    assert sentences.year_words(1805) == "eighteen oh five" and sentences.year_words(1900) == "nineteen hundred"


# --- the stand-in corpus ---------------------------------------------------------------------------------

def test_standin_has_the_lj_speech_layout(standin):
    assert standin.name == f"ljspeech-standin-v{lj.STANDIN_VERSION}-6-s0"
    lines = (standin / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6
    clips = lj.read_metadata(standin)
    for line, clip in zip(lines, clips):
        clip_id, raw, normalized = line.split("|")
        assert (clip.id, clip.text) == (clip_id, normalized)
        assert (raw, normalized) == sentences.clip_text(0, lines.index(line))
        info = sf.info(standin / "wavs" / f"{clip_id}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
        assert 0.5 < info.duration < 10.0
    made = json.loads((standin / "standin.json").read_text())
    assert made["n_clips"] == 6 and made["seed"] == 0
    assert re.fullmatch(r"standin-[0-9a-f]{8}", lj.data_source(standin))
    train = lj.load_split(standin, "train")
    assert len(train) == 4 and train[0][1] == clips[0].text and train[0][0].dtype == np.float32
    feats = audio.log_mel(train[0][0])
    n_frames = audio.n_valid_frames(len(train[0][0]))
    assert feats.shape == (80, 2754) and feats[:, n_frames:].abs().sum() == 0 and feats[:, :n_frames].abs().sum() > 0


def test_standin_is_reused_and_deterministic(standin, tmp_path):
    before = (standin / "metadata.csv").stat().st_mtime_ns
    assert lj.prepare(standin.parent, 6, seed=0) == standin
    assert (standin / "metadata.csv").stat().st_mtime_ns == before
    again = lj.make_standin(tmp_path, 6, seed=0, workers=1)
    assert (again / "metadata.csv").read_bytes() == (standin / "metadata.csv").read_bytes()
    first = next((standin / "wavs").iterdir()).name
    assert (again / "wavs" / first).read_bytes() == (standin / "wavs" / first).read_bytes()
    assert lj.data_source(again) == lj.data_source(standin)


def test_interrupted_generation_leaves_no_corpus(tmp_path, monkeypatch):
    stale = tmp_path / f".{lj.standin_folder(tmp_path, 4).name}.tmp-999999999"  # a dead process's leftovers
    stale.mkdir(parents=True)
    calls = []

    def failing_speak(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros(22050, dtype=np.int16)

    monkeypatch.setattr(lj._Speakers, "speak", failing_speak)
    with pytest.raises(KeyboardInterrupt):
        lj.prepare(tmp_path, 4, workers=1)
    assert list(tmp_path.iterdir()) == [], "neither a partial corpus nor temporary folders may remain"


def test_the_espeak_server_speaks_exactly_what_the_espeak_ng_command_does(tmp_path):
    speakers = lj._Speakers(2, lj._espeak(), tmp_path)
    try:
        assert speakers.fallback is None
        for text, rate, pitch in [("Victor laughed sadly.", 160, 38), ("Tina saw five carpets?", 190, 62),
                                  ("-- a dash, then words", 175, 50)]:
            for _ in range(2):  # the second time from the same server too
                assert np.array_equal(speakers.speak(text, rate, pitch), lj.speak(text, rate, pitch))
    finally:
        speakers.close()
    assert list(tmp_path.iterdir()) == [], "the raw samples are removed once read"


def test_without_libespeak_ng_the_command_speaks_the_same_corpus_and_says_so(tmp_path, monkeypatch, capsys):
    server = tmp_path / "server.py"
    server.write_text('print("unavailable no libespeak-ng here", flush=True)\n')
    monkeypatch.setattr(lj._Speakers, "SERVER", server)
    fallback = lj.make_standin(tmp_path / "fallback", 4, seed=0, grammar="short")
    said = capsys.readouterr().out
    assert "through the espeak-ng command" in said and "no libespeak-ng here" in said
    monkeypatch.undo()
    served = lj.make_standin(tmp_path / "served", 4, seed=0, grammar="short")
    assert "espeak-ng command" not in capsys.readouterr().out
    assert lj.data_source(fallback) == lj.data_source(served)


def test_incomplete_standin_folder_is_an_error(tmp_path):
    lj.standin_folder(tmp_path, 5).mkdir(parents=True)
    with pytest.raises(lj.CorpusError, match="delete it"):
        lj.prepare(tmp_path, 5)


def test_missing_espeak_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(lj.EspeakMissingError, match=r"make setup.*apt-get install espeak-ng"):
        lj.prepare(tmp_path, 6)
    assert list(tmp_path.iterdir()) == []


# --- the short-sentence stand-in of the quick profile ---------------------------------------------------------

@pytest.fixture(scope="module")
def short_standin(tmp_path_factory):
    return lj.prepare(tmp_path_factory.mktemp("short"), 12, seed=0, workers=2, corpus="short")


def test_short_standin_is_deterministic_and_every_clip_fits_its_frames(short_standin, tmp_path):
    from hw2.q3 import short_sentences

    assert short_standin.name == f"ljspeech-short-standin-v{lj.STANDIN_VERSION}-12-s0"
    made = json.loads((short_standin / "standin.json").read_text())
    assert made["grammar"] == "short" and made["max_frames"] == lj.SHORT_MAX_FRAMES
    clips = lj.read_metadata(short_standin)
    for clip in clips:
        samples = sf.info(short_standin / "wavs" / f"{clip.id}.wav").frames
        assert audio.n_valid_frames(samples) <= lj.SHORT_MAX_FRAMES  # nothing will be cropped
        assert 3 <= len(clip.text.split()) <= 6 and len(clip.text) <= text.MAX_LEN - 2  # nor truncated
        assert text.UNK not in text.encode(clip.text).tolist()  # every character is in the vocabulary
        assert clip.text.split()[-1].strip(".,?").lower() in short_sentences.vocabulary()
    again = lj.make_standin(tmp_path, 12, seed=0, workers=1, grammar="short")
    assert (again / "metadata.csv").read_bytes() == (short_standin / "metadata.csv").read_bytes()
    for clip in clips[:3]:
        assert (again / "wavs" / f"{clip.id}.wav").read_bytes() == (short_standin / "wavs" / f"{clip.id}.wav").read_bytes()
    assert lj.data_source(again) == lj.data_source(short_standin) != lj.data_source(lj.prepare(tmp_path, 6, workers=1))


def test_short_standin_is_used_even_beside_the_real_corpus(tmp_path):
    (tmp_path / lj.REAL_FOLDER).mkdir()
    (tmp_path / lj.REAL_FOLDER / "metadata.csv").write_text("LJ001-0001|a|a\n")
    assert lj.prepare(tmp_path, 500) == tmp_path / lj.REAL_FOLDER
    assert lj.standin_folder(tmp_path, 4, grammar="short").name.startswith("ljspeech-short-standin")
    with pytest.raises(lj.CorpusError, match="unknown corpus 'tiny'"):
        lj.prepare(tmp_path, 4, corpus="tiny")


def test_short_sentences_held_out_are_mostly_unseen():
    """With the quick profile's 6,000 clips, few test sentences also occur in training (the grammar's
    first draw for each clip; a redraw for a long clip changes a handful)."""
    from hw2.q3 import short_sentences

    texts = [short_sentences.clip_text(0, i)[1].lower() for i in range(6000)]
    splits = lj.split_ranges(6000)
    train = {texts[i] for i in splits["train"]}
    seen = sum(texts[i] in train for i in splits["test"])
    assert seen / len(splits["test"]) < 0.15
    assert len(short_sentences.vocabulary()) > 200
