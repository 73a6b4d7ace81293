"""LJ Speech 1.1 for Question 3: the real corpus when present, else a stand-in spoken by espeak-ng.

Layout (both): `metadata.csv` with lines `id|text|normalized text` (UTF-8, no quoting) and `wavs/<id>.wav`
(mono, 22,050 Hz, 16-bit PCM). The recogniser uses the normalized transcript, as the skeleton does.
Splits are contiguous in metadata order: 9,825 / 655 / 2,620 clips of the 13,100 (75 / 5 / 20 %).

Two stand-ins share the layout: `ljspeech` speaks LJ-Speech-like paragraphs (up to 145 characters, with
raw and normalized columns, `hw2.q3.sentences`), `short` speaks 3-6-word sentences whose clips all fit a
frame limit (`hw2.q3.short_sentences`; the `quick` profile's corpus, on which a CPU can train the
recogniser to listen). The stand-in folder also holds `standin.json` (how it was made, the SHA-256 of the
metadata.csv it wrote, and each clip's size, modification time and SHA-256).

The real corpus is downloaded for the `full` profile where it is absent (`download_corpus`): LJ Speech's own
archive through `hw2.engine.fetch`, verified by its published SHA-256, extracted as a stream into a temporary
folder that is renamed into place only once all 13,100 clips are there. The extracted folder holds
`hw2-archive.json` (the digest the archive was verified against, the SHA-256 of metadata.csv, and each clip's
size, modification time and SHA-256, as standin.json does).

A corpus is identified by its content (`data_source`): "real" only for LJ Speech 1.1 itself (extracted from the
archive with the published SHA-256, its clips as extracted; or, placed by hand, a metadata.csv with LJ Speech
1.1's SHA-256 and all 13,100 clips present), "standin" only where standin.json vouches for this very
metadata.csv and every clip's audio, anything else is "custom". Each load compares the recorded clips' sizes
and modification times with the record and hashes again only the clips that differ (a touched file keeps its
name; a swapped clip makes custom data); `verify_audio` hashes every clip.
"""
from __future__ import annotations

import bz2
import contextlib
import hashlib
import json
import os
import queue
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hw2.engine import fetch
from hw2.engine.errors import UserError
from hw2.q3 import sentences, short_sentences
from hw2.q3.audio import n_valid_frames, pcm16_to_float32
from hw2.q3.constants import SHORT_MAX_FRAMES

SAMPLE_RATE = 22050
REAL_FOLDER = "LJSpeech-1.1"
STANDIN_MARKER = "standin.json"
STANDIN_VERSION = 3  # bump when the generator changes, so an old stand-in folder is never reused (3: audio record)
GRAMMARS = ("ljspeech", "short")
MAX_ATTEMPTS = 50  # sentences drawn for one clip of the short stand-in before giving up
SPLITS = ("train", "validation", "test")
VOICE = "en-us+f3"  # one speaker, like LJ Speech; each clip varies its speaking rate and pitch a little
REAL_CLIPS = 13_100  # LJ Speech 1.1: LJ001-0001 ... LJ050-0278
# LJ Speech's own address (torchaudio's LJSPEECH downloads it), the archive's published SHA-256 and size.
ARCHIVE_URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
ARCHIVE_SHA256 = "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"
ARCHIVE_BYTES = 2_748_572_632
ARCHIVE = "LJSpeech-1.1.tar.bz2"
EXTRACTED_PER_ARCHIVE_BYTE = 1.4  # 3.8 GB of wavs from the 2.7 GB archive
# LJ Speech 1.1's metadata.csv as one public source reports it (not published with the archive): what marks a
# corpus placed by hand as the real one. Unconfirmed until the first real download (README, Data).
METADATA_SHA256 = "852bce5c79e5184ba5bf2ea98aad4bcf49a5d787def5fd1f04fa2ab8aa6dc535"
ARCHIVE_MARKER = "hw2-archive.json"


class CorpusError(UserError, ValueError):
    """A corpus folder, metadata line or audio file that cannot be used, with what to do about it."""


class EspeakMissingError(UserError, RuntimeError):
    """espeak-ng, which speaks the stand-in corpus, is not installed."""


@dataclass(frozen=True)
class Clip:
    id: str
    text: str  # the normalized transcript


def read_metadata(corpus_dir: str | Path) -> list[Clip]:
    """The clips of `metadata.csv` in file order, with their normalized transcripts."""
    path = Path(corpus_dir) / "metadata.csv"
    if not path.is_file():
        raise CorpusError(f"{path} not found: an LJ Speech folder holds metadata.csv and wavs/")
    clips, seen = [], set()
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise CorpusError(
                    f"{path}, line {number}: byte 0x{raw[err.start]:02x} at column {err.start + 1} is not UTF-8 "
                    f"(LJ Speech's metadata.csv is UTF-8): re-extract the file or re-save that line as UTF-8"
                ) from None
            if not line:
                continue
            fields = line.split("|")
            if len(fields) != 3 or not fields[0]:
                raise CorpusError(
                    f"{path}, line {number}: expected 'id|text|normalized text' (3 fields separated by '|'), "
                    f"got {len(fields)} field(s): {line[:80]!r}"
                )
            clip_id = fields[0]
            if clip_id in seen:
                raise CorpusError(f"{path}, line {number}: clip id {clip_id!r} appears twice")
            seen.add(clip_id)
            clips.append(Clip(clip_id, fields[2]))
    if not clips:
        raise CorpusError(f"{path} has no clips")
    return clips


def split_ranges(n_clips: int) -> dict[str, range]:
    """Contiguous train / validation / test ranges: 9,825 / 655 / 2,620 for 13,100 clips, else 75 / 5 / 20 %
    (validation and test rounded down, at least one clip each; the rest is train)."""
    if n_clips < 3:
        raise CorpusError(f"a corpus needs at least 3 clips for train, validation and test; it has {n_clips}")
    n_val, n_test = max(1, n_clips // 20), max(1, n_clips // 5)
    n_train = n_clips - n_val - n_test
    return {
        "train": range(0, n_train),
        "validation": range(n_train, n_train + n_val),
        "test": range(n_train + n_val, n_clips),
    }


def load_waveform(corpus_dir: str | Path, clip_id: str, keep_pcm16: bool = False) -> np.ndarray:
    """The clip's samples as float32 in [-1, 1] (N,), as torchaudio loads 16-bit PCM. With `keep_pcm16`, a
    16-bit PCM file (LJ Speech's, the stand-ins') stays int16, half the host memory, and
    `audio.pcm16_to_float32` gives its float32 samples later, bit for bit."""
    import soundfile as sf  # here, not at the top: bench/gpu.py runs this module where soundfile is absent

    path = Path(corpus_dir) / "wavs" / f"{clip_id}.wav"
    if not path.is_file():
        raise CorpusError(f"{path} not found: metadata.csv lists {clip_id!r} but its wav file is missing; restore "
                          f"it (for a stand-in: delete {Path(corpus_dir)} to speak the corpus again)")
    try:
        pcm16 = sf.info(path).subtype == "PCM_16"
        samples, rate = sf.read(path, dtype="int16" if pcm16 else "float32", always_2d=True)
        samples = samples if keep_pcm16 else pcm16_to_float32(samples)
    except sf.LibsndfileError as err:
        raise CorpusError(f"{path} cannot be read as audio ({err}); replace the file") from err
    if rate != SAMPLE_RATE:
        raise CorpusError(f"{path} is sampled at {rate} Hz; LJ Speech clips are {SAMPLE_RATE} Hz (hw2 does not "
                          f"resample): resample the file to {SAMPLE_RATE} Hz or replace it")
    if samples.shape[1] != 1:
        raise CorpusError(f"{path} has {samples.shape[1]} channels; LJ Speech clips are mono: mix it down to one "
                          f"channel or replace it")
    return np.ascontiguousarray(samples[:, 0])


def load_split(corpus_dir: str | Path, split: str, workers: int = 4,
               keep_pcm16: bool = False) -> list[tuple[np.ndarray, str]]:
    """(waveform, normalized transcript) for every clip of the split, in metadata order (`load_waveform`)."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    clips = read_metadata(corpus_dir)
    chosen = [clips[i] for i in split_ranges(len(clips))[split]]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # libsndfile reads release the GIL
        waves = list(pool.map(lambda clip: load_waveform(corpus_dir, clip.id, keep_pcm16), chosen))
    return [(wave, clip.text) for wave, clip in zip(waves, chosen)]


def data_source(corpus_dir: str | Path) -> str:
    """What the corpus is, from its content: "real-<hash8>" for LJ Speech 1.1, "standin-<hash8>" for a stand-in
    whose standin.json vouches for this metadata.csv (the hash then covers how its audio was made too), else
    "custom-<hash8>" (for an extracted archive's corpus, the hash covers its audio too). The hash is
    metadata.csv's, so a run key changes whenever the transcripts change."""
    corpus_dir = Path(corpus_dir)
    metadata = corpus_dir / "metadata.csv"
    if not metadata.is_file():
        raise CorpusError(f"{metadata} not found: an LJ Speech folder holds metadata.csv and wavs/")
    content = metadata.read_bytes()
    digest = hashlib.sha256(content)
    made = _standin_record(corpus_dir)
    if made.get("metadata_sha256") == digest.hexdigest() and isinstance(made.get("audio"), dict):
        audio = _audio_digests(corpus_dir, made)
        digest.update(json.dumps(sorted(audio.items())).encode())
        if audio == _recorded(made):
            identity = {k: made.get(k) for k in ("version", "espeak_ng", "voice", "grammar", "max_frames")}
            digest.update(json.dumps(identity, sort_keys=True).encode())
            return f"standin-{digest.hexdigest()[:8]}"
        return f"custom-{digest.hexdigest()[:8]}"  # the stand-in's transcripts with other audio
    metadata_sha256 = digest.hexdigest()
    extracted = _standin_record(corpus_dir, ARCHIVE_MARKER)
    if extracted.get("metadata_sha256") == metadata_sha256 and isinstance(extracted.get("audio"), dict):
        audio = _audio_digests(corpus_dir, extracted, ARCHIVE_MARKER)
        if extracted.get("archive_sha256") == ARCHIVE_SHA256 and audio == _recorded(extracted):
            return f"real-{metadata_sha256[:8]}"  # the same name as LJ Speech 1.1 placed by hand
        digest.update(json.dumps(sorted(audio.items())).encode())  # another archive, or clips changed since
        return f"custom-{digest.hexdigest()[:8]}"
    clips = read_metadata(corpus_dir)
    real = (metadata_sha256 == METADATA_SHA256 and len(clips) == REAL_CLIPS
            and all((corpus_dir / "wavs" / f"{clip.id}.wav").is_file() for clip in clips))
    return f"{'real' if real else 'custom'}-{metadata_sha256[:8]}"


def _recorded(made: dict) -> dict[str, str]:
    return {clip: entry[2] for clip, entry in made["audio"].items()}


def _clip_entry(path: Path) -> list:
    """[bytes, modification time (ns), sha256] of one clip, as standin.json records it."""
    stat = path.stat()
    with open(path, "rb") as fh:
        return [stat.st_size, stat.st_mtime_ns, hashlib.file_digest(fh, "sha256").hexdigest()]


def _audio_digests(corpus_dir: Path, made: dict, marker: str = STANDIN_MARKER) -> dict[str, str | None]:
    """{clip id: sha256} of the clips a record (standin.json, or hw2-archive.json: `marker`) lists (None for a
    missing one). A clip whose size and modification time match the record keeps the recorded digest; the
    others are hashed again, and where the content is unchanged (a copied or touched file) the record takes the
    new time, so the next load is cheap."""
    digests, refreshed = {}, False
    for clip_id, (size, mtime_ns, sha256) in made["audio"].items():
        path = corpus_dir / "wavs" / f"{clip_id}.wav"
        try:
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns):
                digests[clip_id] = sha256
                continue
            entry = _clip_entry(path)
        except OSError:
            digests[clip_id] = None
            continue
        digests[clip_id] = entry[2]
        if entry[2] == sha256:
            made["audio"][clip_id], refreshed = entry, True
    if refreshed:
        with contextlib.suppress(OSError):  # a read-only corpus: hashed again next time
            _write_json_atomically(corpus_dir / marker, made)
    return digests


def verify_audio(corpus_dir: str | Path) -> list[str]:
    """The ids of the clips whose audio differs from the record made with the corpus (standin.json, or for an
    extracted archive hw2-archive.json; every clip hashed again); [] where the audio is as recorded. A corpus
    without such a record (placed by hand) has nothing to verify."""
    corpus_dir = Path(corpus_dir)
    made = _standin_record(corpus_dir, ARCHIVE_MARKER) or _standin_record(corpus_dir)
    changed = []
    for clip_id, (_, _, sha256) in (made.get("audio") or {}).items():
        path = corpus_dir / "wavs" / f"{clip_id}.wav"
        if not path.is_file() or _clip_entry(path)[2] != sha256:
            changed.append(clip_id)
    return changed


def _write_json_atomically(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _standin_record(corpus_dir: Path, marker: str = STANDIN_MARKER) -> dict:
    """standin.json's content (or another record's: `marker`), or {} where there is none (or it is not a JSON
    object)."""
    try:
        made = json.loads((corpus_dir / marker).read_text())
    except (OSError, ValueError):
        return {}
    return made if isinstance(made, dict) else {}


def prepare(data_dir: str | Path, n_clips: int, seed: int = 0, workers: int | None = None,
            corpus: str = "ljspeech", download: bool = False) -> Path:
    """The corpus folder to use. For `corpus="ljspeech"`: `data_dir/LJSpeech-1.1` when its metadata.csv
    exists (used whole; `n_clips` only sizes a stand-in), else, with `download`, LJ Speech 1.1 downloaded there,
    else (or where the download fails, said in one line) the paragraph stand-in of `n_clips` clips for `seed`,
    generated once. For `corpus="short"`: the short-sentence stand-in, whatever else is there."""
    if corpus not in GRAMMARS:
        raise CorpusError(f"unknown corpus {corpus!r}: use one of {', '.join(GRAMMARS)}")
    data_dir = Path(data_dir)
    if corpus == "ljspeech" and (real := real_folder(data_dir)) is not None:
        return real
    if corpus == "ljspeech" and download:
        try:
            return download_corpus(data_dir)
        except fetch.FALL_BACK as exc:
            print(f"[hw2] {exc}. Using the stand-in corpus.", flush=True)
    return make_standin(data_dir, n_clips, seed, workers, grammar=corpus)


def archive_source() -> fetch.Source:
    """The LJ Speech archive as `hw2.engine.fetch` downloads it (HW2_LJSPEECH_URL, HW2_LJSPEECH_SHA256)."""
    return fetch.Source(
        "LJ Speech 1.1", "LJSPEECH", ARCHIVE_URL, ARCHIVE_SHA256, size=ARCHIVE_BYTES,
        expand=EXTRACTED_PER_ARCHIVE_BYTE, by_hand=f"to get it by hand, download {ARCHIVE_URL} and run "
        f"`HW2_LJSPEECH_URL=file:///path/to/{ARCHIVE} python -m hw2 data fetch q3`, or extract it so that "
        f"<data dir>/{REAL_FOLDER}/metadata.csv exists")


def download_corpus(data_dir: str | Path) -> Path:
    """`data_dir/LJSpeech-1.1`, downloaded, verified and extracted where it is absent (FetchError, one line, where
    it cannot be). The archive stays beside it, for the user to delete."""
    data_dir = Path(data_dir)
    if (real := real_folder(data_dir)) is not None:
        return real
    archive = data_dir / ARCHIVE
    checked = fetch.download(archive_source(), archive)
    corpus = _extract(archive, data_dir, checked)
    print(f"[hw2] LJ Speech extracted into {corpus} ({data_source(corpus)}); {archive} is no longer needed and "
          f"may be deleted", flush=True)
    return corpus


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, folder: Path) -> None:
    """Extract one member with tarfile's "data" filter (no absolute paths, no escape from `folder`, no devices).
    Python 3.11.0-3.11.3 predate the filter: there, only plain files and folders inside `folder` are accepted."""
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, folder, filter="data")
        return
    inside = (folder / member.name).resolve().is_relative_to(folder.resolve())
    if not (inside and (member.isfile() or member.isdir())):
        raise fetch.FetchError(f"the archive's member {member.name!r} is not a plain file or folder inside it: "
                               "refused, nothing extracted")
    tar.extract(member, folder)


def _extract(archive: Path, data_dir: Path, checked: str) -> Path:
    """Extract the verified archive as a stream (a seekable bz2 tarfile seeks backwards for every member) into a
    temporary folder, record what it holds (hw2-archive.json) and rename it into place once every clip is there.
    bz2.open decompresses (tarfile's own "r|bz2" copies its whole decompressed buffer on every read: quadratic
    where the data compresses well); tarfile reads the decompressed stream in order, never seeking."""
    target = data_dir / REAL_FOLDER
    tmp = data_dir / f".{REAL_FOLDER}.tmp-{os.getpid()}"
    _remove_stale_temporaries(target)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with bz2.open(archive, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tar, \
                tqdm(unit=" files", desc=f"extracting {archive.name}") as bar:
            for member in tar:
                _extract_member(tar, member, tmp)
                bar.update()
        corpus = tmp / REAL_FOLDER
        clips = read_metadata(corpus) if (corpus / "metadata.csv").is_file() else []
        missing = [c.id for c in clips if not (corpus / "wavs" / f"{c.id}.wav").is_file()]
        if len(clips) != REAL_CLIPS or missing:
            raise fetch.FetchError(
                f"{archive} holds {len(clips) - len(missing)} clips listed in {REAL_FOLDER}/metadata.csv, not LJ "
                f"Speech 1.1's {REAL_CLIPS:,}: nothing extracted; the archive is kept, delete it or set "
                f"HW2_LJSPEECH_URL to the real one")
        ids = [c.id for c in clips]
        with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL
            entries = list(tqdm(pool.map(lambda i: _clip_entry(corpus / "wavs" / f"{i}.wav"), ids), total=len(ids),
                                unit="clip", desc="recording each clip's SHA-256"))
        _write_json_atomically(corpus / ARCHIVE_MARKER, {
            "archive": archive.name, "archive_sha256": checked,
            "verified_against": "the published SHA-256" if checked == ARCHIVE_SHA256 else "HW2_LJSPEECH_SHA256",
            "metadata_sha256": fetch.file_digest(corpus / "metadata.csv", "sha256"),
            "audio": dict(zip(ids, entries))})
        corpus.rename(target)
    except CorpusError as exc:
        raise fetch.FetchError(f"{archive} is not LJ Speech 1.1 ({exc}): nothing extracted; the archive is kept, "
                               f"delete it or set HW2_LJSPEECH_URL to the real one") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the disk's problem (full, read-only): one line from the command line, naming the file
        raise fetch.FetchError(f"{archive} cannot be extracted ({type(exc).__name__}: {exc}): delete it and run the "
                               f"same command again to download it afresh") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def real_folder(data_dir: str | Path) -> Path | None:
    """`data_dir/LJSpeech-1.1` when it holds metadata.csv; None when there is no such folder. A folder of that
    name without metadata.csv is an error, never a silent fall-back to the stand-in."""
    real = Path(data_dir) / REAL_FOLDER
    if (real / "metadata.csv").is_file():
        return real
    if not real.exists():
        return None
    nested = sorted(p.parent for p in real.glob("*/metadata.csv"))
    if nested:
        raise CorpusError(f"{real} has no metadata.csv, but {nested[0]} has: the archive was extracted one level "
                          f"too deep. Move the contents of {nested[0]} up into {real}.")
    raise CorpusError(f"{real} exists but has no metadata.csv: extract LJ Speech 1.1 so that {real}/metadata.csv "
                      f"and {real}/wavs/ exist, or remove the folder to use the stand-in corpus")


# --- the stand-in corpus ----------------------------------------------------------------------------------

def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakMissingError(
            "espeak-ng is not installed, and it speaks the stand-in LJ Speech corpus used when the real one is "
            "absent: run `make setup` as root, or `sudo apt-get install espeak-ng` (or put LJ Speech 1.1 in "
            f"<data dir>/{REAL_FOLDER}/)"
        )
    return exe


def _espeak_version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split(":")[1].split("Data")[0].strip() if ":" in out else out.strip()


def _voice_settings(seed: int, index: int) -> tuple[int, int]:
    """Speaking rate (words per minute) and pitch (0-99) of a clip."""
    rng = random.Random(f"ljspeech-standin-voice/{seed}/{index}")
    return rng.randint(160, 190), rng.randint(38, 62)


def speak(text: str, rate: int = 175, pitch: int = 50, exe: str | None = None) -> np.ndarray:
    """espeak-ng's int16 samples (22,050 Hz, mono) for the text. The text goes through stdin, so a leading
    '-' is never read as an option; the same text and settings always give the same samples."""
    exe = exe or _espeak()
    proc = subprocess.run([exe, "-v", VOICE, "-s", str(rate), "-p", str(pitch), "--stdout"],
                          input=text.encode("utf-8"), capture_output=True)
    wav = proc.stdout
    if proc.returncode != 0 or len(wav) < 44 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE" or wav[36:40] != b"data":
        raise RuntimeError(f"espeak-ng failed on {text[:60]!r}: {proc.stderr.decode(errors='replace').strip()}")
    channels, rate_hz, _, _, bits = struct.unpack("<HIIHH", wav[22:36])
    if (channels, rate_hz, bits) != (1, SAMPLE_RATE, 16):
        raise RuntimeError(f"espeak-ng wrote {channels} channel(s) at {rate_hz} Hz, {bits} bits; "
                           f"expected mono {SAMPLE_RATE} Hz 16-bit")
    return np.frombuffer(wav[44:], dtype="<i2").copy()  # the streamed header's sizes are placeholders


class _Speakers:
    """Speaks the clips of a stand-in through `espeak_server` processes (one request at a time each), or, where
    those cannot start or do not give exactly the command's samples, through the espeak-ng command, one process
    a clip, saying so once. Either way the audio is the same."""

    SERVER = Path(__file__).with_name("espeak_server.py")
    CHECK = ("Oscar waited in the harbor.", 175, 50)  # spoken both ways when the servers start

    def __init__(self, workers: int, exe: str, scratch: Path):
        self.exe, self.scratch = exe, scratch
        self.idle: queue.Queue = queue.Queue()
        self.procs: list[subprocess.Popen] = []
        self.fallback: str | None = None
        try:
            for _ in range(workers):
                proc = subprocess.Popen([sys.executable, "-I", "-S", str(self.SERVER), VOICE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)
                self.procs.append(proc)
                first = proc.stdout.readline().strip()
                if first != "ready":
                    raise OSError(first.removeprefix("unavailable ") or "it stopped as it started")
                self.idle.put(proc)
            if not np.array_equal(self._ask(*self.CHECK), speak(*self.CHECK, exe)):
                raise OSError("its samples differ from the espeak-ng command's")
        except (OSError, RuntimeError) as err:
            self.close()
            self.fallback = str(err)
            print(f"[hw2] speaking the stand-in through the espeak-ng command, one process a clip, about 3 times "
                  f"slower (libespeak-ng could not be used: {err}); the audio is the same", flush=True)

    def _ask(self, text: str, rate: int, pitch: int) -> np.ndarray:
        proc = self.idle.get()
        path = self.scratch / f"speech-{threading.get_ident()}.raw"
        try:
            proc.stdin.write(json.dumps([rate, pitch, str(path), text]) + "\n")
            answer = proc.stdout.readline().strip()
            if answer != "0":
                raise RuntimeError(f"libespeak-ng failed on {text[:60]!r} ({answer or 'its process ended'})")
            return np.fromfile(path, dtype="<i2")
        finally:
            path.unlink(missing_ok=True)
            self.idle.put(proc)

    def speak(self, text: str, rate: int, pitch: int) -> np.ndarray:
        return speak(text, rate, pitch, self.exe) if self.fallback else self._ask(text, rate, pitch)

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []


def standin_folder(data_dir: str | Path, n_clips: int, seed: int = 0, grammar: str = "ljspeech") -> Path:
    kind = "standin" if grammar == "ljspeech" else f"{grammar}-standin"
    return Path(data_dir) / f"ljspeech-{kind}-v{STANDIN_VERSION}-{n_clips}-s{seed}"


def make_standin(data_dir: str | Path, n_clips: int, seed: int = 0, workers: int | None = None,
                 grammar: str = "ljspeech") -> Path:
    """Generate (or reuse) a stand-in corpus. Written into a temporary folder and renamed into place, so an
    interrupted generation never leaves a partial corpus behind.

    The short grammar redraws the sentence of a clip whose audio would exceed `SHORT_MAX_FRAMES` frames, so
    no clip of it is ever cropped; how many were redrawn is recorded in standin.json."""
    if grammar not in GRAMMARS:
        raise CorpusError(f"unknown stand-in grammar {grammar!r}: use one of {', '.join(GRAMMARS)}")
    if n_clips < 3:
        raise CorpusError(f"a stand-in corpus needs at least 3 clips (train, validation, test); asked for {n_clips}")
    target = standin_folder(data_dir, n_clips, seed, grammar)
    if target.exists():
        if (target / "metadata.csv").is_file() and (target / STANDIN_MARKER).is_file():
            return target
        raise CorpusError(f"{target} exists but is not a complete stand-in corpus; delete it to regenerate it")
    exe = _espeak()
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(target)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "wavs").mkdir(parents=True)
    except OSError as err:
        raise CorpusError(f"cannot write the stand-in corpus into {target.parent} ({err.strerror or err}): set "
                          f"HW2_DATA_DIR to a writable folder, or make this one writable") from None
    try:
        ids = [f"SI{1 + i // 1000:03d}-{1 + i % 1000:04d}" for i in range(n_clips)]
        texts: list[tuple[str, str]] = [("", "")] * n_clips
        redrawn = [0] * n_clips

        def write_clip(i: int) -> int:
            rate, pitch = _voice_settings(seed, i)
            if grammar == "ljspeech":
                texts[i] = sentences.clip_text(seed, i)
                samples = speakers.speak(texts[i][1], rate, pitch)
            else:
                for attempt in range(MAX_ATTEMPTS):
                    texts[i] = short_sentences.clip_text(seed, i, attempt)
                    samples = speakers.speak(texts[i][1], rate, pitch)
                    if n_valid_frames(len(samples)) <= SHORT_MAX_FRAMES:
                        break
                    redrawn[i] += 1
                else:
                    raise RuntimeError(f"clip {i}: {MAX_ATTEMPTS} sentences all spoke longer than "
                                       f"{SHORT_MAX_FRAMES} frames; the short grammar or voice is broken")
            import soundfile as sf  # here, not at the top: see load_waveform

            sf.write(tmp / "wavs" / f"{ids[i]}.wav", samples, SAMPLE_RATE, subtype="PCM_16")
            return len(samples)

        workers = workers or min(8, os.cpu_count() or 1)
        speakers = _Speakers(workers, exe, tmp)
        pool = ThreadPoolExecutor(max_workers=workers)  # the work happens in espeak processes
        try:
            lengths = list(tqdm(pool.map(write_clip, range(n_clips)), total=n_clips, unit="clip",
                                desc=f"speaking stand-in LJ Speech ({grammar}, {n_clips} clips)"))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C, do not speak the remaining clips
            speakers.close()
        metadata = "".join(f"{clip_id}|{raw}|{normalized}\n" for clip_id, (raw, normalized) in zip(ids, texts))
        (tmp / "metadata.csv").write_bytes(metadata.encode("utf-8"))
        seconds = np.asarray(lengths) / SAMPLE_RATE
        (tmp / STANDIN_MARKER).write_text(json.dumps({
            "metadata_sha256": hashlib.sha256(metadata.encode("utf-8")).hexdigest(),
            "version": STANDIN_VERSION, "grammar": grammar, "seed": seed, "n_clips": n_clips, "voice": VOICE,
            "max_frames": SHORT_MAX_FRAMES if grammar == "short" else None, "sentences_redrawn": sum(redrawn),
            "espeak_ng": _espeak_version(exe), "sample_rate": SAMPLE_RATE,
            "seconds": {"total": round(float(seconds.sum()), 2), "mean": round(float(seconds.mean()), 3),
                        "max": round(float(seconds.max()), 3), "min": round(float(seconds.min()), 3)},
            "audio": {clip_id: _clip_entry(tmp / "wavs" / f"{clip_id}.wav") for clip_id in ids},
        }, indent=2) + "\n")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / STANDIN_MARKER).is_file():  # another process finished the same corpus first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove_stale_temporaries(target: Path) -> None:
    """Delete temporary folders left by generations of the same corpus whose process is gone."""
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue
