"""Reading speech corpora without extracting them: LibriTTS-layout archives or directories,
and a user's own recordings listed in a CSV manifest ("folder" corpus).

A *source* is where audio lives: a LibriTTS-layout `.tar.gz` archive, or a directory.
A *member* is a file inside a source (the archive member name, or a path relative to the
directory, '/'-separated). `iter_audio(source, members)` reads either kind, so a labels table
of (id, speaker, sex, split, source, member) rows is all later stages need.

Knows nothing of DVC.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import os
import posixpath
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import miniaudio
import numpy as np
import soundfile as sf

from voicegender.errors import MissingInputError, UserError

log = logging.getLogger(__name__)

SEXES = ("F", "M")
SPLITS = ("train", "val", "test")
SPEAKERS_TXT = "SPEAKERS.txt"
SPEAKERS_TSV = "speakers.tsv"
# WAV/FLAC headers fit well within this; enough to read a wav's duration during a scan.
_HEADER_BYTES = 4096
# In a LibriTTS name <spk>_<chap>_<para>_<sent>, ids are '_'-separated: no '_' inside parts.
_PART = r"[A-Za-z0-9-]+"
_UTT_RE = re.compile(rf"^({_PART})_({_PART})_({_PART})_({_PART})$")
_READ_BYTES = 1 << 20  # archive read size; larger than tarfile's 10 KiB default for speed
_MAX_LISTED = 10  # offending items quoted in an error message (all are counted)


class CorpusError(UserError):
    """A corpus cannot be read as asked; the message says which file and why."""


class ArchiveError(CorpusError):
    """An archive is truncated, corrupt, unsafe or not in LibriTTS layout."""


class UnsafeArchiveError(ArchiveError):
    """An archive member's path (or link target) leaves the archive root."""


class LayoutError(CorpusError):
    """A source is not in LibriTTS layout."""


class ManifestError(CorpusError):
    """A folder-corpus manifest has errors (all offending rows are listed)."""


class AudioError(CorpusError):
    """Audio data is empty, truncated or not audio: report it and skip the utterance."""


def _listing(items: list[str]) -> str:
    shown = "\n  ".join(items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n  {shown}{more}"


# --------------------------------------------------------------------------- metadata

def normalize_sex(value: str) -> str | None:
    """'F', 'f', 'female', ' Male ' -> 'F' / 'M'; anything else -> None."""
    v = value.strip().lower()
    return {"f": "F", "female": "F", "m": "M", "male": "M"}.get(v)


def _add_speaker(out: dict[str, str], spk: str, sex: str, where: str) -> None:
    if out.get(spk, sex) != sex:
        raise CorpusError(f"{where}: speaker {spk} is listed as both {out[spk]} and {sex}")
    out[spk] = sex


def parse_speakers_txt(text: str, *, where: str = SPEAKERS_TXT) -> dict[str, str]:
    """LibriTTS SPEAKERS.txt -> {speaker id: "F"/"M"}.

    Lines are `ID | SEX | SUBSET | MINUTES | NAME` padded with spaces; `;` starts a comment;
    blank lines occur; NAME may itself contain '|' (speaker 60 is `|CBW|Simon`), hence the
    max-split. Rows with an unknown sex are skipped with a warning: their utterances then
    show up as `unknown_sex` in a scan, never silently labelled.
    """
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) < 2 or not fields[0]:
            log.warning("%s line %d: not 'ID | SEX | ...': %r", where, lineno, line)
            continue
        _add_row(out, fields[0], fields[1], where, lineno)
    return out


def parse_speakers_tsv(text: str, *, where: str = SPEAKERS_TSV) -> dict[str, str]:
    """LibriTTS speakers.tsv (READER GENDER SUBSET NAME, tab-separated) -> {id: "F"/"M"}.

    Its header is malformed and some rows have no NAME: only the first two fields are used,
    and lines whose first field is not an id (the header) are skipped.
    """
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 2 or not re.fullmatch(_PART, fields[0]) or fields[0].upper() == "READER":
            continue
        _add_row(out, fields[0], fields[1], where, lineno)
    return out


def _add_row(out: dict[str, str], spk: str, sex_text: str, where: str, lineno: int) -> None:
    """Record a metadata row's speaker, or warn (and skip it) when its sex is unknown."""
    sex = normalize_sex(sex_text)
    if sex is None:
        log.warning("%s line %d: speaker %s has unknown sex %r", where, lineno, spk, sex_text)
        return
    _add_speaker(out, spk, sex, where)


def speaker_sexes(metadata: dict[str, str], where: str) -> tuple[dict[str, str], str]:
    """Sexes from a source's metadata texts ({file name: text}): SPEAKERS.txt, else
    speakers.tsv. Returns (sexes, file used). No metadata at all is an error."""
    if SPEAKERS_TXT in metadata:
        return parse_speakers_txt(metadata[SPEAKERS_TXT], where=f"{where}: {SPEAKERS_TXT}"), SPEAKERS_TXT
    if SPEAKERS_TSV in metadata:
        log.warning("%s has no %s: using %s", where, SPEAKERS_TXT, SPEAKERS_TSV)
        return parse_speakers_tsv(metadata[SPEAKERS_TSV], where=f"{where}: {SPEAKERS_TSV}"), SPEAKERS_TSV
    raise LayoutError(f"{where} has neither LibriTTS/{SPEAKERS_TXT} nor LibriTTS/{SPEAKERS_TSV}: "
                      f"the speakers' sex is unknown")


# --------------------------------------------------------------------------- wav headers

@dataclass(frozen=True)
class WavHeader:
    sample_rate_hz: int
    channels: int
    byte_rate: int  # bytes of audio per second
    data_offset: int  # where sample data starts
    data_bytes: int  # as declared by the header


def parse_wav_header(head: bytes) -> WavHeader | None:
    """The fmt/data chunks of a RIFF WAVE header, or None if `head` is not one."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt " and body + 16 <= len(head):
            _, channels, rate, byte_rate, _, _ = struct.unpack("<HHIIHH", head[body:body + 16])
            fmt = (rate, channels, byte_rate)
        elif cid == b"data":
            if fmt is None:
                return None
            return WavHeader(fmt[0], fmt[1], fmt[2], body, size)
        pos = body + size + (size & 1)  # chunks are word-aligned
    return None


def _wav_duration_s(head: bytes, total_bytes: int) -> float | None:
    h = parse_wav_header(head)
    if h is None or h.byte_rate <= 0:
        return None
    return min(h.data_bytes, max(total_bytes - h.data_offset, 0)) / h.byte_rate


# --------------------------------------------------------------------------- decoding

def _flac_streaminfo(data: bytes) -> tuple[int, int, int, int] | None:
    """(sample rate Hz, channels, bits per sample, total frames; 0 = unknown) from a FLAC
    stream's mandatory first metadata block, or None if `data` does not start like one."""
    if len(data) < 42 or data[:4] != b"fLaC" or data[4] & 0x7F != 0:  # block type 0: STREAMINFO
        return None
    bits = int.from_bytes(data[18:26], "big")  # rate:20 channels-1:3 bits-1:5 total:36
    return bits >> 44, ((bits >> 41) & 7) + 1, ((bits >> 36) & 31) + 1, bits & ((1 << 36) - 1)


def _decode_flac16(data: bytes) -> tuple[np.ndarray, int] | None:
    """decode_audio for a 16-bit FLAC of known length, decoded by dr_flac (miniaudio): the same
    integer samples as libsndfile, ~1.7x faster (libsndfile copies them out one at a time).
    None, for the general path to handle, if the stream is not 16-bit or dr_flac did not return
    exactly the declared number of frames (e.g. a cut or corrupt file)."""
    info = _flac_streaminfo(data)
    if info is None or info[2] != 16 or info[3] == 0:
        return None
    rate, channels, _, frames = info
    try:
        dec = miniaudio.flac_read_s16(data)
    except miniaudio.DecodeError:
        return None
    if dec.nchannels != channels or dec.sample_rate != rate or dec.num_frames != frames:
        return None
    x = np.multiply(np.frombuffer(dec.samples, dtype=np.int16), np.float32(1.0 / 32768.0), dtype=np.float32)
    if channels == 1:
        return x, int(rate)
    return np.ascontiguousarray(x.reshape(-1, channels).mean(axis=1), dtype=np.float32), int(rate)


def decode_audio(data: bytes, *, name: str = "audio") -> tuple[np.ndarray, int]:
    """WAV/FLAC (any format libsndfile reads) bytes -> (float32 mono samples, sample rate Hz).

    Stereo is mixed down by averaging channels. Raises AudioError for empty, truncated or
    non-audio data (so callers can report and skip); `name` goes into the message.
    """
    if not data:
        raise AudioError(f"{name}: empty audio data (0 bytes)")
    # libsndfile silently shortens a WAV whose data chunk runs past the end of the file:
    # check the declared length ourselves (0 / 0xFFFFFFFF mark streamed, unsized wavs).
    h = parse_wav_header(data[:_HEADER_BYTES])
    if h is not None and 0 < h.data_bytes < 0xFFFFFFFF and h.data_offset + h.data_bytes > len(data):
        raise AudioError(f"{name}: truncated WAV ({len(data) - h.data_offset} of "
                         f"{h.data_bytes} data bytes present)")
    # Fast path, the common case (LibriTTS): a canonical 16-bit PCM WAV (fmt chunk first, sized
    # data chunk, present in full per the check above) is read with np.frombuffer, no libsndfile.
    # Same samples as libsndfile's int16 -> float32 (x / 32768, exact), ~3x faster. 16-bit FLAC
    # goes through dr_flac (_decode_flac16); anything else (float/24-bit/extensible wav, other
    # FLAC, unsized or empty data chunk, files either fast path declines) through soundfile.
    if h is not None and 0 < h.data_bytes < 0xFFFFFFFF and data[12:16] == b"fmt ":
        tag, channels, rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", data[20:36])
        if tag == 1 and bits == 16 and channels >= 1 and rate > 0 and block_align == 2 * channels \
                and byte_rate == rate * block_align and h.data_bytes >= block_align:
            n = h.data_bytes // block_align * channels
            pcm = np.frombuffer(data, dtype="<i2", count=n, offset=h.data_offset)
            x = np.multiply(pcm, np.float32(1.0 / 32768.0), dtype=np.float32)
            if channels == 1:
                return x, int(rate)  # integer samples: always finite
            return np.ascontiguousarray(x.reshape(-1, channels).mean(axis=1), dtype=np.float32), int(rate)
    flac = _decode_flac16(data)
    if flac is not None:
        return flac
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, frames = f.samplerate, f.frames
            x = f.read(dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as e:
        # libsndfile's full message names the BytesIO's address: keep only the reason (deterministic)
        raise AudioError(f"{name}: not readable audio ({getattr(e, 'error_string', None) or e})") from None
    if x.shape[0] == 0:
        raise AudioError(f"{name}: no audio samples")
    if 0 < frames and x.shape[0] < frames:  # e.g. a cut FLAC: fewer frames than announced
        raise AudioError(f"{name}: truncated audio ({x.shape[0]} of {frames} frames)")
    mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


# --------------------------------------------------------------------------- scanning

@dataclass
class Scan:
    """What a LibriTTS-layout source holds.

    `utterances`: dicts {id, speaker, chapter, subset, member, bytes, duration_s, sex}, for
    speakers whose sex the metadata gives; `unknown_sex`: the same (sex None) for speakers
    with audio but no F/M in the metadata. Speakers are counted from the directories; the
    metadata only supplies sexes (`speakers`, from `metadata_file`).
    """

    source: Path
    utterances: list[dict]
    unknown_sex: list[dict]
    speakers: dict[str, str]
    metadata_file: str
    subsets: list[str] = field(default_factory=list)


def _check_member(archive: Path, m: tarfile.TarInfo) -> str:
    """The member's normalised path; raise UnsafeArchiveError if it leaves the root."""
    name = m.name
    norm = posixpath.normpath(name)

    def escapes(p: str) -> bool:
        return p.startswith("/") or re.match(r"^[A-Za-z]:", p) is not None or \
            p == ".." or p.startswith("../") or "\\" in p

    if escapes(name.replace("\\", "/")) or escapes(norm):
        raise UnsafeArchiveError(f"archive {archive} has a member whose path leaves the archive "
                                 f"root: {name!r}; refusing to read it")
    if m.issym() or m.islnk():
        base = posixpath.dirname(norm) if m.issym() else ""
        target = posixpath.normpath(posixpath.join(base, m.linkname))
        if m.linkname.startswith("/") or escapes(target):
            kind = "symlink" if m.issym() else "hard link"
            raise UnsafeArchiveError(f"archive {archive} has a {kind} {name!r} pointing out of "
                                     f"the archive root ({m.linkname!r}); refusing to read it")
    elif not (m.isfile() or m.isdir()):
        raise UnsafeArchiveError(f"archive {archive} has a special member {name!r} "
                                 f"(device or fifo); refusing to read it")
    return norm


def _utterance(parts: list[str], member: str, subset: str) -> dict | None:
    """parts = [..., spk, chap, file.wav] -> utterance dict, or None if not LibriTTS-shaped."""
    spk, chap, fname = parts[-3], parts[-2], parts[-1]
    uid = fname[:-4]
    m = _UTT_RE.match(uid)
    if not m or m.group(1) != spk or m.group(2) != chap:
        return None
    return {"id": uid, "speaker": spk, "chapter": chap, "subset": subset, "member": member}


def _corrupt(path: Path, e: BaseException) -> ArchiveError:
    return ArchiveError(f"archive {path} is truncated or corrupt ({type(e).__name__}: {e}): "
                        f"re-download it")


# Errors tarfile/gzip/zlib raise on a damaged stream (EOFError on truncation, etc.).
_STREAM_ERRORS = (EOFError, tarfile.ReadError, tarfile.CompressionError, zlib.error,
                  gzip.BadGzipFile, tarfile.StreamError)
try:  # python-isal: Intel's ISA-L inflate, the same bytes (and CRC check) as zlib's, faster
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib

    _STREAM_ERRORS += (_isal_zlib.error,)
except ImportError:  # optional: gzip's zlib does the same work, slower
    _igzip = None


def _gunzip(raw) -> gzip.GzipFile:
    """A gzip reader over the binary file ``raw``: python-isal's when installed (a LibriTTS
    archive's gunzip pass ~2-3x faster than zlib's, see README *Speed*), else the standard one."""
    if _igzip is not None:
        return _igzip.GzipFile(fileobj=raw, mode="rb")
    return gzip.GzipFile(fileobj=raw, mode="rb")


def _iter_tar(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
    """Stream (tar, member, normalised name) over a tar(.gz), one sequential pass.

    tarfile alone ends quietly when a truncated archive stops at a header boundary, and its
    stream mode ignores the gzip CRC. So a .gz is decompressed by a GzipFile (``_gunzip``) and, once the
    tar's members are exhausted, drained to its end: that checks the gzip length and CRC of
    the whole file, so truncation or corruption anywhere raises (at little cost: only the
    tar's end padding is left to read).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"archive {path} does not exist")
    try:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = _gunzip(raw) if is_gzip else raw
            with tarfile.open(fileobj=stream, mode="r|" if is_gzip else "r|*", bufsize=_READ_BYTES) as tf:
                for i, m in enumerate(tf):
                    yield tf, m, _check_member(path, m)
                    if i % 1000 == 999:
                        tf.members = []  # tarfile keeps every TarInfo: bound memory on 100k+ members
            if is_gzip:
                while stream.read(_READ_BYTES):
                    pass
    except _STREAM_ERRORS as e:
        raise _corrupt(path, e) from None


def _read(path: Path, tf: tarfile.TarFile, m: tarfile.TarInfo, n: int = -1) -> bytes:
    try:
        return tf.extractfile(m).read(n)
    except _STREAM_ERRORS as e:
        raise _corrupt(path, e) from None


def scan_archive(path: Path) -> tuple[list[dict], dict[str, str]]:
    """List a LibriTTS archive's utterances from its directory structure (not metadata).

    Returns (utterances, metadata) where each utterance is {id, speaker, chapter, subset,
    member, bytes, duration_s} and metadata maps root file names (SPEAKERS.txt, speakers.tsv)
    to their text. Raises ArchiveError for a truncated/corrupt/unsafe archive and LayoutError
    if it is not `LibriTTS/<subset>/<speaker>/<chapter>/<spk>_<chap>_<para>_<sent>.wav`.
    """
    path = Path(path)
    utts, bad, metadata = [], [], {}
    for tf, m, norm in _iter_tar(path):
        parts = norm.split("/")
        if m.isfile() and len(parts) == 2 and parts[0] == "LibriTTS" and parts[1] in (SPEAKERS_TXT, SPEAKERS_TSV):
            metadata[parts[1]] = _read(path, tf, m).decode("utf-8", errors="replace")
        if not norm.lower().endswith(".wav"):
            continue
        u = _utterance(parts, m.name, parts[1]) if len(parts) == 5 and parts[0] == "LibriTTS" else None
        if u is None or not m.isfile():
            bad.append(m.name)
            continue
        head = _read(path, tf, m, _HEADER_BYTES)
        u["bytes"] = m.size
        u["duration_s"] = _wav_duration_s(head, m.size)
        utts.append(u)
    _check_layout(path, "archive", utts, bad,
                  "LibriTTS/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav")
    return utts, metadata


def _check_layout(path: Path, kind: str, utts: list[dict], bad: list[str], expected: str) -> None:
    if bad:
        raise LayoutError(f"{kind} {path} is not in LibriTTS layout: {len(bad)} wav file(s) are not "
                          f"at {expected}:{_listing(bad)}")
    if not utts:
        raise LayoutError(f"{kind} {path} is not in LibriTTS layout: no wav files at {expected}")
    seen, dups = set(), []
    for u in utts:
        if u["id"] in seen:
            dups.append(u["member"])
        seen.add(u["id"])
    if dups:
        raise LayoutError(f"{kind} {path} has duplicate utterance ids:{_listing(dups)}")


def scan_directory(root: Path) -> tuple[list[dict], dict[str, str]]:
    """Same as scan_archive for an extracted copy. `root` may be a subset directory
    (`<spk>/<chap>/*.wav`), a LibriTTS root (`<subset>/...`) or its parent (`LibriTTS/<subset>/...`).
    Members are paths relative to `root`. Metadata is looked for in `root`, `root/LibriTTS`
    and `root/..` (the LibriTTS root of a subset directory)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"directory {root} does not exist")
    utts, bad = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            if not fname.lower().endswith(".wav"):
                continue
            full = Path(dirpath) / fname
            rel = full.relative_to(root).as_posix()
            parts = rel.split("/")
            if len(parts) == 3:
                subset = root.name
            elif len(parts) == 4 or (len(parts) == 5 and parts[0] == "LibriTTS"):
                subset = parts[-4]
            else:
                bad.append(rel)
                continue
            u = _utterance(parts, rel, subset)
            if u is None:
                bad.append(rel)
                continue
            size = full.stat().st_size
            with open(full, "rb") as f:
                u["bytes"], u["duration_s"] = size, _wav_duration_s(f.read(_HEADER_BYTES), size)
            utts.append(u)
    _check_layout(root, "directory", utts, bad,
                  "[LibriTTS/][<subset>/]<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav")
    metadata = {}
    for d in (root, root / "LibriTTS", root.parent):
        for name in (SPEAKERS_TXT, SPEAKERS_TSV):
            if name not in metadata and (d / name).is_file():
                metadata[name] = (d / name).read_text(encoding="utf-8", errors="replace")
        if metadata:
            break
    return utts, metadata


def scan_source(source: Path) -> Scan:
    """Scan an archive or directory and attach each utterance's sex from the metadata.

    Utterances of speakers without a known sex go to `Scan.unknown_sex` (report them;
    they are never silently labelled or dropped).
    """
    source = Path(source)
    utts, metadata = scan_directory(source) if source.is_dir() else scan_archive(source)
    sexes, used = speaker_sexes(metadata, str(source))
    known, unknown = [], []
    for u in utts:
        u["sex"] = sexes.get(u["speaker"])
        (known if u["sex"] else unknown).append(u)
    if unknown:
        spk = sorted({u["speaker"] for u in unknown})
        log.warning("%s: %d utterances of %d speakers without a known sex in %s: %s",
                    source, len(unknown), len(spk), used, ", ".join(spk[:_MAX_LISTED]))
    subsets = sorted({u["subset"] for u in utts})
    return Scan(source, known, unknown, sexes, used, subsets)


# --------------------------------------------------------------------------- reading audio

def iter_archive_audio(path: Path, members: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (member, bytes) for the wanted members of a tar(.gz), in archive order.

    One sequential pass (a .tar.gz has no random access); memory holds one member at a time.
    Wanted members missing from the archive raise ArchiveError after the pass.
    """
    wanted = set(members)
    found = set()
    if not wanted:
        return
    for tf, m, _ in _iter_tar(Path(path)):
        if m.name in wanted and m.isfile():
            found.add(m.name)
            yield m.name, _read(path, tf, m)
            if len(found) == len(wanted):
                return  # no need to decompress the rest
    missing = sorted(wanted - found)
    if missing:
        raise ArchiveError(f"archive {path} lacks {len(missing)} wanted member(s):{_listing(missing)}")


def _safe_relative(root: Path, member: str) -> Path:
    p = posixpath.normpath(member)
    if not member or p.startswith("/") or p == ".." or p.startswith("../") or re.match(r"^[A-Za-z]:", p):
        raise CorpusError(f"member {member!r} is not a path inside {root}")
    return root / p


def iter_directory_audio(root: Path, members: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (member, bytes) for files of a directory, in sorted member order.

    All members are checked to exist before the first is read (errors before work)."""
    root = Path(root)
    wanted = sorted(set(members))
    paths = {m: _safe_relative(root, m) for m in wanted}
    missing = [m for m, p in paths.items() if not p.is_file()]
    if missing:
        raise CorpusError(f"{len(missing)} file(s) missing in {root}:{_listing(missing)}")
    for m in wanted:
        yield m, paths[m].read_bytes()


def iter_audio(source: Path | str, members: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (member, bytes) from a source: a directory, or else an archive file."""
    source = Path(source)
    if source.is_dir():
        return iter_directory_audio(source, members)
    if source.is_file():
        return iter_archive_audio(source, members)
    raise MissingInputError(f"audio source {source} does not exist")


# --------------------------------------------------------------------------- folder corpus

def _audio_suffixes() -> set[str]:
    return {"." + f.lower() for f in sf.available_formats()} | {".aif", ".oga"}


def read_folder_manifest(path: Path, *, check_audio: bool = True) -> list[dict]:
    """Read a `path,speaker,sex[,split]` CSV of a user's own recordings.

    Relative paths are resolved against the manifest's folder. `sex` accepts F/M/female/male
    (any case) -> "F"/"M"; `split` (optional column, may be blank) is train/val/test or None.
    Every problem is collected and raised together as one ManifestError listing the rows
    (line numbers count the header as line 1): missing columns, blank/duplicate paths,
    missing files, unsupported extensions, unknown sex or split values, a speaker given two
    sexes, and (with `check_audio`, a header read per file) files libsndfile cannot open.

    Returns dicts {id, speaker, sex, split, path, source, member, duration_s}: `duration_s`
    from the header read (None without `check_audio`); `source`/`member` as in
    `iter_audio` (the manifest folder + relative path, or the file's folder + name for a file
    outside it); `id` is the member without extension ('/' kept), unique per manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    base = path.parent.resolve()
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ManifestError(f"manifest {path} is empty: expected a header path,speaker,sex[,split]") from None
        lines = list(reader)
    missing_cols = [c for c in ("path", "speaker", "sex") if c not in header]
    if missing_cols:
        raise ManifestError(f"manifest {path} lacks column(s) {', '.join(missing_cols)}: "
                            f"header is {','.join(header)!r}, expected path,speaker,sex[,split]")
    col = {c: header.index(c) for c in ("path", "speaker", "sex", "split") if c in header}
    suffixes = _audio_suffixes()
    errors: list[str] = []
    rows: list[dict] = []
    sexes_of: dict[str, dict[str, list[int]]] = {}
    seen_paths: dict[Path, int] = {}
    seen_ids: dict[str, int] = {}
    for lineno, fields in enumerate(lines, 2):
        if not any(x.strip() for x in fields):
            continue  # blank line
        get = lambda c: fields[col[c]].strip() if c in col and col[c] < len(fields) else ""  # noqa: E731
        raw_path, speaker, raw_sex, raw_split = get("path"), get("speaker"), get("sex"), get("split")
        problems = []
        if not speaker:
            problems.append("no speaker")
        sex = normalize_sex(raw_sex)
        if sex is None:
            problems.append(f"unknown sex {raw_sex!r} (expected F, M, female or male)")
        split = raw_split.lower() or None
        if split is not None and split not in SPLITS:
            problems.append(f"unknown split {raw_split!r} (expected train, val, test or blank)")
        file = None
        if not raw_path:
            problems.append("no path")
        else:
            file = Path(os.path.normpath(base / Path(raw_path).expanduser()))
            duration_s = None
            if file.suffix.lower() not in suffixes:
                problems.append(f"{raw_path}: not an audio file extension (wav, flac, ...)")
            elif not file.is_file():
                problems.append(f"{raw_path}: file not found ({file})")
            elif check_audio:
                try:
                    info = sf.info(str(file))
                    duration_s = info.frames / info.samplerate
                    if info.frames == 0:
                        problems.append(f"{raw_path}: no audio samples")
                except (RuntimeError, ValueError, OSError) as e:
                    problems.append(f"{raw_path}: not readable audio ({e})")
            if file in seen_paths:
                problems.append(f"{raw_path}: listed twice (also line {seen_paths[file]})")
            seen_paths.setdefault(file, lineno)
        if speaker and sex:
            sexes_of.setdefault(speaker, {}).setdefault(sex, []).append(lineno)
        if problems:
            errors.append(f"line {lineno}: " + "; ".join(problems))
            continue
        if base in file.parents:
            source, member = base, file.relative_to(base).as_posix()
        else:
            source, member = file.parent, file.name
        uid = (member if source == base else file.as_posix()).rsplit(".", 1)[0]
        if uid in seen_ids:
            errors.append(f"line {lineno}: {raw_path}: same id {uid!r} as line {seen_ids[uid]}")
            continue
        seen_ids[uid] = lineno
        rows.append({"id": uid, "speaker": speaker, "sex": sex, "split": split, "path": str(file),
                     "source": str(source), "member": member, "duration_s": duration_s})
    for speaker, by_sex in sorted(sexes_of.items()):
        if len(by_sex) > 1:
            where = ", ".join(f"{s} on line(s) {', '.join(map(str, ls))}" for s, ls in sorted(by_sex.items()))
            errors.append(f"speaker {speaker} is given two sexes: {where}")
    if errors:
        raise ManifestError(f"manifest {path} has {len(errors)} problem(s):{_listing_all(errors)}")
    if not rows:
        raise ManifestError(f"manifest {path} lists no recordings")
    return rows


def _listing_all(items: list[str]) -> str:
    return "\n  " + "\n  ".join(items)


def fingerprint_files(paths: Iterable[Path | str], *, root: Path | str | None = None) -> str:
    """SHA-256 over each file's name, size and content hash (order-independent).

    Names are recorded relative to `root` when given (so moving the whole folder does not
    change the fingerprint). Reads every byte: ~1 s per GB on a local disk.
    """
    root_p = Path(root).resolve() if root is not None else None
    entries = []
    for p in paths:
        p = Path(p)
        name = p.resolve().relative_to(root_p).as_posix() if root_p is not None and \
            root_p in p.resolve().parents else p.as_posix()
        h = hashlib.sha256()
        size = 0
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        entries.append(f"{name}\t{size}\t{h.hexdigest()}\n")
    total = hashlib.sha256()
    for e in sorted(entries):
        total.update(e.encode())
    return total.hexdigest()
