"""Downloads on loopback: a server on 127.0.0.1 (an ephemeral port) serves a small archive with LJ Speech's exact
layout and a small OCTMNIST file under the URL overrides; it can drop a connection mid-transfer and records the
Range header of every request. Success is real data (the published digests set in-process), a wrong digest is
refused with nothing extracted, a dropped transfer resumes with a Range request, a closed port falls back to the
stand-in with one line, and too little disk space is one line before any byte is fetched."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import socket
import struct
import tarfile
import threading
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from hw2.engine import fetch
from hw2.q2 import octmnist
from hw2.q3 import ljspeech as lj

N_SAMPLES = 32  # a clip of 1.5 ms: valid audio, tiny


def wav_bytes(index: int) -> bytes:
    """A valid mono 22,050 Hz 16-bit PCM wav whose samples depend on `index`."""
    data = np.full(N_SAMPLES, index % 30000, dtype="<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1, lj.SAMPLE_RATE,
                         2 * lj.SAMPLE_RATE, 2, 16, b"data", len(data))
    return header + data


LJ_IDS = [f"LJ{1 + i // 262:03d}-{1 + i % 262:04d}" for i in range(lj.REAL_CLIPS)]


def lj_archive(ids=LJ_IDS) -> bytes:
    """A tar.bz2 with LJ Speech 1.1's layout: LJSpeech-1.1/metadata.csv, README and wavs/<id>.wav."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:bz2", compresslevel=1) as tar:
        def add(name: str, content: bytes) -> None:
            info = tarfile.TarInfo(f"{lj.REAL_FOLDER}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))

        add("README", b"LJ Speech, as laid out by its archive\n")
        add("metadata.csv", "".join(f"{i}|Sentence {n}.|Sentence {n}.\n" for n, i in enumerate(ids)).encode())
        for n, clip_id in enumerate(ids):
            add(f"wavs/{clip_id}.wav", wav_bytes(n))
    return out.getvalue()


class Server:
    """What the loopback server serves (`files`), the Range header of each request it got, and how many bytes
    of the next response it sends before dropping the connection."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after: int | None = None
        self.url = ""

    def handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.drop_after is not None:
                    self.wfile.write(body[start:start + server.drop_after])
                    server.drop_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The loopback server with the LJ-layout archive and a small OCTMNIST file, for the whole module."""
    state = Server()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    state.files["/LJSpeech-1.1.tar.bz2"] = lj_archive()
    folder = tmp_path_factory.mktemp("octmnist")
    octmnist.write_standin(folder / octmnist.FILE, seed=1, fractions={"train": 0.0005, "val": 0.001})
    state.files["/octmnist.npz"] = (folder / octmnist.FILE).read_bytes()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(served):
    served.requests.clear()
    served.drop_after = None
    return served


@pytest.fixture
def online(monkeypatch, tmp_path, server):
    """Downloads allowed (conftest forbids them), the data folder in tmp_path, both URLs on the server."""
    monkeypatch.delenv("HW2_OFFLINE")
    monkeypatch.setenv("HW2_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HW2_LJSPEECH_URL", f"{server.url}/LJSpeech-1.1.tar.bz2")
    monkeypatch.setenv("HW2_OCTMNIST_URL", f"{server.url}/octmnist.npz")
    return tmp_path / "data"


def publish(monkeypatch, server):
    """Make the served files the published ones, in-process (as the real digests are for the real files)."""
    archive = server.files["/LJSpeech-1.1.tar.bz2"]
    monkeypatch.setattr(lj, "ARCHIVE_SHA256", hashlib.sha256(archive).hexdigest())
    monkeypatch.setattr(lj, "ARCHIVE_BYTES", len(archive))
    monkeypatch.setattr(octmnist, "PUBLISHED_MD5", hashlib.md5(server.files["/octmnist.npz"]).hexdigest())


def no_standin(monkeypatch) -> list:
    """Record the stand-ins asked for instead of speaking or drawing them (their making is tested elsewhere)."""
    made = []

    def corpus(data_dir, n_clips, seed=0, workers=None, grammar="ljspeech"):
        made.append(grammar)
        return Path(data_dir) / "standin-corpus"

    monkeypatch.setattr(lj, "make_standin", corpus)
    monkeypatch.setattr(octmnist, "write_standin", lambda path, seed=0: made.append(path.name))
    return made


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir())


# --- LJ Speech ----------------------------------------------------------------------------------------------

def test_lj_speech_resumes_a_dropped_transfer_and_is_verified_extracted_and_real(online, server, monkeypatch):
    publish(monkeypatch, server)
    server.drop_after = 100_000
    with pytest.raises(fetch.BrokenTransfer, match=r"broke off after 100.0 kB of .*run the same command again"):
        lj.prepare(online, 3, download=True)  # a transfer that breaks off is no reason to train on the stand-in
    assert (online / f"{lj.ARCHIVE}.part").stat().st_size == 100_000 and not (online / lj.REAL_FOLDER).exists()
    corpus = lj.prepare(online, 3, download=True)
    assert server.requests == [("/LJSpeech-1.1.tar.bz2", None), ("/LJSpeech-1.1.tar.bz2", "bytes=100000-")]
    assert corpus == online / lj.REAL_FOLDER
    assert len(list((corpus / "wavs").iterdir())) == lj.REAL_CLIPS and (corpus / "README").is_file()
    assert lj.data_source(corpus).startswith("real-")
    record = json.loads((corpus / lj.ARCHIVE_MARKER).read_text())
    assert record["archive_sha256"] == lj.ARCHIVE_SHA256 and len(record["audio"]) == lj.REAL_CLIPS
    assert leftovers(online) == [lj.REAL_FOLDER, lj.ARCHIVE]  # no .part, no temporary folder
    # A swapped clip is no longer LJ Speech: custom data, and `data verify` names it.
    shutil.copyfile(corpus / "wavs" / "LJ001-0002.wav", corpus / "wavs" / "LJ001-0001.wav")
    assert lj.data_source(corpus).startswith("custom-") and lj.verify_audio(corpus) == ["LJ001-0001"]


def test_a_wrong_digest_is_refused_with_nothing_extracted_and_the_archive_kept_aside(online, server, monkeypatch,
                                                                                     capsys):
    made = no_standin(monkeypatch)
    monkeypatch.setattr(lj, "ARCHIVE_BYTES", len(server.files["/LJSpeech-1.1.tar.bz2"]))  # the published digest stays
    assert lj.prepare(online, 3, download=True) == online / "standin-corpus" and made == ["ljspeech"]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[hw2] LJ Speech 1.1 from ") and "not the expected" in out[0]
    assert leftovers(online) == [f"{lj.ARCHIVE}.rejected"]
    assert (online / f"{lj.ARCHIVE}.rejected").read_bytes() == server.files["/LJSpeech-1.1.tar.bz2"]


def test_no_server_is_one_line_then_the_standin(online, monkeypatch, capsys):
    made = no_standin(monkeypatch)
    monkeypatch.setenv("HW2_LJSPEECH_URL", f"http://127.0.0.1:{closed_port()}/LJSpeech-1.1.tar.bz2")
    assert lj.prepare(online, 3, download=True) == online / "standin-corpus" and made == ["ljspeech"]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[hw2] could not download LJ Speech 1.1 from http://127.0.0.1:")
    assert "Connection refused" in out[0] and "to get it by hand, download https://data.keithito.com/" in out[0]
    assert leftovers(online) == []


def test_too_little_disk_space_is_one_line_before_any_byte(online, server, monkeypatch, capsys):
    publish(monkeypatch, server)
    made = no_standin(monkeypatch)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(10**9, 10**9, 5000))
    assert lj.prepare(online, 3, download=True) == online / "standin-corpus" and made == ["ljspeech"]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[hw2] LJ Speech 1.1 needs ") and "which has 5.0 kB free" in out[0]
    assert server.requests == [] and leftovers(online) == []


def test_another_digest_from_a_file_url_is_custom_and_a_folder_placed_by_hand_is_real_by_its_metadata(
        online, server, monkeypatch, tmp_path):
    archive = tmp_path / "mine.tar.bz2"
    archive.write_bytes(server.files["/LJSpeech-1.1.tar.bz2"])
    monkeypatch.setenv("HW2_LJSPEECH_URL", archive.as_uri())
    monkeypatch.setenv("HW2_LJSPEECH_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    corpus = lj.download_corpus(online)
    assert lj.data_source(corpus).startswith("custom-")  # verified, but against a digest that is not published
    assert json.loads((corpus / lj.ARCHIVE_MARKER).read_text())["verified_against"] == "HW2_LJSPEECH_SHA256"
    assert server.requests == []
    # The same folder placed by hand (no record): real only with LJ Speech 1.1's metadata.csv and all its clips.
    (corpus / lj.ARCHIVE_MARKER).unlink()
    assert lj.data_source(corpus).startswith("custom-")
    monkeypatch.setattr(lj, "METADATA_SHA256", fetch.file_digest(corpus / "metadata.csv", "sha256"))
    real = lj.data_source(corpus)
    assert real == f"real-{lj.METADATA_SHA256[:8]}"
    (corpus / "wavs" / f"{LJ_IDS[-1]}.wav").unlink()
    assert lj.data_source(corpus) == f"custom-{lj.METADATA_SHA256[:8]}"


def test_an_archive_without_lj_speechs_clips_is_refused_whole(online, server, monkeypatch):
    server.files["/short.tar.bz2"] = lj_archive(LJ_IDS[:5])
    monkeypatch.setenv("HW2_LJSPEECH_URL", f"{server.url}/short.tar.bz2")
    monkeypatch.setenv("HW2_LJSPEECH_SHA256", hashlib.sha256(server.files["/short.tar.bz2"]).hexdigest())
    with pytest.raises(fetch.FetchError, match=r"holds 5 clips .* not LJ Speech 1.1's 13,100: nothing extracted"):
        lj.download_corpus(online)
    assert leftovers(online) == [lj.ARCHIVE]


def test_quick_and_smoke_download_nothing(online, server, monkeypatch):
    from hw2.q3 import experiment

    made = no_standin(monkeypatch)
    for profile in ("quick", "smoke"):
        experiment.corpus_dir(profile)
    assert made == ["short", "short"] and server.requests == []


# --- OCTMNIST -----------------------------------------------------------------------------------------------

def test_octmnist_is_downloaded_and_real(online, server, monkeypatch):
    publish(monkeypatch, server)
    path = octmnist.prepare(online)
    assert octmnist.data_source(path).startswith("real-") and leftovers(online) == [octmnist.FILE]
    assert server.requests == [("/octmnist.npz", None)]


def test_octmnist_with_a_wrong_digest_is_kept_aside_then_the_standin(online, server, monkeypatch, capsys):
    made = no_standin(monkeypatch)
    octmnist.prepare(online)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[hw2] OCTMNIST from ") and "Generating the stand-in" in out[0]
    assert made == [octmnist.FILE] and leftovers(online) == [f"{octmnist.FILE}.rejected"]


def test_octmnist_resumes_a_dropped_transfer(online, server, monkeypatch):
    publish(monkeypatch, server)
    server.drop_after = 1000
    with pytest.raises(fetch.BrokenTransfer, match=r"broke off after 1.0 kB of .*\.part: run the same command again"):
        octmnist.prepare(online)  # a run's download
    path = octmnist.fetch_real(online)  # `python -m hw2 data fetch q2`
    assert server.requests == [("/octmnist.npz", None), ("/octmnist.npz", "bytes=1000-")]
    assert path.read_bytes() == server.files["/octmnist.npz"]


def test_octmnist_without_a_server_is_one_line_then_the_standin(online, monkeypatch, capsys):
    made = no_standin(monkeypatch)
    monkeypatch.setenv("HW2_OCTMNIST_URL", f"http://127.0.0.1:{closed_port()}/octmnist.npz")
    octmnist.prepare(online)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[hw2] could not download OCTMNIST from http://127.0.0.1:")
    assert "Generating the stand-in" in out[0] and made == [octmnist.FILE]


def test_octmnist_without_the_disk_space_is_one_line_before_any_byte(online, server, monkeypatch, capsys):
    made = no_standin(monkeypatch)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(10**9, 10**9, 10))
    octmnist.prepare(online)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[hw2] OCTMNIST needs ") and "which has 10 bytes free" in out[0]
    assert made == [octmnist.FILE] and leftovers(online) == []


def test_octmnist_address_and_digest_are_medmnists(monkeypatch):
    import contextlib

    with contextlib.redirect_stdout(io.StringIO()):  # medmnist's __init__ prints about torchvision
        info = pytest.importorskip("medmnist.info").INFO["octmnist"]
    assert (octmnist.URL, octmnist.PUBLISHED_MD5) == (info["url"], info["MD5"])


# --- the fetcher itself -------------------------------------------------------------------------------------

def test_offline_and_a_malformed_digest_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(fetch.NetworkError, match=r"^HW2_OFFLINE is set, so OCTMNIST is not downloaded; to get it"):
        fetch.download(octmnist.source(), tmp_path / octmnist.FILE)
    monkeypatch.setenv("HW2_OCTMNIST_MD5", "c68d")
    with pytest.raises(fetch.FetchError, match=r"HW2_OCTMNIST_MD5='c68d' is not a md5 digest \(32 hex digits\)"):
        fetch.download(octmnist.source(), tmp_path / octmnist.FILE)


def test_a_missing_file_on_the_server_is_one_line(online, server, monkeypatch):
    monkeypatch.setenv("HW2_OCTMNIST_URL", f"{server.url}/nothing.npz")
    with pytest.raises(fetch.NetworkError, match=r"could not download OCTMNIST from .*/nothing.npz \(HTTPError: "):
        fetch.download(octmnist.source(), online / octmnist.FILE)


# --- python -m hw2 data -------------------------------------------------------------------------------------

def test_data_says_what_each_question_uses_and_how_to_get_the_real_data(online, server, capsys):
    from hw2.__main__ import main

    assert main(["data", "--profile", "full"]) == 0
    out = capsys.readouterr().out
    assert "q1 (profile full): no data set (synthetic)\n" in out
    assert f"q2 (profile full): absent from {online / octmnist.FILE}; it will use OCTMNIST, downloaded on the " in out
    assert f"q3 (profile full): absent from {online / lj.REAL_FOLDER}; it will use LJ Speech 1.1, downloaded" in out
    assert "  the real data: `python -m hw2 data fetch q3` (2.7 GB)\n" in out
    assert main(["data", "status", "q3", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("q3 (profile quick): absent from ") and "uses its stand-in by design; PROFILE=full" in out
    assert server.requests == []  # status never downloads


def test_data_fetch_downloads_whatever_the_profile_and_moves_a_standin_aside(online, server, monkeypatch, capsys,
                                                                               tmp_path):
    from hw2.__main__ import main

    online.mkdir()
    (online / octmnist.FILE).write_bytes(server.files["/octmnist.npz"])  # a stand-in, made earlier
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "real.npz", **{f"{split}_{kind}": rng.integers(0, 4, shape, dtype=np.uint8)
                                       for split in octmnist.SPLITS
                                       for kind, shape in (("images", (4, 28, 28)), ("labels", (4, 1)))})
    server.files["/real.npz"] = (tmp_path / "real.npz").read_bytes()
    monkeypatch.setattr(octmnist, "PUBLISHED_MD5", hashlib.md5(server.files["/real.npz"]).hexdigest())
    monkeypatch.setenv("HW2_OCTMNIST_URL", f"{server.url}/real.npz")
    assert main(["data", "fetch", "q1"]) == 0 and capsys.readouterr().out == "q1: no data set to download\n"
    assert main(["data", "fetch", "q2"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"q2: real-{octmnist.PUBLISHED_MD5[:8]} (real)\n") and "moved aside as" in out
    assert (online / f"{octmnist.FILE}.replaced").read_bytes() == server.files["/octmnist.npz"]
    assert main(["data", "status", "q2", "--profile", "quick"]) == 0
    assert ": present, verified: its digest is the published one\n" in capsys.readouterr().out
    monkeypatch.setenv("HW2_OFFLINE", "1")
    assert main(["data", "fetch", "q3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hw2: HW2_OFFLINE is set, so LJ Speech 1.1 is not downloaded; to get")


@pytest.mark.parametrize("has_filter", [True, False])
def test_extraction_refuses_a_member_that_escapes_its_folder_with_or_without_tarfiles_filter(
        tmp_path, monkeypatch, has_filter):
    if not has_filter:  # Python 3.11.0-3.11.3
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    buffer.seek(0)
    folder = tmp_path / "into"
    folder.mkdir()
    with tarfile.open(fileobj=buffer, mode="r|") as tar:
        with pytest.raises(tarfile.OutsideDestinationError if has_filter else fetch.FetchError):
            for member in tar:
                lj._extract_member(tar, member, folder)
    assert not (tmp_path / "escaped.txt").exists()
