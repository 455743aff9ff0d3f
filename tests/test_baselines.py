from pathlib import Path

import numpy as np
import pytest
import yaml

from voicegender.evaluation.baselines import (
    BASELINES,
    CLASSIFIERS,
    fit_baseline,
    flatten,
    proba_female,
    run_baselines,
)
from voicegender.params import BaselineSettings, ParamError, validate_params

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["baselines"]
CONFIGS = {
    **DEFAULTS,
    "random_forest": {**DEFAULTS["random_forest"], "n_estimators": 30},
    "hist_gradient_boosting": {**DEFAULTS["hist_gradient_boosting"], "max_iter": 30},
    "mlp": {**DEFAULTS["mlp"], "hidden": [16], "max_iter": 300},
}
CONFIGS = BaselineSettings.model_validate(CONFIGS)


def _split(rng, n_speakers, per_speaker=4, shape=(12,)):
    """Speakers whose sex shifts the first feature: separable but noisy."""
    speakers = np.repeat([f"s{rng.integers(1e9)}" for _ in range(n_speakers)], per_speaker)
    y = np.repeat(np.arange(n_speakers) % 2, per_speaker).astype(np.float32)
    X = rng.normal(size=(len(y), *shape)).astype(np.float32)
    X.reshape(len(y), -1)[:, 0] += 3.0 * (2 * y - 1)
    return {"X": X, "y": y, "speakers": speakers}


def test_params_yaml_configures_every_baseline_and_a_wrong_key_is_named():
    assert set(DEFAULTS["models"]) == set(BASELINES) == set(CLASSIFIERS)
    for name in BASELINES:
        assert fit_baseline(name, CONFIGS, np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1]), seed=0, n_jobs=1)
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["baselines"]["mlp"]["alpah"] = 1.0  # misspelt: refused, not ignored (the schema's default would apply)
    with pytest.raises(ParamError, match="baselines.mlp.alpah: not a known key"):
        validate_params(params)


@pytest.mark.slow  # fits all four classifiers
def test_every_baseline_learns_a_separable_problem_and_reports_val_and_test():
    rng = np.random.default_rng(0)
    train, val, test = _split(rng, 40), _split(rng, 10), _split(rng, 10)
    out = run_baselines(BASELINES, CONFIGS, train, val, test, seed=1, n_jobs=1)
    assert set(out) == set(BASELINES)
    for name, r in out.items():
        for split in ("val", "test"):
            assert set(r[split]) == {"accuracy", "balanced_accuracy", "roc_auc", "f1", "speaker_accuracy"}
            assert r[split]["roc_auc"] > 0.9, (name, split, r[split])
        assert 0 <= r["threshold"] <= 1


def test_two_d_features_are_flattened_and_standardised_with_train_statistics():
    rng = np.random.default_rng(1)
    train = _split(rng, 20, shape=(4, 5))
    assert flatten(train["X"]).shape == (80, 20)
    est = fit_baseline("logistic", CONFIGS, train["X"] * 1000 + 7, train["y"], seed=0, n_jobs=1)
    scaler = est.steps[0][1]
    assert np.allclose(scaler.mean_, flatten(train["X"] * 1000 + 7).mean(axis=0), rtol=1e-4)


def test_seeded_baselines_are_reproducible():
    rng = np.random.default_rng(2)
    train, val = _split(rng, 20), _split(rng, 6)
    a = proba_female(fit_baseline("random_forest", CONFIGS, train["X"], train["y"], seed=3, n_jobs=1), val["X"])
    b = proba_female(fit_baseline("random_forest", CONFIGS, train["X"], train["y"], seed=3, n_jobs=1), val["X"])
    assert np.array_equal(a, b)
