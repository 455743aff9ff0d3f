"""voicegender.corpora.folder: a user's recordings listed in a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SHARED_DATA, needs_shared
from libritts_fixture import make_wav
from voicegender.audio.decode import decode_audio
from voicegender.corpora.folder import ManifestError, fingerprint_files, read_folder_manifest
from voicegender.corpora.libritts import iter_audio

SAMPLE_MANIFEST = SHARED_DATA / "librispeech-clean100-sample" / "manifest.csv"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_manifest_normalises_and_resolves(tmp_path):
    _write(tmp_path / "rec" / "a.wav", make_wav("F", "1", 0, channels=2, sample_rate=44_100))
    _write(tmp_path / "rec" / "b.flac", make_wav("M", "2", 0, fmt="FLAC", sample_rate=16_000))
    _write(tmp_path / "rec" / "c.wav", make_wav("F", "1", 1))
    outside = _write(tmp_path / "elsewhere" / "d.wav", make_wav("M", "3", 0))
    m = tmp_path / "rec" / "manifest.csv"
    m.write_text(
        "path,speaker,sex,split\n"
        "a.wav,alice,female,train\n"
        "b.flac,bob,M,\n"
        "c.wav, alice ,f,TEST\n"
        f"{outside},carl,Male,val\n"
    )
    rows = read_folder_manifest(m)
    assert [(r["speaker"], r["sex"], r["split"]) for r in rows] == [
        ("alice", "F", "train"),
        ("bob", "M", None),
        ("alice", "F", "test"),
        ("carl", "M", "val"),
    ]
    assert rows[0]["source"] == str(m.parent.resolve()) and rows[0]["member"] == "a.wav"
    assert rows[0]["id"] == "a" and rows[1]["id"] == "b"
    assert rows[3]["source"] == str(outside.parent) and rows[3]["member"] == "d.wav"
    # every row's audio reads back through the common source/member interface
    for r in rows:
        ((member, data),) = iter_audio(r["source"], [r["member"]])
        x, sr = decode_audio(data, name=member)
        assert x.ndim == 1 and sr in (44_100, 16_000, 24_000)


def test_folder_manifest_lists_every_problem_before_any_work(tmp_path):
    _write(tmp_path / "ok.wav", make_wav("F", "1", 0))
    _write(tmp_path / "ok2.wav", make_wav("F", "1", 1))
    _write(tmp_path / "empty.wav", b"")
    (tmp_path / "notes.txt").write_text("hi")
    m = tmp_path / "m.csv"
    m.write_text(
        "path,speaker,sex,split\n"
        "ok.wav,s1,F,train\n"  # fine
        "missing.wav,s2,M,train\n"  # line 3: missing file
        "ok2.wav,s1,X,train\n"  # line 4: unknown sex
        "ok.wav,s3,M,dev\n"  # line 5: bad split + duplicate path
        "empty.wav,s4,F,\n"  # line 6: unreadable audio
        "notes.txt,s5,F,\n"  # line 7: not audio
        "ok2.wav,s1,male,\n"  # line 8: s1 given two sexes (+ dup path)
        ",s6,F,\n"
    )  # line 9: no path
    with pytest.raises(ManifestError) as e:
        read_folder_manifest(m)
    msg = str(e.value)
    for needle in (
        "line 3: missing.wav: file not found",
        "line 4: unknown sex 'X'",
        "line 5: unknown split 'dev'",
        "ok.wav: listed twice (also line 2)",
        "line 6: empty.wav: not readable audio",
        "line 7: notes.txt: not an audio file",
        "line 9: no path",
        "speaker s1 is given two sexes: F on line(s) 2, M on line(s) 8",
    ):
        assert needle in msg, (needle, msg)
    assert "line 2:" not in msg


def test_folder_manifest_missing_columns_and_empty(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("file,speaker\nx.wav,1\n")
    with pytest.raises(ManifestError, match="lacks column.s. path, sex"):
        read_folder_manifest(m)
    m.write_text("path,speaker,sex\n")
    with pytest.raises(ManifestError, match="lists no recordings"):
        read_folder_manifest(m)
    with pytest.raises(ManifestError, match="does not exist"):
        read_folder_manifest(tmp_path / "nope.csv")


@needs_shared(SAMPLE_MANIFEST)
def test_real_sample_manifest_parses_in_place():
    rows = read_folder_manifest(SAMPLE_MANIFEST)
    assert len(rows) == 251
    sexes = {r["speaker"]: r["sex"] for r in rows}
    assert sum(s == "F" for s in sexes.values()) == 125 and len(sexes) == 251
    assert all(r["source"] == str(SAMPLE_MANIFEST.parent.resolve()) for r in rows)
    ((member, data),) = iter_audio(rows[0]["source"], [rows[0]["member"]])
    x, sr = decode_audio(data, name=member)
    assert sr == 16_000 and x.size > sr


def test_fingerprint_changes_with_content_not_order(tmp_path):
    a = _write(tmp_path / "d" / "a.wav", b"aaaa")
    b = _write(tmp_path / "d" / "b.wav", b"bbbb")
    fp = fingerprint_files([a, b], root=tmp_path / "d")
    assert fp == fingerprint_files([b, a], root=tmp_path / "d")
    moved = tmp_path / "moved"
    (tmp_path / "d").rename(moved)
    assert fingerprint_files([moved / "a.wav", moved / "b.wav"], root=moved) == fp
    (moved / "b.wav").write_bytes(b"bbbc")
    assert fingerprint_files([moved / "a.wav", moved / "b.wav"], root=moved) != fp
