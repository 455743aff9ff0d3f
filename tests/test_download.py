"""download.py against a local HTTP server serving fixture archives."""

from __future__ import annotations

import shutil
import tarfile
from collections import namedtuple
from pathlib import Path

import pytest

from libritts_fixture import build_libritts_archives, serve_directory, sha256_file
from voicegender.corpora import download as dl
from voicegender.corpora.download import (
    ChecksumError,
    DiskSpaceError,
    DownloadError,
    MissingChecksumError,
    download_file,
    fetch_libritts,
    locate_libritts,
)

FAST = dict(backoff_s=0.001, progress=False, timeout_s=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("served")
    archives = build_libritts_archives(
        root,
        {
            "train-clean-100": {"19": ("F", 4), "26": ("M", 4)},
            "test-clean": {"121": ("F", 2), "237": ("M", 2)},
        },
    )
    return root, archives


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_resume_after_cut_fetches_no_byte_twice(served, tmp_path):
    root, archives = served
    src = archives["train-clean-100"]
    size, cut = src.stat().st_size, 20_000
    dest = tmp_path / "out" / "train-clean-100.tar.gz"
    with serve_directory(root, cut_after_bytes=cut) as srv:
        download_file(srv.url(src.name), dest, sha256_file(src), **FAST)
        # first response was cut, second resumed exactly where the first stopped
        assert [(r, s) for _, r, s in srv.requests] == [(None, 200), (f"bytes={cut}-", 206)]
        assert srv.bytes_sent[f"/{src.name}"] == size  # not one byte fetched twice
    assert _bytes(dest) == _bytes(src)
    assert not dest.with_suffix(".gz.part").exists()


def test_resume_across_runs(served, tmp_path):
    """A .part left by an earlier (killed) run is resumed with a Range request."""
    root, archives = served
    src = archives["train-clean-100"]
    dest = tmp_path / src.name
    part = dest.with_suffix(".gz.part")
    part.write_bytes(src.read_bytes()[:30_000])
    with serve_directory(root) as srv:
        download_file(srv.url(src.name), dest, sha256_file(src), retries=0, **FAST)
        assert [(r, s) for _, r, s in srv.requests] == [("bytes=30000-", 206)]
        assert srv.bytes_sent[f"/{src.name}"] == src.stat().st_size - 30_000
    assert _bytes(dest) == _bytes(src) and not part.exists()


def test_stale_part_not_a_prefix_is_refused_not_kept(served, tmp_path):
    """A .part of other bytes resumes into a wrong file: the checksum catches it, nothing kept."""
    root, archives = served
    src = archives["test-clean"]
    dest = tmp_path / src.name
    dest.with_suffix(".gz.part").write_bytes(b"\0" * 1000)
    with serve_directory(root) as srv:
        with pytest.raises(ChecksumError):
            download_file(srv.url(src.name), dest, sha256_file(src), **FAST)
        assert srv.bytes_sent[f"/{src.name}"] == src.stat().st_size - 1000
    assert list(tmp_path.iterdir()) == []


def test_server_ignoring_range_restarts_cleanly(served, tmp_path):
    root, archives = served
    src = archives["test-clean"]
    dest = tmp_path / src.name
    with serve_directory(root, cut_after_bytes=5_000, ignore_range=True) as srv:
        download_file(srv.url(src.name), dest, sha256_file(src), **FAST)
        assert [s for _, _, s in srv.requests] == [200, 200]
    assert _bytes(dest) == _bytes(src)


def test_complete_part_answered_416_is_verified_and_kept(served, tmp_path):
    root, archives = served
    src = archives["test-clean"]
    dest = tmp_path / src.name
    shutil.copy(src, dest.with_suffix(".gz.part"))
    with serve_directory(root) as srv:
        download_file(srv.url(src.name), dest, sha256_file(src), **FAST)
        assert [s for _, _, s in srv.requests] == [416]
        assert srv.bytes_sent == {}
    assert _bytes(dest) == _bytes(src)


def test_checksum_mismatch_keeps_nothing(served, tmp_path):
    root, archives = served
    src = archives["test-clean"]
    dest = tmp_path / src.name
    with serve_directory(root) as srv:
        with pytest.raises(ChecksumError, match="SHA-256 mismatch.*deleted"):
            download_file(srv.url(src.name), dest, "0" * 64, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_transient_failures_are_retried(served, tmp_path):
    root, archives = served
    src = archives["test-clean"]
    dest = tmp_path / src.name
    with serve_directory(root, fail_times=2) as srv:
        download_file(srv.url(src.name), dest, sha256_file(src), retries=2, **FAST)
        assert [s for _, _, s in srv.requests] == [503, 503, 200]
    assert _bytes(dest) == _bytes(src)


def test_gives_up_after_retries_and_404_is_not_retried(served, tmp_path):
    root, archives = served
    src = archives["test-clean"]
    with serve_directory(root, fail_times=10) as srv:
        with pytest.raises(DownloadError, match="failed 3 times in a row.*503"):
            download_file(srv.url(src.name), tmp_path / src.name, sha256_file(src), retries=2, **FAST)
        assert len(srv.requests) == 3
    with serve_directory(root) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_file(srv.url("nope.tar.gz"), tmp_path / "nope.tar.gz", "a" * 64, **FAST)
        assert len(srv.requests) == 1


def test_existing_verified_file_is_not_downloaded_again(served, tmp_path):
    root, archives = served
    src = archives["test-clean"]
    dest = tmp_path / src.name
    with serve_directory(root) as srv:
        download_file(srv.url(src.name), dest, sha256_file(src), **FAST)
        n = len(srv.requests)
        download_file(srv.url(src.name), dest, sha256_file(src), **FAST)
        assert len(srv.requests) == n
        # a damaged existing file is verified, found wrong, and fetched again
        dest.write_bytes(b"damaged")
        download_file(srv.url(src.name), dest, sha256_file(src), **FAST)
        assert len(srv.requests) == n + 1
    assert _bytes(dest) == _bytes(src)


def test_missing_checksum_is_an_error_before_any_request(served, tmp_path):
    root, _ = served
    with serve_directory(root) as srv:
        with pytest.raises(MissingChecksumError, match="train-other-500"):
            fetch_libritts(srv.base_url, ["test-clean", "train-other-500"], tmp_path, None, **FAST)
        with pytest.raises(MissingChecksumError):
            download_file(srv.url("test-clean.tar.gz"), tmp_path / "x", None, **FAST)
        with pytest.raises(MissingChecksumError, match="not a 64-digit"):
            download_file(srv.url("test-clean.tar.gz"), tmp_path / "x", "abc", **FAST)
        assert srv.requests == []
    assert set(dl.KNOWN_SHA256) == {"train-clean-100", "test-clean", "dev-clean"}


def test_fetch_libritts_with_given_checksums(served, tmp_path):
    root, archives = served
    sums = {s: sha256_file(p) for s, p in archives.items()}
    sums["test-clean"] = {"sha256": sums["test-clean"], "size": archives["test-clean"].stat().st_size}
    with serve_directory(root) as srv:
        out = fetch_libritts(srv.base_url + "/", ["train-clean-100", "test-clean"], tmp_path, sums, **FAST)
    assert {s: p.name for s, p in out.items()} == {
        "train-clean-100": "train-clean-100.tar.gz",
        "test-clean": "test-clean.tar.gz",
    }
    assert all(_bytes(out[s]) == _bytes(archives[s]) for s in out)


def test_mirror_serving_another_file_is_refused(served, tmp_path):
    """Known checksum + size: a server with a different test-clean.tar.gz fails, keeps nothing."""
    root, _ = served
    with serve_directory(root) as srv:
        with pytest.raises(DownloadError, match="bytes on the server"):
            fetch_libritts(srv.base_url, ["test-clean"], tmp_path, None, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_disk_space_checked_before_starting(served, tmp_path, monkeypatch):
    root, archives = served
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: Usage(10**6, 10**6 - 1000, 1000))
    src = archives["test-clean"]
    with serve_directory(root) as srv:
        with pytest.raises(DiskSpaceError, match=r"needs .*\(1230670113 bytes\).*1000 bytes\) free"):
            fetch_libritts(srv.base_url, ["test-clean"], tmp_path, None, **FAST)
        assert srv.requests == []
        with pytest.raises(DiskSpaceError, match=f"{src.stat().st_size} bytes"):  # size from Content-Length
            download_file(srv.url(src.name), tmp_path / src.name, sha256_file(src), **FAST)
    assert list(tmp_path.iterdir()) == []


def test_locate_libritts_archives_and_extracted(served, tmp_path):
    _, archives = served
    have = tmp_path / "have"
    have.mkdir()
    shutil.copy(archives["train-clean-100"], have)
    sha = sha256_file(archives["train-clean-100"])
    # the fixture is not the published archive: its (known) size would not match
    with pytest.raises(ChecksumError, match="truncated or another file"):
        locate_libritts(have, ["train-clean-100"])
    given = {"train-clean-100": sha}
    with pytest.raises(FileNotFoundError, match="test-clean"):
        locate_libritts(have, ["train-clean-100", "test-clean"], checksums=given)
    with tarfile.open(archives["test-clean"]) as tf:
        tf.extractall(have, filter="data")
    out = locate_libritts(have, ["train-clean-100", "test-clean"], checksums=given)
    assert out == {"train-clean-100": have / "train-clean-100.tar.gz", "test-clean": have / "LibriTTS" / "test-clean"}
    assert locate_libritts(have / "LibriTTS", ["test-clean"]) == {"test-clean": have / "LibriTTS" / "test-clean"}
    assert locate_libritts(have / "LibriTTS" / "test-clean", ["test-clean"])["test-clean"].is_dir()
    assert locate_libritts(have, ["train-clean-100"], checksums=given, verify=True)
    with pytest.raises(ChecksumError, match="mismatch"):
        locate_libritts(have, ["train-clean-100"], checksums={"train-clean-100": "1" * 64}, verify=True)


def test_locate_libritts_size_check_catches_truncated_copy(tmp_path):
    (tmp_path / "test-clean.tar.gz").write_bytes(b"x" * 100)
    with pytest.raises(ChecksumError, match="100 bytes but LibriTTS test-clean is 1230670113"):
        locate_libritts(tmp_path, ["test-clean"])
