from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from voicegender.cli import main, predict_files
from feature_settings import fs
from voicegender.features.kinds import feature_shape
from voicegender.models.networks import build_model, load_trained, save_trained
from voicegender.params import ModelSettings, PredictSettings

FEATURES = {"kind": "log_mel_stats", "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 16, "n_mfcc": 8}
PREDICT = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["predict"]


@pytest.fixture
def model_dir(tmp_path):
    """A (untrained) model saved exactly as the train stage saves one."""
    shape = feature_shape(fs(FEATURES))
    model = build_model(ModelSettings(name="mlp", hidden=8), shape, np.zeros(shape), np.ones(shape), seed=0)
    d = tmp_path / "models"
    save_trained(
        d,
        model.state_dict(),
        model=ModelSettings(name="mlp", channels=[8], hidden=8),
        features=fs(FEATURES),
        predict=PredictSettings.model_validate(PREDICT),
        input_shape=shape,
        standardized=True,
        threshold=0.5,
        data={"corpus": "folder", "generated": False},
    )
    return d


def _speech(path, utterance, sr, fmt=None):
    """The generated utterance written at rate ``sr`` (wav, or ``fmt``)."""
    from voicegender.audio.spectral import resample

    y, rate, _ = utterance
    sf.write(path, resample(y, rate, sr), sr, format=fmt)
    return str(path)


def test_load_trained_round_trip(model_dir):
    model, card = load_trained(model_dir)
    assert not model.training and card["positive_class"] == "female"
    assert torch.equal(model.state_dict()["mean"], torch.zeros(feature_shape(fs(FEATURES))))


def test_predicts_wav_and_flac_at_any_rate_and_reports_bad_files(tmp_path, model_dir, utterance, capsys):
    wav = _speech(tmp_path / "a.wav", utterance, 24000)
    flac = _speech(tmp_path / "b.flac", utterance, 44100, "FLAC")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    missing = str(tmp_path / "missing.wav")
    code = main(["predict", wav, flac, missing, str(text), "--model-dir", str(model_dir), "--jobs", "1"])
    out, err = capsys.readouterr()
    assert code == 1  # some files failed ...
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert [line[0] for line in lines] == [wav, flac, missing, str(text)]  # ... one row per input, in order
    for _, sex, p in lines[:2]:  # ... and the others were still answered
        assert sex in ("female", "male") and 0 <= float(p.removeprefix("p_female=")) <= 1
    assert lines[2][1:] == ["error", "no such file"] and lines[3][1] == "error"
    assert lines[3][2].startswith("audio: not readable audio")
    assert "missing.wav\terror: no such file" in err  # and on stderr, for whoever reads the terminal
    assert "notes.wav\terror: audio: not readable audio" in err


def test_all_good_files_exit_zero_and_match_the_library(tmp_path, model_dir, utterance, capsys):
    wav = _speech(tmp_path / "a.wav", utterance, 16000)
    assert main(["predict", wav, "--model-dir", str(model_dir)]) == 0
    [r] = predict_files([wav], str(model_dir))
    assert f"p_female={r['p_female']:.4f}" in capsys.readouterr().out


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["predict", "x.wav", "--model-dir", str(tmp_path)]) == 2
    assert "model.json not found" in capsys.readouterr().err
