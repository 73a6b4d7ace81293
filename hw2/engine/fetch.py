"""Downloading a data set: one fetcher for every file hw2 downloads (OCTMNIST, the LJ Speech archive).

A `Source` names a file's address and published digest. `HW2_<KEY>_URL` (a mirror, or a `file:` URL of a copy
the user already has) and `HW2_<KEY>_<ALGORITHM>` override them, and `HW2_OFFLINE=1` skips every download.
`download` writes `<file>.part`, resumes it with an HTTP Range request after an interruption, checks the free
disk space before the first byte, shows a progress bar (MB/s, ETA), verifies the digest, and only then renames
the file into place; a file whose digest differs is kept aside as `<file>.rejected`. Every failure is one
`FetchError` line saying what went wrong and how to get the file by hand.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from hw2.engine.errors import UserError

OFFLINE = "HW2_OFFLINE"
CHUNK = 1 << 20
DIGEST_LENGTHS = {"sha256": 64, "md5": 32}


class FetchError(UserError):
    """A download that cannot be done or used: one line, with how to get the file by hand."""


class NetworkError(FetchError):
    """The address did not answer (refused, unknown host, timed out, an HTTP error), or HW2_OFFLINE is set."""


class BrokenTransfer(FetchError):
    """The transfer broke off: what arrived is kept as `<file>.part`, and the next call resumes it."""


class DigestError(FetchError):
    """The file arrived whole but is not the one expected; it is kept aside, never used."""


class NoSpaceError(FetchError):
    """Too little free disk space, found before the first byte is fetched."""


# The failures after which a caller may use its stand-in; a broken transfer stops instead, to be resumed (falling
# back after most of LJ Speech's 2.7 GB arrived would train the `full` profile on the stand-in).
FALL_BACK = (NetworkError, DigestError, NoSpaceError)


@dataclass(frozen=True)
class Source:
    name: str  # how messages name the file: "LJ Speech 1.1"
    key: str  # the stem of its environment variables: HW2_<key>_URL, HW2_<key>_<ALGORITHM>
    url: str
    digest: str  # hex, of the published file
    algorithm: str = "sha256"  # or "md5" (medmnist publishes MD5s)
    size: int | None = None  # the published file's bytes, where known: the disk check needs no connection then
    expand: float = 0.0  # bytes extracted from it per byte of it, which the disk check counts too
    timeout_s: float = 30.0  # to connect, and for each read: an offline machine does not hang
    by_hand: str = ""  # how to get the file by hand, for the error lines

    @property
    def url_variable(self) -> str:
        return f"HW2_{self.key}_URL"

    @property
    def digest_variable(self) -> str:
        return f"HW2_{self.key}_{self.algorithm.upper()}"

    def resolved(self) -> Source:
        """The source with the environment's overrides; a digest other than the published one drops the published
        size (it is another file)."""
        url = os.environ.get(self.url_variable) or self.url
        digest = (os.environ.get(self.digest_variable) or self.digest).strip().lower()
        if len(digest) != DIGEST_LENGTHS[self.algorithm] or any(c not in "0123456789abcdef" for c in digest):
            raise FetchError(f"{self.digest_variable}={digest!r} is not a {self.algorithm} digest "
                             f"({DIGEST_LENGTHS[self.algorithm]} hex digits): set it to the file's digest, or unset it")
        return replace(self, url=url, digest=digest, size=self.size if digest == self.digest.lower() else None)


def offline() -> bool:
    return os.environ.get(OFFLINE, "") not in ("", "0")


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def download(source: Source, dest: Path) -> str:
    """Fetch `source` (with the environment's overrides) into `dest`, verified; return the digest it was verified
    against. A file already at `dest` is verified, not fetched again. FetchError (one line) where it cannot."""
    source = source.resolved()
    got = dest
    if not dest.is_file():
        if offline():
            raise NetworkError(f"{OFFLINE} is set, so {source.name} is not downloaded; {source.by_hand}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = dest.with_name(dest.name + ".part")
        _transfer(source, got)
    actual = file_digest(got, source.algorithm)
    if actual != source.digest:
        kept = aside(dest.with_name(dest.name + ".rejected"))
        got.rename(kept)
        raise DigestError(f"{source.name} from {source.url} has {source.algorithm} {actual}, not the expected "
                          f"{source.digest} ({source.digest_variable} overrides it): kept aside as {kept} and not "
                          f"used; {source.by_hand}")
    got.replace(dest)  # only a verified file ever has the name that is used
    return source.digest


def _transfer(source: Source, part: Path) -> None:
    """Download into `part`, resuming what it holds: NetworkError where the address does not answer,
    BrokenTransfer where the transfer does not finish."""
    have = part.stat().st_size if part.is_file() else 0
    if source.size is not None:
        if have == source.size:
            return
        check_space(part.parent, source, source.size - have, source.size)  # before connecting at all
    request = urllib.request.Request(source.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=source.timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is whole (its digest says whether it is right)
            return
        raise _network_error(source, exc) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, unknown host, timeout, bad URL
        raise _network_error(source, exc) from None
    with response:
        if have and response.status != 206:  # the server (or a file: URL) sends the whole file again
            have = 0
        length = response.headers.get("Content-Length", "")
        total = have + int(length) if length.isdigit() else source.size
        if total is not None:
            check_space(part.parent, source, total - have, total)  # before the first byte of the body
        with open(part, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1000, mininterval=0.5,
                desc=f"downloading {source.name}") as bar:
            got = have
            while chunk := _read(response, source, part, got, total):
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got < total:  # http.client reads a dropped connection as the end of the body
        raise _broken(source, part, got, total, "the connection closed")


def _read(response, source: Source, part: Path, got: int, total: int | None) -> bytes:
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as exc:  # reset, timed out, or the body ended early
        raise _broken(source, part, got, total, f"{type(exc).__name__}: {exc}") from None


def _broken(source: Source, part: Path, got: int, total: int | None, why: str) -> BrokenTransfer:
    amount = human_bytes(got) + (f" of {human_bytes(total)}" if total is not None else "")
    return BrokenTransfer(f"the download of {source.name} from {source.url} broke off after {amount} ({why}); it "
                          f"is kept as {part}: run the same command again to resume it")


def _network_error(source: Source, exc: Exception) -> NetworkError:
    reason = getattr(exc, "reason", None) or exc
    return NetworkError(f"could not download {source.name} from {source.url} ({type(exc).__name__}: {reason}); "
                        f"{source.by_hand}")


def check_space(folder: Path, source: Source, to_fetch: int, total: int) -> None:
    """NoSpaceError unless the disk of `folder` holds what is left to fetch plus what will be extracted from it."""
    extracted = int(total * source.expand)
    needed = to_fetch + extracted
    free = shutil.disk_usage(folder).free
    if free < needed:
        parts = f"{human_bytes(to_fetch)} to download" + (f" and {human_bytes(extracted)} extracted" if extracted else "")
        raise NoSpaceError(f"{source.name} needs {human_bytes(needed)} on the disk of {folder} ({parts}), which has "
                           f"{human_bytes(free)} free: free some space or set HW2_DATA_DIR to a folder on a larger disk")


def aside(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, ...: the first name not taken, so nothing kept aside is overwritten."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def human_bytes(n: float) -> str:
    """'2.7 GB': bytes as the lines of hw2 print them (powers of 1000, as the progress bar)."""
    units, i = ("bytes", "kB", "MB", "GB", "TB"), 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} bytes" if i == 0 else f"{n:.1f} {units[i]}"
