import numpy as np
import pytest

from voicegender.evaluation import bootstrap_ci, choose_threshold, speaker_metrics, utterance_metrics


def test_perfect_predictions():
    y = np.array([1, 1, 0, 0], dtype=float)
    m = utterance_metrics(y, np.array([0.9, 0.8, 0.1, 0.2]))
    assert m["accuracy"] == m["balanced_accuracy"] == m["roc_auc"] == m["f1"] == 1.0


def test_balanced_accuracy_is_not_fooled_by_the_majority_class():
    y = np.array([1] * 6 + [0] * 4, dtype=float)
    m = utterance_metrics(y, np.full(10, 0.9))  # always "female"
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["male"]["recall"] == 0.0


def test_speaker_majority_vote():
    speakers = np.array(["a", "a", "a", "b", "b"])
    y = np.array([1, 1, 1, 0, 0], dtype=float)
    proba = np.array([0.9, 0.8, 0.1, 0.7, 0.6])  # a: 2 of 3 right; b: both wrong
    s = speaker_metrics(speakers, y, proba)
    assert s["speaker_accuracy"] == 0.5


def test_threshold_is_moved_only_when_it_helps():
    y = np.array([1, 1, 0, 0], dtype=float)
    assert choose_threshold(y, np.array([0.9, 0.8, 0.1, 0.2])) == pytest.approx(0.5, abs=0.31)
    t = choose_threshold(y, np.array([0.45, 0.42, 0.1, 0.2]))  # all below 0.5, but separable
    assert 0.2 < t <= 0.42


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(20).astype(str), 5)
    y = np.repeat((np.arange(20) % 2).astype(float), 5)
    proba = np.clip(y * 0.6 + rng.uniform(0, 0.4, 100), 0, 1)
    ci = bootstrap_ci(speakers, y, proba, 0.5, n_resamples=200, seed=1)
    acc = utterance_metrics(y, proba)["accuracy"]
    assert ci["accuracy"][0] <= acc <= ci["accuracy"][1]
    assert ci == bootstrap_ci(speakers, y, proba, 0.5, n_resamples=200, seed=1)
