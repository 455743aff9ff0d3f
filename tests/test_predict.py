"""voicegender predict: `no speech`, --segments, --format, and what the model card says."""

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf

from test_cli import model_dir  # noqa: F401  (fixture: a model saved as the train stage saves one)
from test_speech import NON_SPEECH, non_speech
from voicegender.cli import EXIT_NO_SPEECH, EXIT_OK, SYNTHETIC_WARNING, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _card(model_dir, **changes):  # noqa: F811
    path = model_dir / "model.json"
    card = json.loads(path.read_text())
    card.update(changes)
    path.write_text(json.dumps(card))


@pytest.mark.parametrize("name", NON_SPEECH)
def test_non_speech_is_no_speech_with_its_own_exit_code(tmp_path, model_dir, name, capsys):  # noqa: F811
    path = tmp_path / "x.wav"
    sf.write(path, non_speech(name), 16000)
    assert main(["predict", str(path), "--model-dir", str(model_dir)]) == EXIT_NO_SPEECH
    out = capsys.readouterr().out
    assert out == f"{path}\tno speech\n"  # and no probability


def test_speech_is_answered_and_a_6_ms_file_is_not(tmp_path, model_dir, utterance, capsys):  # noqa: F811
    y, sr, _ = utterance
    sf.write(tmp_path / "speech.wav", y, sr)
    sf.write(tmp_path / "tiny.wav", y[: int(0.006 * sr)], sr)
    assert main(["predict", str(tmp_path / "speech.wav"), "--model-dir", str(model_dir)]) == EXIT_OK
    file, sex, p = capsys.readouterr().out.strip().split("\t")
    assert sex in ("female", "male") and p.startswith("p_female=")
    assert main(["predict", str(tmp_path / "tiny.wav"), "--model-dir", str(model_dir)]) == EXIT_NO_SPEECH
    assert capsys.readouterr().out.strip().endswith("\tno speech")


def test_min_speech_s_comes_from_the_card_and_a_flag_overrides_it(tmp_path, model_dir, utterance, capsys):  # noqa: F811
    y, sr, _ = utterance
    sf.write(tmp_path / "speech.wav", y, sr)  # ~1.9 s, of which ~1.5 s speech
    args = ["predict", str(tmp_path / "speech.wav"), "--model-dir", str(model_dir)]
    card = json.loads((model_dir / "model.json").read_text())
    _card(model_dir, predict={**card["predict"], "min_speech_s": 5.0})
    assert main(args) == EXIT_NO_SPEECH
    assert main(args + ["--min-speech-s", "0.5"]) == EXIT_OK
    assert main(args + ["--vad-threshold", "1.5"]) == 2  # a bad override fails, naming its key
    assert "predict.vad_threshold" in capsys.readouterr().err


def _speech_pause_speech(tmp_path, utterance):
    y, sr, _ = utterance
    rng = np.random.default_rng(0)
    pause = (1e-4 * rng.standard_normal(int(1.5 * sr))).astype(np.float32)  # a quiet room, not digital zero
    path = tmp_path / "long.flac"
    sf.write(path, np.concatenate([y, pause, y]), sr, format="FLAC")
    return str(path), y.size / sr, (y.size + pause.size) / sr


def test_segments_answer_each_stretch_of_speech(tmp_path, model_dir, utterance, capsys):  # noqa: F811
    path, boundary, restart = _speech_pause_speech(tmp_path, utterance)
    assert main(["predict", path, "--segments", "--model-dir", str(model_dir)]) == EXIT_OK
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2
    (f1, s1, e1, sex1, p1), (f2, s2, e2, sex2, p2) = lines
    assert f1 == f2 == path and float(s1) < 0.3 and boundary - 0.4 < float(e1) <= boundary + 0.2
    assert restart - 0.3 <= float(s2) < restart + 0.4 and float(e2) > float(s2) + 1.0
    # the same utterance twice (cut at slightly different points): nearly the same answer
    assert abs(float(p1.removeprefix("p_female=")) - float(p2.removeprefix("p_female="))) < 0.1


@pytest.mark.parametrize("segments", [False, True])
def test_every_format_parses(tmp_path, model_dir, utterance, segments, capsys):  # noqa: F811
    path, _, _ = _speech_pause_speech(tmp_path, utterance)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    args = ["predict", path, str(silent), "--model-dir", str(model_dir), "--jobs", "1"] + (
        ["--segments"] if segments else []
    )
    n_rows = 3 if segments else 2
    results = {}
    for fmt in ("tsv", "csv", "json"):
        assert main(args + ["--format", fmt]) == EXIT_NO_SPEECH  # the silent file
        results[fmt] = capsys.readouterr().out
    tsv = [line.split("\t") for line in results["tsv"].strip().splitlines()]
    rows = list(csv.DictReader(io.StringIO(results["csv"])))
    objs = json.loads(results["json"])
    assert len(tsv) == len(rows) == len(objs) == n_rows
    assert [r["answer"] for r in rows] == [o["answer"] for o in objs]
    assert objs[-1] == {**objs[-1], "answer": "no speech", "p_female": None} and rows[-1]["p_female"] == ""
    assert tsv[-1] == [str(silent), "no speech"]
    for row, obj in zip(rows[:-1], objs[:-1]):
        assert obj["answer"] in ("female", "male") and 0 <= obj["p_female"] <= 1
        assert float(row["start_s"]) == obj["start_s"] < obj["end_s"] == float(row["end_s"])
        assert abs(float(row["p_female"]) - obj["p_female"]) < 1e-4


def test_warns_once_for_a_model_trained_on_generated_speech(tmp_path, model_dir, utterance, capsys):  # noqa: F811
    y, sr, _ = utterance
    files = []
    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", y, sr)
        files.append(str(tmp_path / f"{i}.wav"))
    args = ["predict", *files, "--model-dir", str(model_dir), "--jobs", "1", "--progress", "off"]
    main(args)
    assert capsys.readouterr().err == ""  # the fixture's card: a folder corpus
    _card(model_dir, data={"corpus": "synthetic", "generated": True})
    main(args)
    err = capsys.readouterr().err.splitlines()
    assert err == [SYNTHETIC_WARNING]
    assert "dvc exp run -S corpus=libritts -S data.libritts.train_subset=dev-clean" in err[0]
    # every param the folder command needs (issue 18)
    assert "-S corpus=folder -S data.folder.manifest=FILE.csv -S data.folder.recordings=FOLDER" in err[0]


def test_progress_bar_on_stderr_only(tmp_path, model_dir, utterance, capsys):  # noqa: F811
    y, sr, _ = utterance
    sf.write(tmp_path / "a.wav", y, sr)
    main(
        [
            "predict",
            str(tmp_path / "a.wav"),
            str(tmp_path / "a.wav"),
            "--model-dir",
            str(model_dir),
            "--jobs",
            "1",
            "--progress",
            "on",
        ]
    )
    out, err = capsys.readouterr()
    assert "/2 [" in err and len(out.strip().splitlines()) == 2  # the bar (cleared when done) on stderr only
    assert "/2 [" not in out


def test_a_long_recording_is_answered_from_its_segments(tmp_path, model_dir, utterance, capsys):  # noqa: F811
    path, _, _ = _speech_pause_speech(tmp_path, utterance)  # ~5.2 s
    card = json.loads((model_dir / "model.json").read_text())
    _card(model_dir, predict={**card["predict"], "max_whole_s": 3.0})
    assert (
        main(["predict", path, "--segments", "--format", "json", "--model-dir", str(model_dir), "--jobs", "1"])
        == EXIT_OK
    )
    segments = json.loads(capsys.readouterr().out)
    assert main(["predict", path, "--format", "json", "--model-dir", str(model_dir), "--jobs", "1"]) == EXIT_OK
    [whole] = json.loads(capsys.readouterr().out)
    lengths = [s["end_s"] - s["start_s"] for s in segments]
    expected = sum(s["p_female"] * n for s, n in zip(segments, lengths)) / sum(lengths)
    assert len(segments) == 2 and whole["p_female"] == pytest.approx(expected, abs=1e-4)  # 4 decimals
    assert whole["start_s"] == 0.0 and whole["end_s"] > segments[-1]["end_s"] - 0.01


def test_segments_longer_than_max_whole_s_are_cut_into_pieces():
    from voicegender.inference import _pieces

    assert list(_pieces([(0.0, 1.0), (2.0, 7.0)], 2.0)) == [(0.0, 1.0), (2.0, 3.667), (3.667, 5.333), (5.333, 7.0)]


@pytest.mark.slow  # the reverberant recording predicted twice end to end: > 3 s
def test_speech_in_an_echoing_room_is_answered_whole_and_in_segments(tmp_path, model_dir, utterance, capsys):  # noqa: F811
    from voicegender.audio.degrade import reverberate, room_impulse_response

    y, sr, _ = utterance
    wet, _ = reverberate(y, sr, room_impulse_response(sr, 1.0, 0, 1))
    sf.write(tmp_path / "room.wav", wet, sr)
    for flags in ([], ["--segments"]):
        assert main(["predict", str(tmp_path / "room.wav"), "--model-dir", str(model_dir), *flags]) == EXIT_OK
        out = capsys.readouterr().out
        assert "no speech" not in out and ("female" in out or "male" in out)
