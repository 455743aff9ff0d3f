"""voicegender.corpora.libritts: LibriTTS-layout archives and directories, their metadata and members."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from libritts_fixture import GHOST_SPEAKER, build_libritts_archives, make_wav, write_tar_gz
from voicegender.audio.decode import decode_audio
from voicegender.errors import CorpusError
from voicegender.corpora.libritts import (
    ArchiveError,
    LayoutError,
    UnsafeArchiveError,
    iter_archive_audio,
    iter_audio,
    iter_directory_audio,
    parse_speakers_tsv,
    parse_speakers_txt,
    scan_archive,
    scan_directory,
    scan_source,
)

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
    b = build_libritts_archives(
        tmp_path / "b", {"test-clean": {"121": ("F", 1)}}, include_speakers_txt=False, include_speakers_tsv=False
    )
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
    for name, damaged in (
        ("end", data[:-8]),
        ("tail", data[:-2000]),
        ("flip", data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1 :]),
    ):
        p = tmp_path / f"{name}.tar.gz"
        p.write_bytes(damaged)
        with pytest.raises(ArchiveError, match=f"archive {p} is truncated or corrupt"):
            scan_archive(p)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ArchiveError, match="junk.tar.gz is truncated or corrupt"):
        scan_archive(junk)


WAV = make_wav("F", "1", 0, seconds=0.05)


@pytest.mark.parametrize(
    "kind, members, links",
    [
        ("dotdot", {"LibriTTS/../../evil.wav": WAV}, {}),
        ("dotdot-root", {"../LibriTTS/t/1/2/1_2_0_0.wav": WAV}, {}),
        ("absolute", {"/tmp/LibriTTS/t/1/2/1_2_0_0.wav": WAV}, {}),
        ("symlink", {}, {"symlinks": {"LibriTTS/t/1/2/1_2_0_0.wav": "../../../../../etc/passwd"}}),
        ("abs-symlink", {}, {"symlinks": {"LibriTTS/SPEAKERS.txt": "/etc/passwd"}}),
        ("hardlink", {}, {"hardlinks": {"LibriTTS/t/1/2/1_2_0_0.wav": "../outside"}}),
    ],
)
def test_members_leaving_the_root_are_rejected(tmp_path, kind, members, links):
    a = write_tar_gz(tmp_path / f"{kind}.tar.gz", {"LibriTTS/SPEAKERS.txt": b"1 | F | t | 1 | x\n", **members}, **links)
    with pytest.raises(UnsafeArchiveError, match="leaves the archive root|pointing out of"):
        scan_archive(a)
    with pytest.raises(UnsafeArchiveError):
        list(iter_archive_audio(a, {"LibriTTS/t/1/2/1_2_0_0.wav"}))


@pytest.mark.parametrize(
    "members, what",
    [
        ({"data/speech/1_2_0_0.wav": WAV}, "1 wav file"),
        ({"LibriTTS/t/1/2/3_2_0_0.wav": WAV}, "1 wav file"),  # speaker in name != directory
        ({"LibriTTS/README.txt": b"no audio"}, "no wav files"),
    ],
)
def test_non_libritts_layout_is_rejected(tmp_path, members, what):
    a = write_tar_gz(tmp_path / "other.tar.gz", members)
    with pytest.raises(
        LayoutError,
        match=rf"archive {a} is not in LibriTTS layout: {what}.*"
        r"LibriTTS/<subset>/<speaker>/<chapter>",
    ):
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
    for root, prefix in (
        (extracted, "LibriTTS/test-clean/"),
        (extracted / "LibriTTS", "test-clean/"),
        (extracted / "LibriTTS" / "test-clean", ""),
    ):
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


# --------------------------------------------------------------------------- folder corpus
