"""Classical baselines from scikit-learn on the same features and splits as the networks.

The report's own wish list: logistic regression, an MLP, a random forest and gradient boosting.
Every baseline is a pipeline ``StandardScaler -> classifier`` fitted on the train split only,
so the standardisation uses train statistics. 2-D features (log-mel patches) are flattened.
Labels: 1 = female, 0 = male.
"""

from __future__ import annotations

import time
import typing
from typing import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from voicegender.evaluation.metrics import choose_threshold, speaker_metrics, utterance_metrics
from voicegender.params import (
    BaselineName,
    BaselineSettings,
    HistGradientBoostingSettings,
    LogisticSettings,
    MLPBaselineSettings,
    RandomForestSettings,
)

#: the baselines, by name: the schema's choices (voicegender.params.BaselineName), dispatched on in make_baseline
BASELINES = typing.get_args(BaselineName)


def flatten(X: np.ndarray) -> np.ndarray:
    """(n, ...) -> (n, prod(...)) float32: sklearn wants one flat row per utterance."""
    X = np.asarray(X, dtype=np.float32)
    return X.reshape(len(X), -1)


def _logistic(c: LogisticSettings, seed: int, n_jobs: int) -> LogisticRegression:
    return LogisticRegression(C=float(c.C), max_iter=int(c.max_iter))


def _mlp(c: MLPBaselineSettings, seed: int, n_jobs: int) -> MLPClassifier:
    return MLPClassifier(
        hidden_layer_sizes=tuple(c.hidden),
        alpha=float(c.alpha),
        max_iter=int(c.max_iter),
        early_stopping=bool(c.early_stopping),
        random_state=seed,
    )


def _random_forest(c: RandomForestSettings, seed: int, n_jobs: int) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=int(c.n_estimators),
        max_depth=c.max_depth,
        min_samples_leaf=int(c.min_samples_leaf),
        n_jobs=n_jobs,
        random_state=seed,
    )


def _hist_gradient_boosting(c: HistGradientBoostingSettings, seed: int, n_jobs: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=int(c.max_iter),
        learning_rate=float(c.learning_rate),
        max_leaf_nodes=int(c.max_leaf_nodes),
        l2_regularization=float(c.l2_regularization),
        early_stopping=False,
        random_state=seed,
    )


#: the classifiers, by name (the schema's choices, voicegender.params.BaselineName): each built
#: from its settings (``baselines.<name>``), a seed and a number of cores
CLASSIFIERS: dict[str, Callable] = {
    "logistic": _logistic,
    "mlp": _mlp,
    "random_forest": _random_forest,
    "hist_gradient_boosting": _hist_gradient_boosting,
}


def make_baseline(name: str, settings: BaselineSettings, *, seed: int, n_jobs: int) -> Pipeline:
    """An unfitted ``StandardScaler -> classifier`` pipeline; ``settings.<name>`` holds every
    hyperparameter of the classifier (params.yaml's ``baselines.<name>``, defaults in the schema);
    ``seed``: ``train.seed``; ``n_jobs``: cores (positive) for the random forest."""
    return make_pipeline(StandardScaler(), CLASSIFIERS[name](getattr(settings, name), seed, n_jobs))


def fit_baseline(
    name: str, settings: BaselineSettings, X: np.ndarray, y: np.ndarray, *, seed: int, n_jobs: int
) -> Pipeline:
    """Fit baseline ``name`` on (X, y)."""
    return make_baseline(name, settings, seed=seed, n_jobs=n_jobs).fit(flatten(X), np.asarray(y).astype(int))


def proba_female(estimator: Pipeline, X: np.ndarray) -> np.ndarray:
    """P(female) for every row of ``X``."""
    p = estimator.predict_proba(flatten(X))
    return p[:, list(estimator.classes_).index(1)]


def split_scores(y: np.ndarray, proba: np.ndarray, speakers: np.ndarray, threshold: float) -> dict:
    """Accuracy, balanced accuracy, ROC AUC, female F1 and speaker accuracy of one split."""
    u = utterance_metrics(y, proba, threshold)
    s = speaker_metrics(speakers, y, proba, threshold)
    return {
        "accuracy": u["accuracy"],
        "balanced_accuracy": u["balanced_accuracy"],
        "roc_auc": u["roc_auc"],
        "f1": u["f1"],
        "speaker_accuracy": s["speaker_accuracy"],
    }


def run_baselines(
    names, settings: BaselineSettings, train: dict, val: dict, test: dict | None = None, *, seed: int, n_jobs: int
) -> dict:
    """Fit each baseline on ``train``, choose its threshold on ``val`` (max balanced accuracy,
    as the networks' train stage does) and score val and test at that threshold.

    Splits are dicts with ``X``, ``y``, ``speakers`` (as :func:`voicegender.features.store.load_features`).
    Returns ``{name: {"threshold", "fit_s", "val": {...}, "test": {...}}}``.
    """
    out = {}
    for name in names:
        started = time.perf_counter()
        est = fit_baseline(name, settings, train["X"], train["y"], seed=seed, n_jobs=n_jobs)
        fit_s = time.perf_counter() - started
        p_val = proba_female(est, val["X"])
        threshold = choose_threshold(val["y"], p_val)
        entry = {
            "threshold": threshold,
            "fit_s": fit_s,
            "val": split_scores(val["y"], p_val, val["speakers"], threshold),
        }
        if test is not None and len(test["y"]):
            entry["test"] = split_scores(test["y"], proba_female(est, test["X"]), test["speakers"], threshold)
        out[name] = entry
    return out
