from pathlib import Path

import pytest
import yaml

from voicegender.params import ParamError, load_params, validate_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_committed_params_are_valid():
    load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("key, value", [
    ("lr", -1.0), ("lr", "1e-3"), ("batch_size", 0), ("corpus", "nonsense"), ("epochs", -3),
    ("data.seed", 1.5), ("train.seed", "x"), ("device", "tpu"), ("data.val_fraction", 1.0), ("model.name", "resnet"),
    ("model.dropout", 1.0), ("tune.num_samples", 0), ("train.optimizer", "rmsprop"),
    ("data.libritts.base_url", "ftp://x"), ("features.kind", "spectrogram"),
    ("predict.min_speech_s", -1.0), ("predict.min_speech_s", "5e-1"), ("predict.vad_threshold", 1.0),
    ("predict.vad_neg_threshold", 0.9), ("predict.min_silence_s", -1.0), ("predict.pad_s", None),
])
def test_a_bad_value_names_its_key(params, key, value):
    node = params
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    with pytest.raises(ParamError) as err:
        validate_params(params)
    assert key in str(err.value)


def test_tuned_is_accepted_for_lr_and_batch_size(params):
    params["lr"], params["batch_size"] = "tuned", "tuned"
    validate_params(params)
    params["lr"], params["batch_size"] = 3.0e-4, 16
    validate_params(params)


def test_every_error_is_listed_at_once(params):
    params["lr"], params["epochs"] = -1.0, 0
    with pytest.raises(ParamError) as err:
        validate_params(params)
    assert "lr" in str(err.value) and "epochs" in str(err.value)


def test_missing_key_is_named(params):
    del params["tune"]["num_samples"]
    with pytest.raises(ParamError, match="tune.num_samples: missing"):
        validate_params(params)


def test_folder_corpus_needs_a_manifest(params):
    params["corpus"] = "folder"
    with pytest.raises(ParamError, match="data.folder.manifest"):
        validate_params(params)


def test_bad_search_space_is_named(params):
    params["tune"]["space"]["lr"] = {"type": "loguniform", "low": 0.0, "high": 1.0e-2}
    with pytest.raises(ParamError, match="tune.space.lr"):
        validate_params(params)


def test_the_old_single_seed_is_refused_naming_its_replacements(params):
    params["seed"] = 42
    with pytest.raises(ParamError, match="seed: replaced by data.seed .* train.seed"):
        validate_params(params)
