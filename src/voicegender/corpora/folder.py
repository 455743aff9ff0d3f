"""The folder corpus: a user's own recordings, listed in a `path,speaker,sex[,split]` CSV manifest,
checked in full before any work, fingerprinted, and required to lie where DVC watches them.

Knows nothing of DVC (it only names the setting that tells DVC where to look).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Iterable

import soundfile as sf

from voicegender.corpora.labels import SPLITS, normalize_sex
from voicegender.errors import CorpusError


class ManifestError(CorpusError):
    """A folder-corpus manifest has errors (all offending rows are listed)."""


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
    base = path.parent.resolve()
    col, lines = _read_table(path)
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
            duration_s, problem = _check_file(raw_path, file, suffixes, check_audio)
            if problem:
                problems.append(problem)
            if file in seen_paths:
                problems.append(f"{raw_path}: listed twice (also line {seen_paths[file]})")
            seen_paths.setdefault(file, lineno)
        if speaker and sex:
            sexes_of.setdefault(speaker, {}).setdefault(sex, []).append(lineno)
        if problems:
            errors.append(f"line {lineno}: " + "; ".join(problems))
            continue
        source, member, uid = _locate(base, file)
        if uid in seen_ids:
            errors.append(f"line {lineno}: {raw_path}: same id {uid!r} as line {seen_ids[uid]}")
            continue
        seen_ids[uid] = lineno
        rows.append(
            {
                "id": uid,
                "speaker": speaker,
                "sex": sex,
                "split": split,
                "path": str(file),
                "source": str(source),
                "member": member,
                "duration_s": duration_s,
            }
        )
    errors += _two_sexes(sexes_of)
    if errors:
        raise ManifestError(f"manifest {path} has {len(errors)} problem(s):{_listing_all(errors)}")
    if not rows:
        raise ManifestError(f"manifest {path} lists no recordings")
    return rows


def _read_table(path: Path) -> tuple[dict[str, int], list[list[str]]]:
    """The manifest's column indices (path, speaker, sex and split if present) and its data lines."""
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ManifestError(f"manifest {path} is empty: expected a header path,speaker,sex[,split]") from None
        lines = list(reader)
    missing_cols = [c for c in ("path", "speaker", "sex") if c not in header]
    if missing_cols:
        raise ManifestError(
            f"manifest {path} lacks column(s) {', '.join(missing_cols)}: "
            f"header is {','.join(header)!r}, expected path,speaker,sex[,split]"
        )
    return {c: header.index(c) for c in ("path", "speaker", "sex", "split") if c in header}, lines


def _check_file(raw_path: str, file: Path, suffixes, check_audio: bool) -> tuple[float | None, str | None]:
    """(duration in s from the header, with ``check_audio``; else None) and what is wrong with the
    listed ``file`` (None: nothing): its extension, existence, and with ``check_audio`` its header."""
    if file.suffix.lower() not in suffixes:
        return None, f"{raw_path}: not an audio file extension (wav, flac, ...)"
    if not file.is_file():
        return None, f"{raw_path}: file not found ({file})"
    if not check_audio:
        return None, None
    try:
        info = sf.info(str(file))
    except (RuntimeError, ValueError, OSError) as e:
        return None, f"{raw_path}: not readable audio ({e})"
    return info.frames / info.samplerate, (f"{raw_path}: no audio samples" if info.frames == 0 else None)


def _locate(base: Path, file: Path) -> tuple[Path, str, str]:
    """(source, member, id) of ``file``: the manifest folder ``base`` and the path under it, or for
    a file outside it its own folder and name; the id is the member (or the whole path for a file
    outside ``base``) without its extension."""
    if base in file.parents:
        source, member = base, file.relative_to(base).as_posix()
    else:
        source, member = file.parent, file.name
    return source, member, (member if source == base else file.as_posix()).rsplit(".", 1)[0]


def _two_sexes(sexes_of: dict[str, dict[str, list[int]]]) -> list[str]:
    """A problem line per speaker listed with more than one sex (``sexes_of``: speaker -> sex -> lines)."""
    return [
        f"speaker {speaker} is given two sexes: "
        + ", ".join(f"{s} on line(s) {', '.join(map(str, ls))}" for s, ls in sorted(by_sex.items()))
        for speaker, by_sex in sorted(sexes_of.items())
        if len(by_sex) > 1
    ]


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
        name = (
            p.resolve().relative_to(root_p).as_posix()
            if root_p is not None and root_p in p.resolve().parents
            else p.as_posix()
        )
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


def check_watched(recordings: str, files: list[Path]) -> None:
    """DVC sees changes only inside data.folder.recordings: every file must lie there."""
    root = Path(recordings).resolve()
    outside = [str(f) for f in files if not Path(f).resolve().is_relative_to(root)]
    if outside:
        raise SystemExit(
            f"data.folder.recordings is {recordings!r}, but {len(outside)} file(s) lie outside it "
            f"(e.g. {outside[0]}): set it to the folder holding your manifest and recordings, "
            "so that DVC reruns the pipeline when they change"
        )
