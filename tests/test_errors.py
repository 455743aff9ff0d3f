"""Expected failures are one clear message and a non-zero exit; unexpected ones keep their
traceback; a failed or interrupted stage leaves none of its outputs behind."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from voicegender.corpora.folder import ManifestError
from voicegender.corpora.libritts import ArchiveError
from voicegender.corpora.download import ChecksumError, DownloadError
from voicegender.errors import EXIT_INTERRUPTED, UserError, run_command
from voicegender.params import ParamError
from voicegender.models.tuning import ClusterUnreachable, SearchInterrupted

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "error",
    [
        ParamError("invalid params:\n  lr: must be a positive number, got -1"),
        ChecksumError("SHA-256 mismatch for http://x/test-clean.tar.gz"),
        DownloadError("downloading http://127.0.0.1:1/a.tar.gz failed 6 times"),
        ManifestError("manifest m.csv lacks column(s) sex"),
        ArchiveError("archive a.tar.gz is truncated or corrupt"),
        ClusterUnreachable("no Ray cluster reachable at '10.0.0.5:6379'"),
        SearchInterrupted("the search ended after 3 of 20 trials"),
    ],
)
def test_an_expected_failure_is_one_message(error, tmp_path, capsys):
    out = tmp_path / "out.json"

    def main():
        out.write_text("half")
        raise error

    with pytest.raises(SystemExit) as exit_:
        run_command(main, name="stage", outputs=[out])
    assert exit_.value.code == 1
    assert isinstance(error, UserError)
    err = capsys.readouterr().err
    assert err.startswith("stage: error: ") and str(error) in err and "Traceback" not in err
    assert not out.exists()


def test_ctrl_c_exits_130_and_removes_the_outputs(tmp_path, capsys):
    folder = tmp_path / "features"

    def main():
        folder.mkdir()
        (folder / "train_X.npy").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        run_command(main, name="featurize", outputs=[folder, tmp_path / "never-written.json"])
    assert exit_.value.code == EXIT_INTERRUPTED
    assert "featurize: interrupted" in capsys.readouterr().err
    assert not folder.exists()


def test_an_unexpected_error_keeps_its_traceback(tmp_path):
    out = tmp_path / "out.json"

    def main():
        out.write_text("half")
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_command(main, name="stage", outputs=[out])
    assert not out.exists()


def stage(name, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py")], cwd=cwd, capture_output=True, text=True
    )


def test_a_bad_manifest_stops_the_download_stage_with_one_message(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec/manifest.csv").write_text("path,speaker\na.wav,alice\n")
    params["corpus"] = "folder"
    params["data"]["folder"].update(manifest=str(tmp_path / "rec/manifest.csv"), recordings=str(tmp_path / "rec"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = stage("download", tmp_path)
    assert proc.returncode == 1
    assert "download: error: manifest" in proc.stderr and "sex" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 5, proc.stderr
    assert not (tmp_path / "data/raw").exists()


def test_an_unreadable_archive_stops_the_label_stage_with_one_message(tmp_path):
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    (raw / "train.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    (raw / "corpus.json").write_text(
        '{"corpus": "libritts", "sources": [{"role": "train", "subset": "train", '
        f'"path": "{raw / "train.tar.gz"}"}}]}}'
    )
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    proc = stage("label", tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "label: error: " in proc.stderr and "train.tar.gz" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data/labels.csv").exists()


def test_featurize_interrupted_leaves_no_features(tmp_path, monkeypatch):
    """Ctrl-C while featurize writes its arrays: exit 130, no data/features or metrics left."""
    import voicegender.corpora.labels as labels
    import voicegender.features.featurize as featurize

    def interrupted(rows, config, out, log=print, speech=None, cluster=None):
        Path(out).mkdir(parents=True)
        (Path(out) / "train_X.npy").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(featurize, "build_features", interrupted)
    monkeypatch.setattr(labels, "read_labels", lambda path: [])
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "stages/featurize.py"), run_name="__main__")
    assert exit_.value.code == EXIT_INTERRUPTED
    assert not (tmp_path / "data/features").exists() and not (tmp_path / "metrics/featurize.json").exists()


def test_featurize_with_every_recording_of_a_split_skipped_fails_with_one_message(tmp_path):
    """Tones are no speech: every recording is skipped, and featurize says so itself (the tune stage
    used to meet empty arrays and print a traceback)."""
    import soundfile as sf

    from signals import tone

    rec = tmp_path / "rec"
    rec.mkdir()
    rows = ["id,speaker,sex,split,source,member,seconds"]
    for i, (spk, sex, split) in enumerate(
        [("a", "F", "train"), ("b", "M", "train"), ("c", "F", "val"), ("d", "M", "test")]
    ):
        sf.write(rec / f"{i}.wav", tone(220 + 40 * i, 2.0), 24000)
        rows.append(f"u{i},{spk},{sex},{split},{rec},{i}.wav,2.0")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/labels.csv").write_text("\n".join(rows) + "\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"].update(kind="mean_mel", n_jobs=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = stage("featurize", tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "featurize: error: no recording of the train (2 recordings, all skipped)" in proc.stderr, proc.stderr
    assert "predict.min_speech_s" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data/features").exists() and not (tmp_path / "metrics/featurize.json").exists()
