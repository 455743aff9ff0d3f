"""tune.gpus_per_trial and features.encoder_device: GPU shares, validated before any work."""

import pytest
import yaml

from voicegender.params import ParamError, validate_params
from voicegender.models.tuning import resolve_gpus_per_trial

from test_params import ROOT


@pytest.mark.parametrize(
    "value, cpus_per_trial, n_cpus, n_gpus, expected",
    [
        ("auto", 1.0, 2, 0, 0.0),  # no GPU: CPU-only trials
        ("auto", 1.0, 2, 1, 0.5),  # two trials at once share the one GPU
        ("auto", 0.5, 8, 1, 1 / 16),
        ("auto", 1.0, 4, 8, 2.0),  # more GPUs than trials: whole GPUs each
        ("auto", 1.0, 2, 3, 1.0),
        (0, 1.0, 2, 1, 0.0),  # explicitly CPU only
        (0.25, 1.0, 2, 1, 0.25),
    ],
)
def test_gpu_share_per_trial(value, cpus_per_trial, n_cpus, n_gpus, expected):
    assert resolve_gpus_per_trial(value, cpus_per_trial, n_cpus, n_gpus) == pytest.approx(expected)


def test_asking_for_a_gpu_without_one_fails_naming_the_key():
    with pytest.raises(ValueError, match="tune.gpus_per_trial"):
        resolve_gpus_per_trial(0.5, 1.0, 2, 0)


@pytest.mark.parametrize(
    "key, value", [("tune.gpus_per_trial", -0.5), ("tune.gpus_per_trial", "half"), ("features.encoder_device", "gpu")]
)
def test_bad_gpu_settings_name_their_key(key, value):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    section, name = key.split(".")
    params[section][name] = value
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        validate_params(params)


def test_a_search_trains_on_the_gpu_when_given_one():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import numpy as np

    from voicegender.models.tuning import run_search

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 8)).astype(np.float32), (np.arange(64) % 2).astype(np.float32)
    from voicegender.params import ModelSettings, SpaceEntry
    from voicegender.models.tuning import TrialSettings
    from test_tuning import settings

    result = run_search(
        X,
        y,
        X,
        y,
        space={"lr": SpaceEntry(type="choice", values=[1.0e-2])},
        fixed=TrialSettings(
            model=ModelSettings(name="linear"),
            optimizer="adam",
            weight_decay=0.0,
            seed=0,
            epochs=1,
            batch_size=16,
            patience=None,
            device="auto",
        ),
        num_samples=1,
        **settings(gpus_per_trial="auto", seed=0),
        log=lambda m: None,
    )
    assert result["best"]["error"] is None
