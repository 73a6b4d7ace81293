"""OCTMNIST (28x28 retinal OCT scans, 4 classes): the real file through medmnist, or a generated stand-in.

`prepare()` finds `octmnist.npz` in the data folder; where it is missing it downloads it from medmnist's address
through `hw2.engine.fetch` (short timeout, so an offline machine does not hang; resumable, verified by medmnist's
MD5; HW2_OCTMNIST_URL and HW2_OCTMNIST_MD5 override them, HW2_OFFLINE=1 skips the attempt) or, failing that,
with one line saying why, generates the stand-in:
a file of the same keys, shapes, dtypes, split sizes and class counts whose images are drawn as retina-like
layered bands with class-specific lesions, speckle and nuisance geometry. The stand-in carries its identity inside
itself (an `hw2_standin` entry with a digest of its arrays), so a copy is still known to be one and another file
copied over it is not. `data_source()` names data by content: "real" only for the published file (the MD5 that
medmnist's metadata gives), "standin" for hw2's own, "custom" for anything else.

`load()` preprocesses exactly as the skeleton's `utils.load_oct_data`: flatten, divide by 256, and by
default keep the 529-image class-ordered test subsample (the first 182/55/42/250 of classes 0..3).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw2.engine import fetch
from hw2.engine.errors import UserError

FILE = "octmnist.npz"
STANDIN_KEY = "hw2_standin"  # the stand-in's identity, an entry of the npz itself
# octmnist.npz (28x28): its address and MD5 as medmnist's INFO["octmnist"] gives them (medmnist 3.0.2)
URL = "https://zenodo.org/records/10519652/files/octmnist.npz?download=1"
PUBLISHED_MD5 = "c68d92d5b585d8d81f7112f81e2d0842"
CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")
SPLITS = ("train", "val", "test")
# Class counts of the real OCTMNIST splits; the stand-in copies them.
CLASS_COUNTS = {
    "train": (33_484, 10_213, 7_754, 46_026),  # 97,477
    "val": (3_721, 1_135, 862, 5_114),  # 10,832
    "test": (250, 250, 250, 250),  # 1,000
}
# The skeleton keeps the first n of each class of the test split (inherited from HW1's utils.py).
TEST_SUBSAMPLE = (182, 55, 42, 250)
STANDIN_VERSION = 2  # 2: the identity is inside the file
DOWNLOAD_TIMEOUT_S = 5.0


class DataError(UserError):
    """Data that is missing, malformed or cannot be written, with what to do about it (the command line prints it
    as one line)."""


# What reading a damaged npz raises: np.load opens lazily, so a bad CRC or deflate stream surfaces only when an
# array is read.
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)


# --- finding, downloading or generating the file ------------------------------------------------------------

def prepare(data_dir: Path, allow_download: bool = True, seed: int = 0) -> Path:
    """Path to a usable `octmnist.npz` in `data_dir`, downloading or generating it if needed."""
    data_dir = Path(data_dir)
    path = data_dir / FILE
    if path.exists():
        validate(path)
        return path
    try:  # before any download or generation: an unwritable folder is for the user to fix, and said at once
        data_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=data_dir).close()
    except OSError as exc:
        raise DataError(_unwritable(data_dir, exc)) from None
    reason = "OCTMNIST is not available offline"
    if allow_download and not fetch.offline():
        try:
            fetch.download(source(), path)
            return path
        except fetch.FALL_BACK as exc:
            reason = str(exc)
    print(f"[hw2] {reason}. Generating the stand-in {path} (seed {seed})", flush=True)
    write_standin(path, seed=seed)
    return path


def fetch_real(data_dir: Path) -> Path:
    """`data_dir/octmnist.npz` downloaded and verified, whatever is there: another file in its place (a stand-in)
    is first moved aside as `octmnist.npz.replaced`, never deleted. FetchError (one line) where it cannot be."""
    path = Path(data_dir) / FILE
    expected = source().resolved()
    if path.is_file():
        if fetch.file_digest(path, expected.algorithm) == expected.digest:
            return path
        kept = fetch.aside(path.with_name(f"{FILE}.replaced"))
        path.rename(kept)
        print(f"[hw2] the {FILE} that was there is moved aside as {kept}", flush=True)
    fetch.download(source(), path)  # the same partial file as a run's download: either resumes the other
    return path


def source() -> fetch.Source:
    """The real file as `hw2.engine.fetch` downloads it (HW2_OCTMNIST_URL, HW2_OCTMNIST_MD5)."""
    return fetch.Source("OCTMNIST", "OCTMNIST", URL, PUBLISHED_MD5, algorithm="md5", timeout_s=DOWNLOAD_TIMEOUT_S,
                        by_hand=f"to get it by hand, download {URL} and put it in the data folder as {FILE}")


def _unwritable(data_dir: Path, exc: OSError) -> str:
    blocker = next((p for p in (data_dir, *data_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker:
        return (f"the data folder {data_dir} cannot be made: {blocker} is a file, not a folder. Set HW2_DATA_DIR "
                f"to a folder (hw2 downloads or generates OCTMNIST there)")
    return (f"cannot write to the data folder {data_dir} ({exc.strerror or exc}): OCTMNIST is downloaded or "
            f"generated there when {FILE} is missing. Set HW2_DATA_DIR to a folder you can write to, or put "
            f"{FILE} in {data_dir} yourself")


def data_source(path: Path) -> str:
    """`real-<md5>`, `standin-<md5>` or `custom-<md5>`, from the file's content: part of every run key, shown on
    every table and figure."""
    md5 = fetch.file_digest(path, "md5")
    if md5 == PUBLISHED_MD5:
        kind = "real"
    else:
        arrays = validate(path)  # a damaged or malformed file is one DataError, here as everywhere
        made = json.loads(str(arrays.pop(STANDIN_KEY))) if STANDIN_KEY in arrays else {}
        kind = "standin" if made.get("arrays_sha256") == _arrays_digest(arrays) else "custom"
    return f"{kind}-{md5[:8]}"


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(f"{name}{arrays[name].dtype}{arrays[name].shape}".encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def validate(path: Path) -> dict[str, np.ndarray]:
    """The arrays of `path`, or a DataError naming what is wrong if it is not an OCTMNIST-format npz."""
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}  # reads every array now: a bad CRC is found here
    except (PermissionError, IsADirectoryError) as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror}): make it a readable file") from None
    except DAMAGED as exc:
        raise DataError(f"{path} is damaged ({exc or type(exc).__name__}): a download or copy that did not "
                        f"finish? hw2 leaves it as it is: move it away or delete it, and the next run downloads "
                        f"OCTMNIST again (or, offline, generates the stand-in)") from None
    missing = {f"{s}_{k}" for s in SPLITS for k in ("images", "labels")} - set(arrays)
    if missing:
        raise DataError(f"{path} lacks {sorted(missing)}; expected medmnist's OCTMNIST (28x28) file. "
                        f"Delete it to have hw2 download or generate a good one.")
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DataError(f"{path}: {split}_images is {images.dtype}{images.shape}, expected "
                            f"uint8 (N, 28, 28); hw2 uses the 28x28 OCTMNIST file")
        if labels.shape != (len(images), 1):
            raise DataError(f"{path}: {split}_labels has shape {labels.shape}, expected ({len(images)}, 1)")
        if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
            raise DataError(f"{path}: {split}_labels outside 0..{len(CLASSES) - 1}")
    return arrays


# --- the stand-in -------------------------------------------------------------------------------------------

def standin_counts(fractions: dict[str, float] | None = None) -> dict[str, tuple[int, ...]]:
    """Images per split and class of the stand-in: OCTMNIST's own counts, or a fraction of a split's (at least
    one image per class) for small test files. The test split is always whole: the skeleton's 529-image
    subsample takes the first 182/55/42/250 of its classes."""
    fractions = {k: v for k, v in (fractions or {}).items() if k != "test"}
    return {split: tuple(max(1, round(n * fractions[split])) for n in counts) if split in fractions else counts
            for split, counts in CLASS_COUNTS.items()}


def write_standin(path: Path, seed: int = 0, fractions: dict[str, float] | None = None) -> None:
    """Generate the stand-in file (deterministic from `seed`), atomically, with its identity inside. `fractions`
    shrinks the train and validation splits (tests that use a few hundred images need no 109k-image file)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    counts = standin_counts(fractions)
    for split in SPLITS:
        labels = np.repeat(np.arange(len(CLASSES), dtype=np.uint8), counts[split])
        labels = labels[rng.permutation(len(labels))]
        arrays[f"{split}_images"] = render_scans(labels, rng)
        arrays[f"{split}_labels"] = labels[:, None]
    arrays[STANDIN_KEY] = np.array(json.dumps({
        "generator": "hw2.q2.octmnist", "version": STANDIN_VERSION, "seed": seed, "classes": CLASSES,
        **({"fractions": fractions} if fractions else {}), "arrays_sha256": _arrays_digest(arrays)}))
    # A temporary name of its own, so that two first runs generating at once never collide (the last rename wins;
    # both files are the same, as the generator is deterministic).
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npz")
    try:
        np.savez(tmp, **arrays)  # its noise barely compresses (78 against 86 MB) and compressing takes 3 s
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(_unwritable(path.parent, exc)) from None


def render_scans(labels: np.ndarray, rng: np.random.Generator, size: int = 28, chunk: int = 8192) -> np.ndarray:
    """uint8 images (N, size, size) of a retina cross-section whose lesions depend on the class."""
    out = np.empty((len(labels), size, size), dtype=np.uint8)
    for start in range(0, len(labels), chunk):
        out[start:start + chunk] = _render_chunk(labels[start:start + chunk], rng, size)
    return out


def _bump(x, centre, width, amplitude):
    return amplitude * np.exp(-0.5 * ((x - centre) / width) ** 2)


def _at(profile: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The value of a per-column profile (n, 1, W) at per-image columns xs (n, 1, 1)."""
    idx = np.clip(np.rint(xs), 0, profile.shape[2] - 1).astype(np.int64)
    return np.take_along_axis(profile, idx, axis=2)


def _render_chunk(labels: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    n = len(labels)
    y = np.arange(size, dtype=np.float64)[None, :, None]  # (1, H, 1)
    x = np.arange(size, dtype=np.float64)[None, None, :]  # (1, 1, W)

    def u(lo, hi):  # one value per image, broadcastable against (n, H, W)
        return rng.uniform(lo, hi, n)[:, None, None]

    cnv, dme, drusen = ((labels == c).astype(np.float64)[:, None, None] for c in range(3))
    # Severity near 0 makes a diseased scan look almost normal: the classes overlap, as real scans do.
    severity = rng.beta(2.0, 1.6, n)[:, None, None]

    # Nuisance geometry shared by all classes: tilt, curvature, height, foveal pit position and depth.
    surface = (u(8, 14) + u(-0.2, 0.2) * (x - 14) + u(0.0, 0.02) * (x - 14) ** 2
               + _bump(x, u(9, 19), u(2.0, 3.5), u(1.0, 3.0)))
    thickness = u(7.0, 10.0) + dme * severity * u(0.5, 3.0)  # oedema thickens the retina

    # Retinal pigment epithelium (RPE): lifted by a dome in CNV, by small bumps (drusen) in DRUSEN.
    rpe = surface + thickness
    cnv_x = u(6, 22)
    rpe = rpe - cnv * _bump(x, cnv_x, u(1.8, 3.5), severity * u(1.5, 4.5))
    n_drusen = rng.integers(2, 5, n)[:, None, None]
    for i in range(4):
        rpe = rpe - drusen * (i < n_drusen) * _bump(x, u(3, 25), u(0.7, 1.3), severity * u(0.8, 2.0))

    depth = y - surface  # depth below the inner limiting membrane

    def band(d, w):
        return np.exp(-0.5 * (d / w) ** 2)

    img = (0.75 * band(depth, 0.7)  # inner limiting membrane / nerve fibre layer
           + 0.35 * band(depth - 0.35 * thickness, 1.2)  # plexiform layers
           + 0.20 * band(depth - 0.65 * thickness, 1.0)
           + 1.00 * band(y - rpe, 0.9)  # RPE: the brightest line
           + 0.45 * np.clip(1 - (y - rpe - 1.5) / 6, 0, 1) * (y > rpe + 1.0))  # choroid, fading
    img += 0.12 * ((depth > 0) & (y < rpe))  # faint retinal tissue between the lines

    # CNV: a bright fibrovascular mass under the lifted RPE, with dark subretinal fluid above it.
    cnv_y = _at(rpe, cnv_x)
    img += cnv * severity * 0.6 * np.exp(-0.5 * (((x - cnv_x) / 2.2) ** 2 + ((y - cnv_y - 1.0) / 1.3) ** 2))
    img -= cnv * severity * 0.35 * np.exp(-0.5 * (((x - cnv_x) / 2.5) ** 2 + ((y - cnv_y + 2.0) / 1.0) ** 2))

    # DME: one to three dark intraretinal cysts.
    n_cysts = rng.integers(1, 4, n)[:, None, None]
    for i in range(3):
        cyst_x = u(5, 23)
        cyst_y = _at(surface, cyst_x) + thickness * u(0.3, 0.7)
        r = u(0.9, 2.2)
        cyst = np.exp(-0.5 * (((x - cyst_x) / (1.3 * r)) ** 2 + ((y - cyst_y) / r) ** 2))
        img -= dme * (i < n_cysts) * severity * 0.9 * cyst * (img > 0.05)

    # NORMAL scans have no lesion: their only cue is the absence of one.
    img *= u(0.55, 1.05)  # global gain
    img *= rng.gamma(6.0, 1 / 6.0, img.shape)  # multiplicative speckle
    img += rng.normal(0.05, 0.06, img.shape)  # additive noise
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


# --- loading as the skeleton does ---------------------------------------------------------------------------

@dataclass
class OctSplits:
    """Float32 tensors as the skeleton's ClassificationDataset holds them: X (N, 784) in [0, 1), y long."""

    train_X: "object"
    train_y: "object"
    dev_X: "object"
    dev_y: "object"
    test_X: "object"
    test_y: "object"
    test_full_X: "object"  # the whole test split (1,000 images), whatever eq_test_dist says
    test_full_y: "object"

    def to(self, device: str) -> "OctSplits":
        return OctSplits(**{name: t.to(device) for name, t in vars(self).items()})


def load(path: Path, eq_test_dist: bool = False, n_train: int | None = None, n_val: int | None = None,
         subset_seed: int = 0) -> OctSplits:
    """The skeleton's `load_oct_data()` (flatten, /256, 529-image test subsample unless `eq_test_dist`),
    optionally on a seeded random subset of train/val (the quick and smoke profiles)."""
    import torch

    data = validate(path)  # read once: the checked arrays are the ones used

    def xy(split, n=None):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"].squeeze(1)
        if n is not None and n < len(images):
            keep = np.sort(np.random.default_rng(subset_seed).permutation(len(images))[:n])
            images, labels = images[keep], labels[keep]
        X = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 256.0)
        return X, torch.from_numpy(labels.astype(np.int64))

    train_X, train_y = xy("train", n_train)
    dev_X, dev_y = xy("val", n_val)
    test_full_X, test_full_y = test_X, test_y = xy("test")
    if not eq_test_dist:
        keep = np.concatenate([np.flatnonzero(test_y.numpy() == c)[:n] for c, n in enumerate(TEST_SUBSAMPLE)])
        test_X, test_y = test_X[keep], test_y[keep]
    return OctSplits(train_X, train_y, dev_X, dev_y, test_X, test_y, test_full_X, test_full_y)
