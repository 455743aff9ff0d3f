"""Downloading and locating LibriTTS archives: resumable, retried, checksum-verified.

Knows nothing of DVC. Standard library (urllib) + tqdm only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Mapping

from tqdm import tqdm

from voicegender.errors import MissingInputError, UserError

log = logging.getLogger(__name__)

# Published sizes / SHA-256 of the openslr resource 60 archives (as listed by torchaudio's
# LibriTTS dataset; the md5 lists found elsewhere disagree with each other).
KNOWN_SHA256: dict[str, str] = {
    "train-clean-100": "c5608bf1ef74bb621935382b8399c5cdd51cd3ee47cec51f00f885a64c6c7f6b",
    "test-clean": "234ea5b25859102a87024a4b9b86641f5b5aaaf1197335c95090cde04fe9a4f5",
    "dev-clean": "da0864e1bd26debed35da8a869dd5c04dfc27682921936de7cff9c8a254dbe1a",
}
KNOWN_SIZE_BYTES: dict[str, int] = {
    "train-clean-100": 7_723_686_890,
    "test-clean": 1_230_670_113,
    "dev-clean": 1_291_469_655,
}

_MIRROR_HINT = (
    "The server holds another file than the one expected: check data.libritts.base_url, "
    "or, if this file is the one you want, give its SHA-256 in data.libritts.checksums."
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK_BYTES = 1 << 20  # read / hash granularity; not a user knob


class DownloadError(UserError, RuntimeError):
    """A download failed for good (after retries, or on a non-transient error)."""


class ChecksumError(DownloadError):
    """The downloaded (or found) file's SHA-256 differs from the expected one."""


class MissingChecksumError(DownloadError):
    """No checksum is known for a file and the caller gave none."""


class DiskSpaceError(DownloadError):
    """Not enough free disk space for the download."""


class _Transient(Exception):
    """Internal: an attempt failed in a way worth retrying."""


def _check_sha256(value: object, what: str) -> str:
    if not value:
        raise MissingChecksumError(f"no SHA-256 checksum for {what}: pass one explicitly (it is never skipped)")
    if not isinstance(value, str) or not _HEX64.match(value.strip().lower()):
        raise MissingChecksumError(f"checksum for {what} is not a 64-digit hex SHA-256: {value!r}")
    return value.strip().lower()


def sha256_file(path: Path, *, start_hasher=None, offset: int = 0):
    """SHA-256 of a file (from `offset`, continuing `start_hasher` if given)."""
    h = start_hasher if start_hasher is not None else hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(_CHUNK_BYTES):
            h.update(chunk)
    return h


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def check_disk_space(directory: Path, need_bytes: int, what: str) -> None:
    """Raise DiskSpaceError if `directory`'s file system has less than `need_bytes` free."""
    free = shutil.disk_usage(directory).free
    if need_bytes > free:
        raise DiskSpaceError(
            f"not enough disk space for {what}: needs {_human(need_bytes)} "
            f"({need_bytes} bytes), only {_human(free)} ({free} bytes) free in {directory}"
        )


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000)."""
    if not value:
        return None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def download_file(
    url: str,
    dest: Path,
    sha256: str,
    *,
    expected_size: int | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest`, resuming, retrying and verifying its SHA-256. Returns `dest`.

    - Bytes go to `dest.part` first; an interrupted download resumes with an HTTP Range
      request (bytes already on disk are not fetched again). A server answering 200 to a
      Range request restarts the file cleanly; 416 means the part is already complete
      (or not a prefix of the file: then it restarts).
    - Transient failures (connection errors, timeouts, short reads, HTTP 5xx/408/429) are
      retried up to `retries` times in a row, sleeping `backoff_s * 2**k` seconds; an
      attempt that made progress resets that count (a 9 GB download may be cut many times).
      Other HTTP errors (404, 403 ...) fail at once.
    - Free disk space is checked before any byte is written (from `expected_size`, else
      from the server's Content-Length).
    - The SHA-256 is checked before the atomic rename to `dest`; on mismatch the partial
      file is deleted and ChecksumError raised (nothing is kept).
    - An existing `dest` is verified (never trusted) and, if it matches, not downloaded again;
      if it does not match it is deleted and downloaded again.
    """
    sha256 = _check_sha256(sha256, url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _Part(dest.with_suffix(dest.suffix + ".part"))
    if _present_and_verified(dest, sha256, expected_size):
        return dest
    if expected_size is not None:
        if part.size() > expected_size:
            part.restart()  # cannot be a prefix of this file
        check_disk_space(dest.parent, expected_size - part.size(), url)
    _fetch(
        url,
        part,
        expected_size,
        dest.name,
        retries=retries,
        backoff_s=backoff_s,
        timeout_s=timeout_s,
        progress=progress,
    )
    _verify_and_rename(part, dest, url, sha256, expected_size)
    return dest


def _present_and_verified(dest: Path, sha256: str, expected_size: int | None) -> bool:
    """Whether ``dest`` is already there with the right size and SHA-256; a wrong one is deleted."""
    if not dest.exists():
        return False
    if expected_size is None or dest.stat().st_size == expected_size:
        if sha256_file(dest).hexdigest() == sha256:
            log.info("%s already present and verified", dest)
            return True
    log.warning("%s exists but does not match its checksum: downloading it again", dest)
    dest.unlink()
    return False


def _fetch(
    url: str,
    part: _Part,
    total: int | None,
    name: str,
    *,
    retries: int,
    backoff_s: float,
    timeout_s: float,
    progress: bool,
) -> None:
    """Append ``url``'s remaining bytes to ``part`` (``total`` bytes, if known), retrying transient
    failures as :func:`download_file` says; a progress bar named ``name``."""
    failures = 0
    with tqdm(
        total=total,
        initial=part.size(),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not progress,
    ) as bar:
        while True:
            before = part.size()
            try:
                _attempt(url, part, total, bar, timeout_s)
                return
            except _Transient as e:
                failures = 0 if part.size() > before else failures + 1
                if failures > retries:
                    raise DownloadError(
                        f"downloading {url} failed {failures} times in a row, last: {e} "
                        f"({part.size()} bytes kept in {part.path}). Check the URL (data.libritts.base_url) "
                        "and the network, then run again: the download resumes"
                    ) from None
                delay = backoff_s * 2 ** max(failures - 1, 0)
                log.warning("download of %s interrupted (%s); retrying in %.2f s", url, e, delay)
                time.sleep(delay)


def _verify_and_rename(part: _Part, dest: Path, url: str, sha256: str, expected_size: int | None) -> None:
    """Rename the complete ``part`` to ``dest`` once its size and SHA-256 match; else delete it
    and raise :class:`ChecksumError` (nothing is kept)."""
    size = part.size()
    if expected_size is not None and size != expected_size:
        part.path.unlink()
        raise ChecksumError(
            f"{url}: got {size} bytes but expected {expected_size}; the downloaded file was deleted. {_MIRROR_HINT}"
        )
    got = part.hexdigest()
    if got != sha256:
        part.path.unlink()
        raise ChecksumError(
            f"SHA-256 mismatch for {url}: expected {sha256}, got {got}; the downloaded file was deleted. {_MIRROR_HINT}"
        )
    with open(part.path, "rb+") as f:  # on disk before the rename declares it complete
        os.fsync(f.fileno())
    os.replace(part.path, dest)


class _Part:
    """The `.part` file and a running SHA-256 of its bytes.

    Hashing while downloading avoids reading a 9 GB file back from disk afterwards; when
    resuming a part left by an earlier run, its bytes are hashed once first.
    """

    def __init__(self, path: Path):
        self.path = path
        self._hasher = None
        self._hashed = -1  # number of bytes of the file that _hasher covers

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self._hasher, self._hashed = hashlib.sha256(), 0

    def _sync(self) -> None:
        size = self.size()
        if self._hashed != size:
            self._hasher = sha256_file(self.path) if size else hashlib.sha256()
            self._hashed = size

    def open_append(self):
        self._sync()
        return open(self.path, "ab")

    def write(self, f, chunk: bytes) -> None:
        f.write(chunk)
        self._hasher.update(chunk)
        self._hashed += len(chunk)

    def hexdigest(self) -> str:
        self._sync()
        return self._hasher.hexdigest()


def _attempt(url: str, part: _Part, total: int | None, bar, timeout_s: float) -> int:
    """One HTTP request appending to `part`. Returns the file's total size when complete.

    Raises _Transient for a retryable failure (the bytes received so far are kept).
    """
    have = part.size()
    req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416:
            _, size = _parse_content_range(e.headers.get("Content-Range"))
            if size is not None and have == size and (total is None or total == size):
                return size  # the part was already complete
            log.warning("server refused to resume %s at byte %d: restarting", url, have)
            part.restart()
            raise _Transient("HTTP 416 (range not satisfiable): restarting from byte 0")
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code} {e.reason}")
        raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {e}")

    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if resp.status == 206:
            start, size = _parse_content_range(resp.headers.get("Content-Range"))
            if start != have:
                part.restart()
                raise _Transient(f"server resumed at byte {start}, not {have}: restarting")
        elif resp.status == 200:
            if have:
                log.warning("server ignored the Range request for %s: restarting from byte 0", url)
                part.restart()
                have = 0
            size = length
        else:
            raise _Transient(f"unexpected HTTP status {resp.status}")

        if size is not None:
            if total is not None and size != total:
                raise DownloadError(f"{url} is {size} bytes on the server, {total} were expected. {_MIRROR_HINT}")
            total = size
            check_disk_space(part.path.parent, size - have, url)
        bar.reset(total=total)
        bar.update(have)

        received = 0
        with part.open_append() as f:
            while True:
                try:
                    chunk = resp.read(_CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as e:
                    raise _Transient(f"{type(e).__name__} after {received} bytes: {e}") from None
                if not chunk:
                    break
                part.write(f, chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short read (no exception) when the peer closes early.
    if length is not None and received < length:
        raise _Transient(f"connection closed after {received} of {length} bytes")
    if total is not None and have + received < total:
        raise _Transient(f"only {have + received} of {total} bytes received")
    return total if total is not None else have + received


def _resolve_checksum(subset: str, checksums: Mapping[str, object] | None) -> tuple[str, int | None]:
    given = (checksums or {}).get(subset)
    if isinstance(given, Mapping):
        return _check_sha256(given.get("sha256"), subset), given.get("size")
    if given:
        sha = _check_sha256(given, subset)
        # The published size only applies when the file is the published one.
        return sha, KNOWN_SIZE_BYTES.get(subset) if sha == KNOWN_SHA256.get(subset) else None
    if subset in KNOWN_SHA256:
        return KNOWN_SHA256[subset], KNOWN_SIZE_BYTES.get(subset)
    raise MissingChecksumError(
        f"no known SHA-256 for LibriTTS subset {subset!r} (known: {', '.join(sorted(KNOWN_SHA256))}): "
        f"give its checksum explicitly (e.g. params data.libritts.checksums.{subset}: <sha256>)"
    )


def resolve_checksums(
    subsets: Iterable[str], checksums: Mapping[str, object] | None = None
) -> dict[str, tuple[str, int | None]]:
    """subset -> (sha256, size in bytes or None), from `checksums` or the known list.

    `checksums` maps a subset to a SHA-256 string or to {"sha256": ..., "size": ...}; it
    overrides the known values (a mirror serving other files). All subsets are checked
    before anything is downloaded: a subset with no checksum raises MissingChecksumError.
    """
    resolved, missing = {}, []
    for subset in subsets:
        try:
            resolved[subset] = _resolve_checksum(subset, checksums)
        except MissingChecksumError as e:
            missing.append(str(e))
    if missing:
        raise MissingChecksumError("; ".join(missing))
    return resolved


def default_cache_dir() -> Path:
    """Where downloaded LibriTTS archives live unless told otherwise: a per-user cache outside
    any repository (``$XDG_CACHE_HOME/voicegender/libritts``, else ``~/.cache/voicegender/libritts``),
    so that every clone, experiment and DVC temporary copy on the machine shares one download."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "voicegender" / "libritts"


@contextlib.contextmanager
def _locked(directory: Path):
    """An exclusive lock on ``directory`` (no lock file left behind): two runs sharing a cache
    folder (e.g. queued experiments) download an archive once, not twice into one .part file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def fetch_libritts(
    base_url: str,
    subsets: Iterable[str],
    dest_dir: Path,
    checksums: Mapping[str, object] | None = None,
    **download_kwargs,
) -> dict[str, Path]:
    """Download `{base_url}/{subset}.tar.gz` for each subset into `dest_dir`, verified.

    Returns subset -> archive path. `download_kwargs` go to `download_file` (retries,
    backoff_s, timeout_s, progress). Free space for all archives still missing is
    checked once before the first download starts. An archive already in `dest_dir` is
    verified (SHA-256) and kept: nothing is fetched for it. Concurrent calls on one `dest_dir`
    wait for each other (a file lock), so an archive is downloaded once.
    """
    subsets = list(dict.fromkeys(subsets))
    wanted = resolve_checksums(subsets, checksums)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    need = 0
    for subset, (_, size) in wanted.items():
        dest = dest_dir / f"{subset}.tar.gz"
        if size is not None and not dest.exists():
            part = dest.with_suffix(dest.suffix + ".part")
            need += size - (part.stat().st_size if part.exists() else 0)
    check_disk_space(dest_dir, need, f"LibriTTS {', '.join(subsets)}")
    out = {}
    with _locked(dest_dir):
        for subset, (sha, size) in wanted.items():
            url = f"{base_url.rstrip('/')}/{subset}.tar.gz"
            out[subset] = download_file(url, dest_dir / f"{subset}.tar.gz", sha, expected_size=size, **download_kwargs)
    return out


def locate_libritts(
    local_path: Path,
    subsets: Iterable[str],
    *,
    checksums: Mapping[str, object] | None = None,
    verify: bool = False,
) -> dict[str, Path]:
    """Find LibriTTS subsets a user already has; nothing is downloaded or copied.

    For each subset, in this order: `<local_path>/<subset>.tar.gz` (an archive),
    `<local_path>/LibriTTS/<subset>/` or `<local_path>/<subset>/` (an extracted copy), or
    `local_path` itself if it is named `<subset>`. Returns subset -> archive file or subset
    directory (both are valid sources for `libritts.scan_source` / `libritts.iter_audio`).

    Archives are size-checked against the known (or given) size, which catches a truncated
    copy for free; the SHA-256 is only computed with `verify=True`, because hashing 9 GB
    takes ~30 s on every run (the download path always verifies). An archive whose checksum
    is unknown is accepted without verification unless one is given; a truncated or corrupt
    archive still fails clearly when it is read.
    """
    local_path = Path(local_path).expanduser()
    if not local_path.exists():
        raise MissingInputError(f"LibriTTS local path {local_path} does not exist")
    out, missing = {}, []
    for subset in dict.fromkeys(subsets):
        archive = local_path / f"{subset}.tar.gz"
        dirs = [local_path / "LibriTTS" / subset, local_path / subset]
        if local_path.name == subset:
            dirs.append(local_path)
        if archive.is_file():
            sha, size = _known_or_given(subset, checksums)
            actual = archive.stat().st_size
            if size is not None and actual != size:
                raise ChecksumError(
                    f"{archive} is {actual} bytes but LibriTTS {subset} is {size} bytes: "
                    f"the copy is truncated or another file"
                )
            if verify:
                if sha is None:
                    raise MissingChecksumError(f"cannot verify {archive}: no known SHA-256 for {subset}; give one")
                got = sha256_file(archive).hexdigest()
                if got != sha:
                    raise ChecksumError(f"SHA-256 mismatch for {archive}: expected {sha}, got {got}")
            out[subset] = archive
            continue
        found = next((d for d in dirs if d.is_dir()), None)
        if found is None:
            missing.append(f"{subset} (looked for {archive}, " + ", ".join(f"{d}/" for d in dirs) + ")")
        else:
            out[subset] = found
    if missing:
        raise MissingInputError("LibriTTS subsets not found: " + "; ".join(missing))
    return out


def _known_or_given(subset: str, checksums) -> tuple[str | None, int | None]:
    try:
        return _resolve_checksum(subset, checksums)
    except MissingChecksumError:
        return None, None
