"""OCTMNIST data that cannot be used (a damaged file, a data folder hw2 cannot write to) stops with one message
naming the path, what is wrong and what to do, and hw2 leaves the file as it found it."""
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hw2.q2 import octmnist
from tests.conftest import ROOT, SMALL_OCTMNIST, subprocess_env


def small_npz(path: Path, compressed: bool) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 4).astype(np.uint8)[:, None]
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path.read_bytes()


def first_member_data(path: Path) -> int:
    """Offset of the first member's data in the zip (past its local header)."""
    info = zipfile.ZipFile(path).infolist()[0]
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def damage(path: Path, kind: str) -> None:
    raw = bytearray(small_npz(path, compressed=kind == "deflate"))
    if kind == "truncated":
        raw = raw[:len(raw) // 2]
    elif kind == "empty":
        raw = bytearray()
    else:  # bytes changed inside the first array: the zip opens, reading the array fails (np.load is lazy)
        start = first_member_data(path) + (300 if kind == "crc" else 40)
        raw[start:start + 64] = bytes(range(64)) if kind == "deflate" else bytes(b ^ 0xFF for b in raw[start:start + 64])
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("kind", ["truncated", "empty", "crc", "deflate"])
def test_a_damaged_file_is_named_and_left_as_it_is(tmp_path, kind):
    path = tmp_path / octmnist.FILE
    damage(path, kind)
    before = path.read_bytes()
    with pytest.raises(octmnist.DataError) as caught:
        octmnist.prepare(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged (")
    assert "move it away or delete it" in message
    assert path.read_bytes() == before and os.listdir(tmp_path) == [octmnist.FILE]  # nothing replaced or added


def test_a_folder_in_place_of_the_file_is_named(tmp_path):
    (tmp_path / octmnist.FILE).mkdir()
    with pytest.raises(octmnist.DataError, match=rf"^{tmp_path / octmnist.FILE} cannot be read \(Is a directory\)"):
        octmnist.load(tmp_path / octmnist.FILE)


def test_a_stand_in_that_cannot_be_written_is_named_and_leaves_nothing_behind(tmp_path, monkeypatch):
    def refused(file, **arrays):  # what a full disk answers while the file is written
        Path(file).write_bytes(b"PK")
        raise OSError(28, "No space left on device", str(file))

    monkeypatch.setattr(np, "savez", refused)
    with pytest.raises(octmnist.DataError, match=rf"^cannot write to the data folder {tmp_path} \(No space left on "
                                                 rf"device\).*Set HW2_DATA_DIR to a folder you can write to"):
        octmnist.write_standin(tmp_path / octmnist.FILE, fractions=SMALL_OCTMNIST)
    assert os.listdir(tmp_path) == []


def as_unprivileged() -> list[str]:
    """A command prefix under which file permissions bind: root overrides a read-only folder unless it drops
    the capabilities that let it."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux): a read-only folder does not stop root")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def run_q2(data_dir: Path, tmp_path: Path, prefix=()) -> subprocess.CompletedProcess:
    env = subprocess_env(HW2_DATA_DIR=data_dir, HW2_RESULTS_DIR=tmp_path / "results")
    env.pop("HW2_OFFLINE")  # the download is tried (and must not hide the folder's problem)
    return subprocess.run([*prefix, sys.executable, "-m", "hw2", "runs", "q2", "--profile", "smoke"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_command_line_prints_one_line_for_a_damaged_file(tmp_path):
    path = tmp_path / "data" / octmnist.FILE
    path.parent.mkdir()
    damage(path, "crc")
    before = path.read_bytes()
    done = run_q2(path.parent, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"hw2: {path} is damaged (Bad CRC-32 for file 'train_images.npy'): ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_the_command_line_names_a_data_folder_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("a file\n")
    done = run_q2(tmp_path / "notes.txt" / "data", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (f"hw2: the data folder {tmp_path / 'notes.txt' / 'data'} cannot be made: "
                                   f"{tmp_path / 'notes.txt'} is a file, not a folder. Set HW2_DATA_DIR to a "
                                   f"folder (hw2 downloads or generates OCTMNIST there)")
    assert (tmp_path / "notes.txt").read_text() == "a file\n"


def test_the_command_line_names_a_read_only_data_folder(tmp_path):
    prefix = as_unprivileged()
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        done = run_q2(folder, tmp_path, prefix)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().startswith(f"hw2: cannot write to the data folder {folder} (Permission denied): ")
    assert "could not download" not in done.stdout  # no network attempt, no talk of falling back
    assert os.listdir(folder) == []


def test_status_names_a_damaged_file_in_one_line_too(tmp_path):
    path = tmp_path / "data" / octmnist.FILE
    path.parent.mkdir()
    damage(path, "crc")
    env = subprocess_env(HW2_DATA_DIR=path.parent, HW2_RESULTS_DIR=tmp_path / "results", PROFILE="smoke")
    done = subprocess.run([sys.executable, "-m", "hw2", "status"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr and f"{path} is damaged (Bad CRC-32" in done.stderr, done.stderr
