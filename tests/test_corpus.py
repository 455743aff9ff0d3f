"""corpus.py: LibriTTS-layout archives/directories, decoding, the folder manifest."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from libritts_fixture import (GHOST_SPEAKER, build_libritts_archives, make_wav,
                              write_tar_gz)
from voicegender.corpus import (
    ArchiveError, AudioError, CorpusError, LayoutError, ManifestError, UnsafeArchiveError,
    decode_audio, fingerprint_files, iter_archive_audio, iter_audio, iter_directory_audio,
    parse_speakers_tsv, parse_speakers_txt, read_folder_manifest, scan_archive, scan_directory,
    scan_source,
)

SAMPLE_MANIFEST = Path("/work/shared/data/librispeech-clean100-sample/manifest.csv")
SUBSETS = {
    "train-clean-100": {"19": ("F", 3), "26": ("M", 2), "27": (None, 2)},  # 27: no metadata row
    "test-clean": {"121": ("F", 2), "237": ("M", 1)},
}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    return build_libritts_archives(tmp_path_factory.mktemp("arch"), SUBSETS, chapters_per_speaker=2)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, archives) -> Path:
    root = tmp_path_factory.mktemp("extracted")
    for a in archives.values():
        with tarfile.open(a) as tf:
            tf.extractall(root, filter="data")
    return root


# --------------------------------------------------------------------------- metadata

TRAPS = """\
; comment line | with | pipes
;ID  |SEX| SUBSET           |MINUTES| NAME

14   | F | train-clean-360  | 25.03 | Kristin LeMoine
16   | F | train-clean-360  | 25.11 | Alys AtteWater
60   | M | train-clean-100  | 20.18 | |CBW|Simon

   19|f|train-clean-100|25.19|Kara Shallenberg
26   | male | train-clean-100  | 25.08 | Denny Sayers
99   | ? | train-clean-100  | 1.00 | Nobody Knows
"""


def test_parse_speakers_txt_traps():
    assert parse_speakers_txt(TRAPS) == {"14": "F", "16": "F", "60": "M", "19": "F", "26": "M"}


def test_parse_speakers_txt_conflicting_sex_is_an_error():
    with pytest.raises(CorpusError, match="speaker 14 is listed as both F and M"):
        parse_speakers_txt("14 | F | a | 1 | x\n14 | M | b | 1 | x\n")


def test_parse_speakers_tsv_malformed_header_and_missing_names():
    text = "READER\tGENDER\tSUBSET\tNAME\tMINUTES\n14\tF\ttrain-clean-360\tKristin\n16\tM\ttrain-clean-360\n\n60\tM\n"
    assert parse_speakers_tsv(text) == {"14": "F", "16": "M", "60": "M"}


# --------------------------------------------------------------------------- scanning archives

def test_scan_archive_counts_speakers_from_directories(archives):
    s = scan_source(archives["train-clean-100"])
    assert s.metadata_file == "SPEAKERS.txt" and s.subsets == ["train-clean-100"]
    # metadata lists 60 and a ghost speaker with no audio: neither appears
    assert GHOST_SPEAKER in s.speakers and "60" in s.speakers
    assert {u["speaker"] for u in s.utterances} == {"19", "26"}
    assert len(s.utterances) == (3 + 2) * 2
    # a speaker with audio but no sex in the metadata is reported, not silently kept
    assert {u["speaker"] for u in s.unknown_sex} == {"27"} and len(s.unknown_sex) == 4
    assert all(u["sex"] is None for u in s.unknown_sex)
    u = next(u for u in s.utterances if u["speaker"] == "19")
    assert u["sex"] == "F" and u["subset"] == "train-clean-100"
    assert u["id"] == Path(u["member"]).stem and u["id"].startswith(f"19_{u['chapter']}_")
    assert u["member"] == f"LibriTTS/train-clean-100/19/{u['chapter']}/{u['id']}.wav"
    assert u["duration_s"] == pytest.approx(0.25)


def test_scan_falls_back_to_speakers_tsv_then_fails_clearly(tmp_path):
    a = build_libritts_archives(tmp_path / "a", {"test-clean": {"121": ("F", 1)}}, include_speakers_txt=False)
    s = scan_source(a["test-clean"])
    assert s.metadata_file == "speakers.tsv" and [u["sex"] for u in s.utterances] == ["F"]
    b = build_libritts_archives(tmp_path / "b", {"test-clean": {"121": ("F", 1)}},
                                include_speakers_txt=False, include_speakers_tsv=False)
    with pytest.raises(LayoutError, match="neither LibriTTS/SPEAKERS.txt nor"):
        scan_source(b["test-clean"])


def test_truncated_or_corrupt_archive_is_a_clear_error(archives, tmp_path):
    data = archives["train-clean-100"].read_bytes()
    cut = tmp_path / "train-clean-100.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    for fn in (scan_archive, lambda p: list(iter_archive_audio(p, {"nothing"})), scan_source):
        with pytest.raises(ArchiveError, match=f"archive {cut} is truncated or corrupt.*re-download"):
            fn(cut)
    # a cut at the very end (tarfile alone ends quietly there) and a flipped bit (gzip CRC)
    for name, damaged in (("end", data[:-8]), ("tail", data[:-2000]),
                          ("flip", data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1:])):
        p = tmp_path / f"{name}.tar.gz"
        p.write_bytes(damaged)
        with pytest.raises(ArchiveError, match=f"archive {p} is truncated or corrupt"):
            scan_archive(p)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ArchiveError, match="junk.tar.gz is truncated or corrupt"):
        scan_archive(junk)


WAV = make_wav("F", "1", 0, seconds=0.05)


@pytest.mark.parametrize("kind, members, links", [
    ("dotdot", {"LibriTTS/../../evil.wav": WAV}, {}),
    ("dotdot-root", {"../LibriTTS/t/1/2/1_2_0_0.wav": WAV}, {}),
    ("absolute", {"/tmp/LibriTTS/t/1/2/1_2_0_0.wav": WAV}, {}),
    ("symlink", {}, {"symlinks": {"LibriTTS/t/1/2/1_2_0_0.wav": "../../../../../etc/passwd"}}),
    ("abs-symlink", {}, {"symlinks": {"LibriTTS/SPEAKERS.txt": "/etc/passwd"}}),
    ("hardlink", {}, {"hardlinks": {"LibriTTS/t/1/2/1_2_0_0.wav": "../outside"}}),
])
def test_members_leaving_the_root_are_rejected(tmp_path, kind, members, links):
    a = write_tar_gz(tmp_path / f"{kind}.tar.gz",
                     {"LibriTTS/SPEAKERS.txt": b"1 | F | t | 1 | x\n", **members}, **links)
    with pytest.raises(UnsafeArchiveError, match="leaves the archive root|pointing out of"):
        scan_archive(a)
    with pytest.raises(UnsafeArchiveError):
        list(iter_archive_audio(a, {"LibriTTS/t/1/2/1_2_0_0.wav"}))


@pytest.mark.parametrize("members, what", [
    ({"data/speech/1_2_0_0.wav": WAV}, "1 wav file"),
    ({"LibriTTS/t/1/2/3_2_0_0.wav": WAV}, "1 wav file"),  # speaker in name != directory
    ({"LibriTTS/README.txt": b"no audio"}, "no wav files"),
])
def test_non_libritts_layout_is_rejected(tmp_path, members, what):
    a = write_tar_gz(tmp_path / "other.tar.gz", members)
    with pytest.raises(LayoutError, match=rf"archive {a} is not in LibriTTS layout: {what}.*"
                                          r"LibriTTS/<subset>/<speaker>/<chapter>"):
        scan_archive(a)


def test_iter_archive_audio_streams_wanted_members(archives):
    utts, _ = scan_archive(archives["test-clean"])
    wanted = {u["member"] for u in utts[:2]}
    got = dict(iter_audio(archives["test-clean"], wanted))
    assert set(got) == wanted
    for member, data in got.items():
        x, sr = decode_audio(data, name=member)
        assert sr == 24_000 and x.dtype == np.float32 and x.shape == (6000,)
    with pytest.raises(ArchiveError, match=r"lacks 1 wanted member(?s:.*)LibriTTS/nope.wav"):
        list(iter_archive_audio(archives["test-clean"], wanted | {"LibriTTS/nope.wav"}))


# --------------------------------------------------------------------------- directories

def test_directory_scan_matches_archive_scan(archives, extracted):
    from_archive = scan_source(archives["test-clean"])
    for root, prefix in ((extracted, "LibriTTS/test-clean/"), (extracted / "LibriTTS", "test-clean/"),
                         (extracted / "LibriTTS" / "test-clean", "")):
        s = scan_source(root)
        if root == extracted or root.name == "LibriTTS":  # both subsets extracted there
            s.utterances = [u for u in s.utterances if u["subset"] == "test-clean"]
        assert sorted(u["id"] for u in s.utterances) == sorted(u["id"] for u in from_archive.utterances)
        assert all(u["member"].startswith(prefix) and u["subset"] == "test-clean" for u in s.utterances)
        assert s.metadata_file == "SPEAKERS.txt"
        got = dict(iter_audio(root, [u["member"] for u in s.utterances]))
        assert all(decode_audio(b)[1] == 24_000 for b in got.values())


def test_directory_members_must_stay_inside(extracted):
    with pytest.raises(CorpusError, match="not a path inside"):
        list(iter_directory_audio(extracted, ["../x.wav"]))
    with pytest.raises(CorpusError, match="1 file.s. missing"):
        list(iter_directory_audio(extracted, ["LibriTTS/none.wav"]))


def test_directory_not_in_layout(tmp_path):
    (tmp_path / "a.wav").write_bytes(WAV)
    with pytest.raises(LayoutError, match="directory .* is not in LibriTTS layout"):
        scan_directory(tmp_path)
    with pytest.raises(FileNotFoundError):
        list(iter_audio(tmp_path / "missing", ["x"]))


# --------------------------------------------------------------------------- decoding

def test_decode_audio_rejects_broken_data():
    with pytest.raises(AudioError, match="empty"):
        decode_audio(b"")
    with pytest.raises(AudioError, match="x.wav: not readable audio"):
        decode_audio(b"RIFF\x00\x00junk" * 10, name="x.wav")
    with pytest.raises(AudioError, match="truncated WAV"):
        decode_audio(WAV[: len(WAV) // 2])
    header_only = io.BytesIO()
    sf.write(header_only, np.zeros(0, np.float32), 16000, format="WAV")
    with pytest.raises(AudioError, match="no audio samples"):
        decode_audio(header_only.getvalue())
    flac = make_wav("M", "2", 0, seconds=1.0, fmt="FLAC")
    with pytest.raises(AudioError):
        decode_audio(flac[: len(flac) // 2])


def test_decode_audio_mixes_stereo_and_keeps_rate():
    buf = io.BytesIO()
    sf.write(buf, np.stack([np.full(800, 0.5), np.full(800, -0.25)], axis=1), 16_000, format="FLAC")
    x, sr = decode_audio(buf.getvalue())
    assert sr == 16_000 and x.shape == (800,) and x.dtype == np.float32
    assert np.allclose(x, 0.125, atol=1e-3)


@pytest.mark.parametrize("subtype, channels", [("PCM_16", 1), ("PCM_16", 2), ("PCM_24", 1)])
def test_decode_audio_flac_matches_libsndfile(subtype, channels):
    # 16-bit FLAC takes the dr_flac path, the rest libsndfile: the
    # samples must be libsndfile's float32 ones either way, bit for bit
    rng = np.random.default_rng(channels)
    buf = io.BytesIO()
    sf.write(buf, rng.uniform(-0.9, 0.9, (12_345, channels)), 22_050, format="FLAC", subtype=subtype)
    data = buf.getvalue()
    with sf.SoundFile(io.BytesIO(data)) as f:
        ref = f.read(dtype="float32", always_2d=True)
    ref = ref[:, 0] if channels == 1 else ref.mean(axis=1)
    x, sr = decode_audio(data)
    assert sr == 22_050 and x.dtype == np.float32 and x.tobytes() == np.ascontiguousarray(ref).tobytes()
    for cut in (len(data) - 10, len(data) // 2):  # cut FLACs are reported, whichever decoder tries
        with pytest.raises(AudioError):
            decode_audio(data[:cut])


# --------------------------------------------------------------------------- folder corpus

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
    m.write_text("path,speaker,sex,split\n"
                 "a.wav,alice,female,train\n"
                 "b.flac,bob,M,\n"
                 "c.wav, alice ,f,TEST\n"
                 f"{outside},carl,Male,val\n")
    rows = read_folder_manifest(m)
    assert [(r["speaker"], r["sex"], r["split"]) for r in rows] == [
        ("alice", "F", "train"), ("bob", "M", None), ("alice", "F", "test"), ("carl", "M", "val")]
    assert rows[0]["source"] == str(m.parent.resolve()) and rows[0]["member"] == "a.wav"
    assert rows[0]["id"] == "a" and rows[1]["id"] == "b"
    assert rows[3]["source"] == str(outside.parent) and rows[3]["member"] == "d.wav"
    # every row's audio reads back through the common source/member interface
    for r in rows:
        (member, data), = iter_audio(r["source"], [r["member"]])
        x, sr = decode_audio(data, name=member)
        assert x.ndim == 1 and sr in (44_100, 16_000, 24_000)


def test_folder_manifest_lists_every_problem_before_any_work(tmp_path):
    _write(tmp_path / "ok.wav", make_wav("F", "1", 0))
    _write(tmp_path / "ok2.wav", make_wav("F", "1", 1))
    _write(tmp_path / "empty.wav", b"")
    (tmp_path / "notes.txt").write_text("hi")
    m = tmp_path / "m.csv"
    m.write_text("path,speaker,sex,split\n"
                 "ok.wav,s1,F,train\n"           # fine
                 "missing.wav,s2,M,train\n"      # line 3: missing file
                 "ok2.wav,s1,X,train\n"          # line 4: unknown sex
                 "ok.wav,s3,M,dev\n"             # line 5: bad split + duplicate path
                 "empty.wav,s4,F,\n"             # line 6: unreadable audio
                 "notes.txt,s5,F,\n"             # line 7: not audio
                 "ok2.wav,s1,male,\n"            # line 8: s1 given two sexes (+ dup path)
                 ",s6,F,\n")                     # line 9: no path
    with pytest.raises(ManifestError) as e:
        read_folder_manifest(m)
    msg = str(e.value)
    for needle in ("line 3: missing.wav: file not found", "line 4: unknown sex 'X'",
                   "line 5: unknown split 'dev'", "ok.wav: listed twice (also line 2)",
                   "line 6: empty.wav: not readable audio", "line 7: notes.txt: not an audio file",
                   "line 9: no path", "speaker s1 is given two sexes: F on line(s) 2, M on line(s) 8"):
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


@pytest.mark.skipif(not SAMPLE_MANIFEST.exists(), reason="shared LibriSpeech sample not present")
def test_real_sample_manifest_parses_in_place():
    rows = read_folder_manifest(SAMPLE_MANIFEST)
    assert len(rows) == 251
    sexes = {r["speaker"]: r["sex"] for r in rows}
    assert sum(s == "F" for s in sexes.values()) == 125 and len(sexes) == 251
    assert all(r["source"] == str(SAMPLE_MANIFEST.parent.resolve()) for r in rows)
    (member, data), = iter_audio(rows[0]["source"], [rows[0]["member"]])
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
