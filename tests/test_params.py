"""voicegender.params: the schema of params.yaml (types, bounds, choices, defaults, unknown keys)."""

from pathlib import Path

import pytest
import yaml

from voicegender.params import FeatureSettings, Params, ParamError, load_params, validate_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_committed_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params) and p.features.kind == "ge2e" and p.tune.asha.grace_period == 1


def _leaves(node, prefix=""):
    """Every dotted key of a params mapping with its value (tune.space's entries as a whole)."""
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and key != "tune.space" and key != "data.libritts.checksums":
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def _get(node, key):
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def test_every_key_has_a_default_equal_to_params_yaml(params):
    """The schema declares each key of params.yaml once, and its default is params.yaml's value:
    an empty params.yaml means the committed one."""
    defaults = Params().model_dump(mode="json", exclude_none=False)
    for key, value in _leaves(params):
        if key == "tune.space":
            value = {n: {"low": None, "high": None, "values": None, **d} for n, d in value.items()}
        assert _get(defaults, key) == value, key
    assert validate_params({}) == load_params(ROOT / "params.yaml")


def _set(params, key, value):
    node = params
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    node[last] = value


@pytest.mark.parametrize(
    "key, value",
    [
        ("lr", -1.0),
        ("lr", "1e-3"),
        ("batch_size", 0),
        ("batch_size", 1.5),
        ("corpus", "nonsense"),
        ("epochs", -3),
        ("epochs", True),
        ("data.seed", 1.5),
        ("train.seed", "x"),
        ("device", "tpu"),
        ("data.val_fraction", 1.0),
        ("data.max_per_speaker", 0),
        ("data.max_per_speaker", "all"),
        ("model.name", "resnet"),
        ("model.dropout", 1.0),
        ("model.channels", []),
        ("model.channels", [8, -1]),
        ("tune.num_samples", 0),
        ("train.optimizer", "rmsprop"),
        ("train.standardize", 1),
        ("train.patience", 0),
        ("data.libritts.base_url", "ftp://x"),
        ("data.libritts.checksums", {"test-clean": "abc"}),
        ("data.synthetic.train_speakers", 3),
        ("data.synthetic.female_f0_hz", [260.0, 150.0]),
        ("data.synthetic.accents", []),
        ("features.kind", "spectrogram"),
        ("features.sample_rate", "22050"),
        ("features.n_fft", 2048.0),
        ("features.hop_length", True),
        ("features.n_jobs", 0),
        ("features.target_dbfs", 3.0),
        ("features.augment.copies", -1),
        ("features.augment.tilt", [-1.0, 0.5]),
        ("predict.min_speech_s", -1.0),
        ("predict.min_speech_s", "5e-1"),
        ("predict.vad_threshold", 1.0),
        ("predict.vad_neg_threshold", 0.9),
        ("predict.min_silence_s", -1.0),
        ("predict.pad_s", None),
        ("evaluate.calibration_bins", 1),
        ("baselines.models", ["svm"]),
        ("baselines.n_jobs", 0),
        ("baselines.mlp.hidden", [0]),
        ("baselines.random_forest.max_depth", 0),
        ("tune.gpus_per_trial", "half"),
        ("tune.metric", "loss"),
        ("tune.asha.reduction_factor", 1.0),
    ],
)
def test_a_bad_value_names_its_key(params, key, value):
    _set(params, key, value)
    with pytest.raises(ParamError) as err:
        validate_params(params)
    assert f"\n  {key}: " in str(err.value) or f"\n  {key}." in str(err.value), str(err.value)


def test_the_message_says_what_is_wrong_in_todays_words(params):
    params["batch_size"], params["lr"] = 0, "1e-3"
    with pytest.raises(ParamError) as err:
        validate_params(params)
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid params:"
    assert "  batch_size: must be `tuned` or a positive integer, got 0" in lines
    assert (
        "  lr: must be `tuned` or a positive number (write floats like 1.0e-3: YAML reads 1e-3 as a string), "
        "got '1e-3'" in lines
    )


@pytest.mark.parametrize(
    "key",
    [
        "colour",
        "features.n_mel",
        "features.augment.loudness",
        "tune.asha.brackets",
        "baselines.mlp.alpah",
        "data.synthetic.femal_f0_hz",
    ],
)
def test_an_unknown_key_is_refused(params, key):
    _set(params, key, 1)
    with pytest.raises(ParamError, match=f"{key.replace('.', '[.]')}: not a known key"):
        validate_params(params)


def test_tuned_is_accepted_for_lr_and_batch_size(params):
    params["lr"], params["batch_size"] = "tuned", "tuned"
    validate_params(params)
    params["lr"], params["batch_size"] = 3.0e-4, 16
    p = validate_params(params)
    assert (p.lr, p.batch_size) == (3.0e-4, 16)


def test_every_error_is_listed_at_once(params):
    params["lr"], params["epochs"] = -1.0, 0
    with pytest.raises(ParamError) as err:
        validate_params(params)
    assert "lr" in str(err.value) and "epochs" in str(err.value)


def test_a_missing_key_takes_the_schema_default(params):
    del params["tune"]["num_samples"]
    del params["features"]["augment"]
    p = validate_params(params)
    assert p.tune.num_samples == 20 and p.features.augment.copies == 1


def test_folder_corpus_needs_a_manifest(params):
    params["corpus"] = "folder"
    with pytest.raises(ParamError, match="data.folder.manifest"):
        validate_params(params)


def test_cross_key_rules_name_the_key(params):
    params["features"]["kind"], params["features"]["n_mfcc"] = "mfcc_stats", 200
    params["tune"]["mode"] = "max"
    with pytest.raises(ParamError) as err:
        validate_params(params)
    assert "features.n_mfcc: must be <= features.n_mels" in str(err.value)
    assert "tune.mode: val_loss is minimised" in str(err.value)


def test_bad_search_space_is_named(params):
    params["tune"]["space"]["lr"] = {"type": "loguniform", "low": 0.0, "high": 1.0e-2}
    with pytest.raises(ParamError, match="tune.space.lr"):
        validate_params(params)
    params["tune"]["space"]["lr"] = {"type": "loguniform", "low": "1e-5", "high": 1.0e-2}
    with pytest.raises(ParamError, match="tune.space.lr.low: must be a number .write floats like 1.0e-3"):
        validate_params(params)


def test_the_old_single_seed_is_refused_naming_its_replacements(params):
    params["seed"] = 42
    with pytest.raises(ParamError, match="seed: replaced by data.seed .* train.seed"):
        validate_params(params)


def test_settings_round_trip_through_a_model_card(params):
    """models/model.json keeps settings as model_dump(mode="json"): read back, they are the same."""
    features = load_params(ROOT / "params.yaml").features
    assert FeatureSettings.model_validate(features.model_dump(mode="json")) == features
    assert features.model_dump(mode="json") == params["features"]  # the card's JSON layout is params.yaml's


def test_the_tune_cluster_keys_moved_to_ray():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params["ray"]) == {"address", "storage", "connect_timeout_s"}
    assert validate_params(params).ray.connect_timeout_s > 0
    params["tune"].update(address="10.0.0.5:6379", storage="s3://b/v")
    with pytest.raises(ParamError) as err:
        validate_params(params)
    message = str(err.value)
    assert "tune.address: moved to ray.address" in message and "tune.storage: moved to ray.storage" in message
    assert "Traceback" not in message and len(message.splitlines()) <= 3


@pytest.mark.parametrize(
    "override",
    [
        "lr=0.0003",
        "batch_size=8",
        "train.seed=7",
        "features.kind=log_mel_stats",
        "data.folder.manifest=/data/voices/manifest.csv",
        "baselines.random_forest.max_depth=5",
        "ray.address=10.0.0.5:6379",
    ],
)
def test_dvc_exp_run_set_param_changes_exactly_one_line(tmp_path, override):
    """params.yaml is kept in the layout DVC writes back: `dvc exp run -S key=value` rewrites the
    whole file (ruamel round trip: flow lists exploded, `null` emptied, comments of replaced lists
    lost), so a file in any other layout gets a diff of dozens of lines for one changed value.
    Applied here with the very function `dvc exp run -S` calls."""
    from dvc.utils.hydra import apply_overrides

    before = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(before)
    apply_overrides(path, [override])
    old, new = before.splitlines(), path.read_text().splitlines()
    assert len(old) == len(new), f"-S {override} changed the number of lines of params.yaml"
    changed = [(a, b) for a, b in zip(old, new) if a != b]
    value = override.rsplit("=", 1)[1]
    assert len(changed) == 1 and value in changed[0][1], changed
    assert yaml.safe_load(path.read_text()) is not None


def test_params_yaml_empty_values_read_as_none():
    """DVC writes `null` as an empty value; the schema reads both the same (None)."""
    p = load_params(ROOT / "params.yaml")
    assert p.data.folder.manifest is None and p.ray.address is None and p.data.libritts.local_dir is None


def test_a_rule_is_told_by_the_key_s_type(params):
    """Annotated types carry their rule once: ranges, positive numbers, bounded numbers, choices,
    and `or null` for optional keys; n_jobs = 0 is one line, from one check."""
    _set(params, "data.synthetic.rate_wpm", [200, 100])
    _set(params, "features.augment.tilt", [-1.0, 0.5])
    _set(params, "features.augment.rt60_s", [0.0, 0.5])
    _set(params, "features.n_jobs", 0)
    _set(params, "features.ge2e_rate", 0.1)
    _set(params, "train.patience", 0)
    _set(params, "tune.search", "grid")
    with pytest.raises(ParamError) as err:
        validate_params(params)
    lines = str(err.value).splitlines()[1:]
    assert lines == [
        "  data.synthetic.rate_wpm: must be [low, high] integers with low <= high, got [200, 100]",
        "  features.ge2e_rate: must be a number in [0.625, 50], got 0.1",
        "  features.n_jobs: must be a non-zero integer (-1 = all cores), got 0",
        "  features.augment.rt60_s: must be [low, high] numbers with low <= high and low > 0, got [0.0, 0.5]",
        "  features.augment.tilt: must be [low, high] numbers with low <= high, inside (-1, 1), got [-1.0, 0.5]",
        "  train.patience: must be a positive integer or null, got 0",
        "  tune.search: must be one of random, tpe, got 'grid'",
    ]


def test_condition_kinds_are_the_condition_classes(params):
    """CONDITION_KINDS (which the error message lists) is what the condition classes accept."""
    from voicegender.params import CONDITION_KINDS, RobustnessSettings

    assert set(CONDITION_KINDS) == {"clean", "telephone", "noise", "babble", "room", "mp3", "level"}
    conditions = {kind: {"kind": kind} for kind in CONDITION_KINDS}
    assert RobustnessSettings.model_validate({"conditions": conditions}).conditions.keys() == conditions.keys()
    _set(params, "robustness.conditions", {"x": {"kind": "wah"}})
    with pytest.raises(ParamError, match="robustness.conditions.x: .* a kind among " + ", ".join(CONDITION_KINDS)):
        validate_params(params)


def test_a_bad_value_inside_a_condition_names_its_nested_key(params):
    """A condition's own keys are named through its name (the union's kind tag is no key), with their rule."""
    _set(params, "robustness.conditions.room.rt60_s", 5.0)
    _set(params, "robustness.conditions.phone", {"kind": "telephone", "low_hz": 4000.0})
    _set(params, "robustness.conditions.noise_10db.colour", "pink")
    with pytest.raises(ParamError) as err:
        validate_params(params)
    lines = str(err.value).splitlines()[1:]
    assert lines == [
        "  robustness.conditions.noise_10db.colour: not a known key (known: kind, snr_db)",
        "  robustness.conditions.room.rt60_s: must be a number in (0, 3], got 5.0",
        "  robustness.conditions.phone.high_hz: must exceed low_hz (4000.0), got 3400.0",
    ]
