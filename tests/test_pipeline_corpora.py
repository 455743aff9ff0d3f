"""End to end on the other corpora: LibriTTS from a local HTTP server, and a folder of recordings."""

import json

import pytest

from conftest import run, set_params
from libritts_fixture import make_wav, serve_directory, sha256_file, speakers_txt, write_tar_gz

pytestmark = pytest.mark.slow  # each test runs `dvc repro` in a fresh copy of the repository

TRAIN = {"101": "F", "102": "F", "103": "F", "104": "F", "201": "M", "202": "M", "203": "M", "204": "M"}
TEST = {"111": "F", "112": "F", "211": "M", "212": "M"}


def libritts_archive(path, subset, speakers, extra=None):
    """A LibriTTS-shaped archive: 3 utterances per speaker, plus ``extra`` raw members."""
    members = {
        "LibriTTS/SPEAKERS.txt": speakers_txt(
            [(s, x, subset, 1.0, f"Reader {s}") for s, x in {**TRAIN, **TEST}.items()]
            + [("60", "M", "train-clean-100", 20.0, "|CBW|Simon")]
        ).encode()
    }
    for spk, sex in speakers.items():
        for i in range(3):
            members[f"LibriTTS/{subset}/{spk}/7/{spk}_7_000001_00000{i}.wav"] = make_wav(sex, spk, i)
    members.update(extra or {})
    return write_tar_gz(path, members)


def test_libritts_from_a_local_mirror(tiny_repo, tmp_path):
    srv_dir = tmp_path / "mirror"
    srv_dir.mkdir()
    bad = {
        "LibriTTS/train-clean-100/101/7/101_7_000001_000009.wav": b"RIFF this is not audio",
        "LibriTTS/train-clean-100/102/7/102_7_000001_000009.wav": b"",
        # a speaker with audio but no sex in SPEAKERS.txt: reported, left out
        "LibriTTS/train-clean-100/305/7/305_7_000001_000000.wav": make_wav("F", "305", 0),
    }
    train = libritts_archive(srv_dir / "train-clean-100.tar.gz", "train-clean-100", TRAIN, bad)
    test = libritts_archive(srv_dir / "test-clean.tar.gz", "test-clean", TEST)
    with serve_directory(srv_dir) as srv:
        # the fixture's recordings are 0.25 s tones, not speech: no speech check here (tests/test_speech.py)
        set_params(
            tiny_repo,
            {
                "corpus": "libritts",
                "data.libritts.base_url": srv.base_url,
                "data.libritts.checksums": {"train-clean-100": sha256_file(train), "test-clean": sha256_file(test)},
                "predict.min_speech_s": 0.0,
            },
        )
        run(["dvc", "repro"], tiny_repo)
    data = json.loads((tiny_repo / "metrics/data.json").read_text())
    details = json.loads((tiny_repo / "metrics/data_details.json").read_text())
    total = details["total"]
    assert total["train"]["speakers"] + total["val"]["speakers"] == 8
    assert data["val"]["F"]["speakers"] == 1 and data["val"]["M"]["speakers"] == 1
    assert total["test"] == {"speakers": 4, "utterances": 12, "hours": total["test"]["hours"]}
    assert details["excluded"]["unknown_sex"] == 1
    featurize = json.loads((tiny_repo / "metrics/featurize.json").read_text())
    assert featurize["skipped"] == 2
    skipped = json.loads((tiny_repo / "metrics/featurize_details.json").read_text())["skipped_ids"]
    assert set(skipped) == {"101_7_000001_000009", "102_7_000001_000009"}
    evaluate = json.loads((tiny_repo / "metrics/evaluate.json").read_text())
    assert evaluate["n_speakers"] == 4


def test_a_wrong_checksum_stops_the_pipeline_and_keeps_nothing(tiny_repo, tmp_path):
    srv_dir = tmp_path / "mirror"
    srv_dir.mkdir()
    libritts_archive(srv_dir / "train-clean-100.tar.gz", "train-clean-100", TRAIN)
    libritts_archive(srv_dir / "test-clean.tar.gz", "test-clean", TEST)
    with serve_directory(srv_dir) as srv:
        set_params(
            tiny_repo,
            {
                "corpus": "libritts",
                "data.libritts.base_url": srv.base_url,
                "data.libritts.checksums": {"train-clean-100": "0" * 64, "test-clean": "0" * 64},
            },
        )
        proc = run(["dvc", "repro"], tiny_repo, check=False)
    assert proc.returncode != 0
    assert "sha256" in (proc.stdout + proc.stderr).lower() or "checksum" in (proc.stdout + proc.stderr).lower()
    out = proc.stdout + proc.stderr
    assert "download: error: SHA-256 mismatch for " + srv.base_url + "/train-clean-100.tar.gz" in out
    assert "Traceback" not in out
    assert not (tiny_repo / "data/raw").exists()
    cache = tmp_path / "libritts-cache"
    assert not cache.exists() or not any(p.suffix in (".gz", ".part") for p in cache.iterdir())


def test_archives_are_downloaded_once_per_machine(tiny_repo, tmp_path):
    """A rerun of download (forced, after a param change, or from another clone) finds the
    verified archives in the cache and fetches nothing."""
    srv_dir = tmp_path / "mirror"
    srv_dir.mkdir()
    train = libritts_archive(srv_dir / "train-clean-100.tar.gz", "train-clean-100", TRAIN)
    test = libritts_archive(srv_dir / "test-clean.tar.gz", "test-clean", TEST)
    cache = tmp_path / "libritts-cache"
    with serve_directory(srv_dir) as srv:
        set_params(
            tiny_repo,
            {
                "corpus": "libritts",
                "data.libritts.base_url": srv.base_url,
                "data.libritts.checksums": {"train-clean-100": sha256_file(train), "test-clean": sha256_file(test)},
            },
        )
        run(["dvc", "repro", "label"], tiny_repo)
        first = sum(srv.bytes_sent.values())
        assert first == train.stat().st_size + test.stat().st_size
        assert sorted(p.name for p in cache.glob("*.tar.gz")) == ["test-clean.tar.gz", "train-clean-100.tar.gz"]
        assert not list((tiny_repo / "data/raw").glob("*.tar.gz"))  # data/raw only names them
        labels = (tiny_repo / "data/labels.csv").read_text()

        forced = run(["dvc", "repro", "-f", "download"], tiny_repo)
        assert "Running stage 'download'" in forced.stdout
        set_params(tiny_repo, {"data.synthetic.train_speakers": 8})  # a param download lists
        again = run(["dvc", "repro", "label"], tiny_repo)
        assert "Running stage 'download'" in again.stdout
        assert sum(srv.bytes_sent.values()) == first  # no archive byte fetched again
    assert (tiny_repo / "data/labels.csv").read_text() == labels


def test_folder_of_recordings_and_a_changed_recording_reruns(tiny_repo, tmp_path):
    rec = tmp_path / "recordings"
    lines = ["path,speaker,sex"]
    for k, (spk, sex) in enumerate({**TRAIN, **TEST}.items()):
        (rec / spk).mkdir(parents=True)
        for i in range(2):
            fmt, ext = ("FLAC", "flac") if k % 2 else ("WAV", "wav")
            (rec / spk / f"{i}.{ext}").write_bytes(
                make_wav(sex, spk, i, sample_rate=16000 if k % 3 else 44100, fmt=fmt, channels=1 + k % 2)
            )
            lines.append(f"{spk}/{i}.{ext},{spk},{'female' if sex == 'F' else 'M'}")
    (rec / "manifest.csv").write_text("\n".join(lines) + "\n")
    set_params(
        tiny_repo,
        {
            "corpus": "folder",
            "data.folder.manifest": str(rec / "manifest.csv"),
            "data.folder.recordings": str(rec),
            "data.folder.test_fraction": 0.3,
            "predict.min_speech_s": 0.0,
        },
    )  # tones, not speech: no speech check here
    run(["dvc", "repro"], tiny_repo)
    data = json.loads((tiny_repo / "metrics/data.json").read_text())
    assert sum(data[s][sex]["speakers"] for s in ("train", "val", "test") for sex in "FM") == 12
    assert all(data[s]["F"]["speakers"] >= 1 and data[s]["M"]["speakers"] >= 1 for s in ("train", "val", "test"))
    assert "Data and pipelines are up to date" in run(["dvc", "status"], tiny_repo).stdout

    (rec / "101" / "0.wav").write_bytes(make_wav("F", "101", 5))
    status = run(["dvc", "status"], tiny_repo).stdout
    assert "download" in status and "modified" in status
