"""LibriTTS-layout corpora, read without extracting them: scanning archives or directories for
their utterances, the speakers' sex from SPEAKERS.txt / speakers.tsv, and reading members' bytes.

A *source* is where audio lives: a LibriTTS-layout `.tar.gz` archive, or a directory.
A *member* is a file inside a source (the archive member name, or a path relative to the
directory, '/'-separated). `iter_audio(source, members)` reads either kind (a folder corpus's
recordings too: their sources are directories), so a labels table of (id, speaker, sex, split,
source, member) rows is all later stages need.

Knows nothing of DVC.
"""

from __future__ import annotations

import gzip
import logging
import os
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from voicegender.audio.decode import HEADER_BYTES, wav_duration_s
from voicegender.corpora.labels import normalize_sex
from voicegender.errors import CorpusError, MissingInputError

log = logging.getLogger(__name__)

SPEAKERS_TXT = "SPEAKERS.txt"
SPEAKERS_TSV = "speakers.tsv"
# In a LibriTTS name <spk>_<chap>_<para>_<sent>, ids are '_'-separated: no '_' inside parts.
_PART = r"[A-Za-z0-9-]+"
_UTT_RE = re.compile(rf"^({_PART})_({_PART})_({_PART})_({_PART})$")
_READ_BYTES = 1 << 20  # archive read size; larger than tarfile's 10 KiB default for speed
_MAX_LISTED = 10  # offending items quoted in an error message (all are counted)


class ArchiveError(CorpusError):
    """An archive is truncated, corrupt, unsafe or not in LibriTTS layout."""


class UnsafeArchiveError(ArchiveError):
    """An archive member's path (or link target) leaves the archive root."""


class LayoutError(CorpusError):
    """A source is not in LibriTTS layout."""


def _listing(items: list[str]) -> str:
    shown = "\n  ".join(items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n  {shown}{more}"


# --------------------------------------------------------------------------- metadata


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
    raise LayoutError(
        f"{where} has neither LibriTTS/{SPEAKERS_TXT} nor LibriTTS/{SPEAKERS_TSV}: the speakers' sex is unknown"
    )


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
        return (
            p.startswith("/") or re.match(r"^[A-Za-z]:", p) is not None or p == ".." or p.startswith("../") or "\\" in p
        )

    if escapes(name.replace("\\", "/")) or escapes(norm):
        raise UnsafeArchiveError(
            f"archive {archive} has a member whose path leaves the archive root: {name!r}; refusing to read it"
        )
    if m.issym() or m.islnk():
        base = posixpath.dirname(norm) if m.issym() else ""
        target = posixpath.normpath(posixpath.join(base, m.linkname))
        if m.linkname.startswith("/") or escapes(target):
            kind = "symlink" if m.issym() else "hard link"
            raise UnsafeArchiveError(
                f"archive {archive} has a {kind} {name!r} pointing out of "
                f"the archive root ({m.linkname!r}); refusing to read it"
            )
    elif not (m.isfile() or m.isdir()):
        raise UnsafeArchiveError(
            f"archive {archive} has a special member {name!r} (device or fifo); refusing to read it"
        )
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
    return ArchiveError(f"archive {path} is truncated or corrupt ({type(e).__name__}: {e}): re-download it")


# Errors tarfile/gzip/zlib raise on a damaged stream (EOFError on truncation, etc.).
_STREAM_ERRORS = (
    EOFError,
    tarfile.ReadError,
    tarfile.CompressionError,
    zlib.error,
    gzip.BadGzipFile,
    tarfile.StreamError,
)
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
        head = _read(path, tf, m, HEADER_BYTES)
        u["bytes"] = m.size
        u["duration_s"] = wav_duration_s(head, m.size)
        utts.append(u)
    _check_layout(
        path, "archive", utts, bad, "LibriTTS/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav"
    )
    return utts, metadata


def _check_layout(path: Path, kind: str, utts: list[dict], bad: list[str], expected: str) -> None:
    if bad:
        raise LayoutError(
            f"{kind} {path} is not in LibriTTS layout: {len(bad)} wav file(s) are not at {expected}:{_listing(bad)}"
        )
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
                u["bytes"], u["duration_s"] = size, wav_duration_s(f.read(HEADER_BYTES), size)
            utts.append(u)
    _check_layout(
        root, "directory", utts, bad, "[LibriTTS/][<subset>/]<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav"
    )
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
        log.warning(
            "%s: %d utterances of %d speakers without a known sex in %s: %s",
            source,
            len(unknown),
            len(spk),
            used,
            ", ".join(spk[:_MAX_LISTED]),
        )
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
