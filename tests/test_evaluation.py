import numpy as np
import pytest

from voicegender.evaluation.metrics import bootstrap_ci, choose_threshold, speaker_metrics, utterance_metrics


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
    assert choose_threshold(y, np.array([0.9, 0.8, 0.1, 0.2])) == 0.5  # 0.5 already separates: kept
    # all below 0.5 but separable: the midpoint between the top male (0.2) and the lowest female (0.42)
    assert choose_threshold(y, np.array([0.45, 0.42, 0.1, 0.2])) == pytest.approx(0.31)
    # 0.8 (between 0.7 and 0.9) ties 0.5 at one error: a tie keeps 0.5
    assert choose_threshold(y, np.array([0.9, 0.6, 0.7, 0.1])) == 0.5


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(20).astype(str), 5)
    y = np.repeat((np.arange(20) % 2).astype(float), 5)
    proba = np.clip(y * 0.6 + rng.uniform(0, 0.4, 100), 0, 1)
    ci = bootstrap_ci(speakers, y, proba, 0.5, n_resamples=200, seed=1)
    acc = utterance_metrics(y, proba)["accuracy"]
    assert ci["accuracy"][0] <= acc <= ci["accuracy"][1]
    assert ci == bootstrap_ci(speakers, y, proba, 0.5, n_resamples=200, seed=1)


from sklearn.metrics import balanced_accuracy_score  # noqa: E402

from voicegender.evaluation.metrics import (  # noqa: E402
    calibration_table,
    confusion_counts,
    evaluate_split,
    expected_calibration_error,
    speaker_metrics as _speaker_metrics,
)


def test_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=120) < 0.3).astype(float)
    proba = np.clip(0.25 * y + rng.uniform(0, 0.6, 120), 0, 1)  # shifted low: 0.5 is a poor threshold
    t = choose_threshold(y, proba)
    brute = max(balanced_accuracy_score(y, proba >= c) for c in np.unique(proba))
    assert balanced_accuracy_score(y, proba >= t) == pytest.approx(brute)
    assert choose_threshold(np.ones(4), np.full(4, 0.2)) == 0.5  # one class: nothing to choose


def test_tied_speaker_vote_is_settled_by_mean_probability_not_by_class():
    speakers = np.array(["f", "f", "m", "m"])
    y = np.array([1, 1, 0, 0], dtype=float)
    proba = np.array([0.9, 0.3, 0.45, 0.8])  # f: vote 1-1, mean 0.6 -> female; m: 1-1, mean 0.625 -> female
    s = _speaker_metrics(speakers, y, proba)
    assert s["speaker_accuracy"] == 0.5 and s["speaker_accuracy_mean_proba"] == 0.5


def test_bootstrap_matches_a_naive_resampling():
    """The vectorised bootstrap equals recomputing the metrics on explicitly resampled speakers."""
    rng = np.random.default_rng(4)
    speakers = np.repeat(np.arange(12).astype(str), 3)
    y = np.repeat((np.arange(12) % 2).astype(float), 3)
    proba = np.clip(0.3 * y + rng.uniform(0, 0.7, 36), 0, 1)
    ci = bootstrap_ci(speakers, y, proba, 0.5, n_resamples=50, seed=7)
    draws_rng = np.random.default_rng(7)
    ids = np.unique(speakers)
    accs, spk_accs = [], []
    for _ in range(50):
        pick = draws_rng.integers(0, len(ids), len(ids))
        rows = np.concatenate([np.flatnonzero(speakers == ids[k]) for k in pick])
        relabel = np.concatenate([np.full(3, j) for j in range(len(pick))]).astype(str)
        accs.append(utterance_metrics(y[rows], proba[rows])["accuracy"])
        spk_accs.append(_speaker_metrics(relabel, y[rows], proba[rows])["speaker_accuracy"])
    assert ci["accuracy"] == pytest.approx(list(np.quantile(accs, [0.025, 0.975])))
    assert ci["speaker_accuracy"] == pytest.approx(list(np.quantile(spk_accs, [0.025, 0.975])))
    assert set(ci) >= {"accuracy", "balanced_accuracy", "roc_auc", "f1", "speaker_accuracy"}


def test_calibration_confusion_and_split_summary():
    y = np.array([1, 1, 0, 0, 1], dtype=float)
    proba = np.array([1.0, 0.85, 0.05, 0.15, 0.4])
    table = calibration_table(y, proba, 10)
    assert sum(r["count"] for r in table) == 5 and table[-1]["mean_predicted"] == 1.0  # p = 1 is binned
    assert 0 <= expected_calibration_error(y, proba, 10) <= 1
    assert confusion_counts(y, proba).tolist() == [[2, 1], [0, 2]]
    m = evaluate_split(np.array(list("aabbc")), y, proba, 0.5)
    assert m["n_speakers"] == 3 and m["n_utterances"] == 5
    assert m["majority_class_accuracy"] == pytest.approx(0.6)
    assert m["per_class"]["female"]["support"] == 3


def test_weighted_auc_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    from voicegender.evaluation.metrics import _weighted_auc

    rng = np.random.default_rng(5)
    y = (rng.uniform(size=40) < 0.5).astype(float)
    proba = np.round(rng.uniform(size=40), 1)  # many ties
    w = rng.integers(0, 3, size=(3, 40)).astype(float)
    expected = [roc_auc_score(y, proba, sample_weight=row) for row in w]
    assert _weighted_auc(y, proba, w) == pytest.approx(expected)


def test_the_evaluation_report_and_the_speaker_table():
    from voicegender.evaluation.metrics import speaker_table, evaluation_report

    speakers = np.array(["a", "a", "b", "b", "c"])
    y = np.array([1, 1, 0, 0, 1])
    proba = np.array([0.9, 0.4, 0.2, 0.7, 0.8])
    report = evaluation_report(speakers, y, proba, 0.5, val=(speakers, y, proba), n_bins=4, n_resamples=20, seed=0)
    assert report["threshold"] == 0.5 and report["accuracy"] == pytest.approx(3 / 5)
    assert report["at_threshold_0.5"]["accuracy"] == report["accuracy"]
    assert set(report["ci95"]) >= {"accuracy", "balanced_accuracy"} and report["val"]["n_speakers"] == 3
    rows = speaker_table(speakers, y, proba, 0.5)
    assert [(r["speaker"], r["sex"], r["accuracy"]) for r in rows] == [
        ("a", "F", 0.5),
        ("b", "M", 0.5),
        ("c", "F", 1.0),
    ]
