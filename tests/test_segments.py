"""predict --segments follows the voice (issue 23): the Viterbi pass, dialogues without pauses,
--summary, --jobs, directories, and every input a row (issue 18)."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SHARED_DATA, needs_shared
from feature_settings import fs
from test_cli import PREDICT
from voicegender.cli import EXIT_FAILED, EXIT_OK, main
from voicegender.inference import frame_log_odds, runs, viterbi_two_state
from voicegender.models.networks import build_model, save_trained
from voicegender.params import ModelSettings, PredictSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 16000
FEMALE, MALE = (10010, 10002), (10005, 10007)  # eSpeak speakers of seed 3: F0 248, 201 Hz; 109, 91 Hz


# ----------------------------------------------------------------------------- the smoothing


def test_viterbi_follows_a_change_and_ignores_a_short_blip():
    rng = np.random.default_rng(0)
    lo = np.concatenate([np.full(300, 2.0), np.full(300, -2.0)]) + 0.5 * rng.standard_normal(600)
    lo[100:105] = -4.0  # 50 ms of the other sex: cheaper to keep than two switches at penalty 30
    labels = viterbi_two_state(lo, 30.0)
    assert runs(labels) == [(0, 300, True), (300, 600, False)]
    assert runs(viterbi_two_state(lo, 0.0))[1] == (100, 105, False)  # no penalty: every sign change


def test_viterbi_edge_cases_and_interpolation():
    assert viterbi_two_state(np.zeros(0), 1.0).size == 0
    assert runs(viterbi_two_state(np.full(5, -1.0), 3.0)) == [(0, 5, False)]
    lo = frame_log_odds(np.array([0.8, 0.9]), np.array([-10.0, 10.0]), 1.0, 4.0)
    assert lo.size == 100 and lo[0] == -4.0 and lo[-1] == 4.0  # clipped, then constant beyond the windows
    assert lo[84] == pytest.approx(-0.4) and lo[85] == pytest.approx(0.4)  # frame centres 0.845, 0.855 s


# ----------------------------------------------------------------------------- dialogues


@pytest.fixture
def pitch_model_dir(tmp_path):
    """A hand-set model: pitch_stats features, P(female) = sigmoid((median F0 - 150 Hz) / 10 Hz):
    knows the sexes of the eSpeak voices below without training, so the test checks segmentation."""
    features = fs({"kind": "pitch_stats", "sample_rate": 16000, "hop_length": 160, "fmin_f0": 60.0, "fmax_f0": 400.0})
    model = build_model(ModelSettings(name="linear"), (6,), seed=0)
    state = model.state_dict()
    weight = torch.zeros_like(state["head.1.weight"])
    weight[0, 0] = 0.1
    state.update({"head.1.weight": weight, "head.1.bias": torch.tensor([-15.0])})
    d = tmp_path / "pitch-model"
    save_trained(
        d,
        state,
        model=ModelSettings(name="linear"),
        features=features,
        predict=PredictSettings.model_validate(PREDICT),
        input_shape=(6,),
        standardized=False,
        threshold=0.5,
        data={"corpus": "folder", "generated": False},
    )
    return d


def _speech_only(y):
    from voicegender.params import PredictSettings
    from voicegender.audio.speech import speech_segments, vad_settings

    segs = speech_segments(y, RATE, **{**vad_settings(PredictSettings()), "pad_s": 0.0})
    return y[int(segs[0][0] * RATE) : int(segs[-1][1] * RATE)]


def _dialogue(path, turns, gaps):
    """Turns ``[(samples at RATE, sex)]`` joined by ``gaps`` (s) of faint noise; returns the
    truth: each turn's (start, end, sex)."""
    rng = np.random.default_rng(1)
    parts, truth, t = [], [], 0.0
    for i, (y, sex) in enumerate(turns):
        if i:
            parts.append((1e-4 * rng.standard_normal(int(gaps[i - 1] * RATE))).astype(np.float32))
            t += parts[-1].size / RATE
        parts.append(y)
        truth.append((t, t + y.size / RATE, sex))
        t += y.size / RATE
    sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return truth


@pytest.fixture(scope="module")
def espeak_turns():
    from voicegender.audio.spectral import resample
    from voicegender.corpora.synth import corpus_speakers, render_utterance

    speakers = {s.speaker_id: s for s in corpus_speakers(train_speakers=12, test_speakers=0, seed=3)}
    out = []
    for i, sid in enumerate([FEMALE[0], MALE[0], FEMALE[1], MALE[1], FEMALE[0]]):
        _, pcm = render_utterance(speakers[sid], i, seed=3)
        out.append((_speech_only(resample(pcm.astype(np.float32) / 32768.0, 24000, RATE)), speakers[sid].sex))
    return out


def _changes(rows):
    return [(a["end_s"] + b["start_s"]) / 2 for a, b in zip(rows[:-1], rows[1:]) if a["answer"] != b["answer"]]


def _check_boundaries(rows, truth):
    true = [(a[1] + b[0]) / 2 for a, b in zip(truth[:-1], truth[1:]) if a[2] != b[2]]
    predicted = _changes(rows)
    assert len(predicted) == len(true), (predicted, true)
    for p, t in zip(predicted, true):
        assert abs(p - t) <= 0.5, (predicted, true)


def test_segments_split_where_the_sex_changes_without_a_pause(tmp_path, pitch_model_dir, espeak_turns, capsys):
    path = tmp_path / "dialogue.wav"
    truth = _dialogue(path, espeak_turns, gaps=[0.0, 0.1, 0.2, 0.0])  # all shorter than min_silence_s
    args = ["predict", str(path), "--segments", "--format", "json", "--model-dir", str(pitch_model_dir)]
    assert main(args + ["--jobs", "1"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    _check_boundaries(rows, truth)
    # the same sex throughout each segment: every truth frame inside a segment of its sex, bar 0.5 s a side
    for start, end, sex in truth:
        covering = [r for r in rows if r["start_s"] < end - 0.5 and r["end_s"] > start + 0.5]
        assert {r["answer"][0].upper() for r in covering} == {sex}


def test_whole_file_says_mixed_and_summary_gives_time_per_sex(tmp_path, pitch_model_dir, espeak_turns, capsys):
    dialogue, single = tmp_path / "dialogue.wav", tmp_path / "single.wav"
    truth = _dialogue(dialogue, espeak_turns, gaps=[0.1, 0.1, 0.1, 0.1])
    _dialogue(single, [espeak_turns[0]], gaps=[])
    common = ["--model-dir", str(pitch_model_dir), "--jobs", "1"]
    assert main(["predict", str(dialogue), str(single), "--format", "json", *common]) == EXIT_OK
    mixed, alone = json.loads(capsys.readouterr().out)
    assert mixed["mixed"] is True and alone["mixed"] is False
    female = sum(e - s for s, e, sex in truth if sex == "F")
    assert mixed["female_s"] == pytest.approx(female, abs=1.0) and mixed["male_s"] > 2.0
    assert main(["predict", str(dialogue), "--model-dir", str(pitch_model_dir), "--jobs", "1"]) == EXIT_OK
    assert "\tmixed: female_s=" in capsys.readouterr().out  # tsv says so too

    outputs = {}
    for fmt in ("tsv", "csv", "json"):
        assert main(["predict", str(dialogue), str(single), "--summary", "--format", fmt, *common]) == EXIT_OK
        outputs[fmt] = capsys.readouterr().out
    objs = json.loads(outputs["json"])
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    tsv = [line.split("\t") for line in outputs["tsv"].strip().splitlines()]
    assert [o["file"] for o in objs] == [str(dialogue), str(single), None]  # per file, then the total
    assert [r["file"] for r in rows] == [str(dialogue), str(single), ""] and tsv[-1][0] == "(total)"
    assert objs[0]["female_s"] == mixed["female_s"] and objs[0]["male_s"] == mixed["male_s"]
    assert objs[2]["female_s"] == pytest.approx(objs[0]["female_s"] + objs[1]["female_s"], abs=2e-3)
    for o, r, t in zip(objs, rows, tsv):  # the same numbers, to the same precision, in every format
        assert f"{o['female_s']:.3f}" == r["female_s"] and f"female_s={o['female_s']:.3f}" in t
        assert f"{o['male_s']:.3f}" == r["male_s"] and f"male_s={o['male_s']:.3f}" in t


@pytest.mark.slow
def test_jobs_do_not_change_the_answers(tmp_path, pitch_model_dir, espeak_turns, capsys):
    for i in range(3):
        _dialogue(tmp_path / f"d{i}.wav", espeak_turns[i:] + espeak_turns[:i], gaps=[0.1] * 4)
    card = json.loads((pitch_model_dir / "model.json").read_text())
    card["predict"]["max_whole_s"] = 4.0  # long recordings are cut into pieces shared among workers
    (pitch_model_dir / "model.json").write_text(json.dumps(card))
    outs = []
    for jobs in ("1", "2"):
        for mode in ([], ["--segments"]):
            args = ["predict", str(tmp_path), *mode, "--format", "csv", "--model-dir", str(pitch_model_dir)]
            assert main([*args, "--jobs", jobs]) == EXIT_OK
            outs.append(capsys.readouterr().out)
    assert outs[:2] == outs[2:] and len(outs[1].splitlines()) > 4


# ----------------------------------------------------------------------------- inputs


def test_directories_expand_and_every_input_gets_a_row(tmp_path, pitch_model_dir, espeak_turns, capsys):
    folder = tmp_path / "in"
    (folder / "b").mkdir(parents=True)
    y = espeak_turns[0][0]
    sf.write(folder / "b" / "two.flac", y, RATE, format="FLAC")
    sf.write(folder / "one.mp3", y, RATE, format="MP3")  # any format libsndfile reads
    sf.write(folder / "a.ogg", y, RATE, format="OGG", subtype="VORBIS")
    (folder / "notes.txt").write_text("not audio")  # not taken from a directory
    (folder / "broken.wav").write_bytes(b"RIFF....WAVE")
    missing = str(tmp_path / "missing.wav")
    for fmt in ("csv", "json", "tsv"):
        args = ["predict", str(folder), missing, "--format", fmt, "--model-dir", str(pitch_model_dir), "--jobs", "1"]
        assert main(args) == EXIT_FAILED
        out = capsys.readouterr().out
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(out)))
        elif fmt == "json":
            rows = json.loads(out)
        else:
            rows = [dict(zip(("file", "answer", "p_female"), line.split("\t"))) for line in out.splitlines()]
        names = [Path(r["file"]).relative_to(tmp_path).as_posix() for r in rows]
        assert names == ["in/a.ogg", "in/b/two.flac", "in/broken.wav", "in/one.mp3", "missing.wav"], fmt
        answers = [r["answer"] for r in rows]
        assert answers == ["female", "female", "error", "female", "error"], fmt
        if fmt != "tsv":
            assert all(r["error"] for r in rows if r["answer"] == "error")
            assert all(len(f"{float(r['p_female']):.4f}") >= len(str(r["p_female"])) for r in rows if r["p_female"])


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("voicegender ")


# ----------------------------------------------------------------------------- real voices


@pytest.mark.slow
@needs_shared(SHARED_DATA / "cross-corpus-dev" / "manifest.csv")
@needs_shared(SHARED_DATA / "librispeech-clean100-sample" / "manifest.csv")
def test_real_voices_dialogue_boundaries_within_half_a_second(tmp_path, capsys):
    """A ge2e linear probe fitted on 16 LibriSpeech sample speakers, then dialogues of
    cross-corpus voices (other corpora, languages, microphones) taking turns with 0-0.3 s pauses."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from dialogues import build_dialogues, load_manifest

    from voicegender.audio.decode import decode_audio
    from voicegender.features.kinds import compute_features

    features = fs({"kind": "ge2e"})
    sample = SHARED_DATA / "librispeech-clean100-sample"
    speakers = load_manifest(sample)
    chosen = [k for s in "FM" for k in sorted(k for k, v in speakers.items() if v[0] == s)[:8]]
    X = np.stack([compute_features(*decode_audio(speakers[k][1][0].read_bytes()), features) for k in chosen])
    y = np.array([speakers[k][0] == "F" for k in chosen], dtype=float)
    mean, std = X.mean(0), X.std(0) + 1e-3
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=2000).fit((X - mean) / std, y)
    model = build_model(ModelSettings(name="linear"), (256,), mean, std, seed=0)
    state = model.state_dict()
    state.update(
        {
            "model.head.1.weight": torch.tensor(clf.coef_, dtype=torch.float32),
            "model.head.1.bias": torch.tensor(clf.intercept_, dtype=torch.float32),
        }
    )
    d = tmp_path / "ge2e-model"
    save_trained(
        d,
        state,
        model=ModelSettings(name="linear"),
        features=features,
        predict=PredictSettings.model_validate(PREDICT),
        input_shape=(256,),
        standardized=True,
        threshold=0.5,
        data={"corpus": "folder", "generated": False},
    )
    dialogues = build_dialogues(SHARED_DATA / "cross-corpus-dev", 3, 5, tmp_path)
    args = ["predict", *[x["path"] for x in dialogues], "--segments", "--format", "json", "--model-dir", str(d)]
    assert main(args + ["--jobs", "1"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    for x in dialogues:
        mine = [r for r in rows if r["file"] == x["path"]]
        true = [(a[1] + b[0]) / 2 for a, b in zip(x["turns"][:-1], x["turns"][1:]) if a[2] != b[2]]
        predicted = _changes(mine)
        assert len(predicted) == len(true), (predicted, true)
        assert all(abs(p - t) <= 0.5 for p, t in zip(predicted, true)), (predicted, true)
