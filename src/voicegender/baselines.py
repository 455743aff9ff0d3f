"""Classical baselines from scikit-learn on the same features and splits as the networks.

The report's own wish list: logistic regression, an MLP, a random forest and gradient boosting.
Every baseline is a pipeline ``StandardScaler -> classifier`` fitted on the train split only,
so the standardisation uses train statistics. 2-D features (log-mel patches) are flattened.
Labels: 1 = female, 0 = male.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from voicegender.evaluation import choose_threshold, speaker_metrics, utterance_metrics

BASELINES = ("logistic", "mlp", "random_forest", "hist_gradient_boosting")


def flatten(X: np.ndarray) -> np.ndarray:
    """(n, ...) -> (n, prod(...)) float32: sklearn wants one flat row per utterance."""
    X = np.asarray(X, dtype=np.float32)
    return X.reshape(len(X), -1)


def make_baseline(name: str, config: dict, seed: int = 0, n_jobs: int = 1) -> Pipeline:
    """An unfitted ``StandardScaler -> classifier`` pipeline; ``config`` holds the classifier's
    hyperparameters (the ``baselines.<name>`` section of params.yaml)."""
    c = dict(config or {})
    if name == "logistic":
        clf = LogisticRegression(C=float(c.get("C", 1.0)), max_iter=int(c.get("max_iter", 2000)))
    elif name == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=tuple(c.get("hidden", [64])), alpha=float(c.get("alpha", 1.0e-3)),
                            max_iter=int(c.get("max_iter", 500)), early_stopping=bool(c.get("early_stopping", True)),
                            random_state=seed)
    elif name == "random_forest":
        clf = RandomForestClassifier(n_estimators=int(c.get("n_estimators", 300)), max_depth=c.get("max_depth"),
                                     min_samples_leaf=int(c.get("min_samples_leaf", 1)), n_jobs=n_jobs,
                                     random_state=seed)
    elif name == "hist_gradient_boosting":
        clf = HistGradientBoostingClassifier(max_iter=int(c.get("max_iter", 200)),
                                             learning_rate=float(c.get("learning_rate", 0.1)),
                                             max_leaf_nodes=int(c.get("max_leaf_nodes", 31)),
                                             l2_regularization=float(c.get("l2_regularization", 0.0)),
                                             early_stopping=False, random_state=seed)
    else:
        raise ValueError(f"baselines: unknown model {name!r} (known: {', '.join(BASELINES)})")
    return make_pipeline(StandardScaler(), clf)


def fit_baseline(name: str, config: dict, X: np.ndarray, y: np.ndarray, seed: int = 0, n_jobs: int = 1) -> Pipeline:
    """Fit baseline ``name`` on (X, y)."""
    return make_baseline(name, config, seed, n_jobs).fit(flatten(X), np.asarray(y).astype(int))


def proba_female(estimator: Pipeline, X: np.ndarray) -> np.ndarray:
    """P(female) for every row of ``X``."""
    p = estimator.predict_proba(flatten(X))
    return p[:, list(estimator.classes_).index(1)]


def split_scores(y: np.ndarray, proba: np.ndarray, speakers: np.ndarray, threshold: float) -> dict:
    """Accuracy, balanced accuracy, ROC AUC, female F1 and speaker accuracy of one split."""
    u = utterance_metrics(y, proba, threshold)
    s = speaker_metrics(speakers, y, proba, threshold)
    return {"accuracy": u["accuracy"], "balanced_accuracy": u["balanced_accuracy"], "roc_auc": u["roc_auc"],
            "f1": u["f1"], "speaker_accuracy": s["speaker_accuracy"]}


def run_baselines(names, configs: dict, train: dict, val: dict, test: dict | None = None,
                  seed: int = 0, n_jobs: int = 1) -> dict:
    """Fit each baseline on ``train``, choose its threshold on ``val`` (max balanced accuracy,
    as the networks' train stage does) and score val and test at that threshold.

    Splits are dicts with ``X``, ``y``, ``speakers`` (as :func:`voicegender.dataset.load_features`).
    Returns ``{name: {"threshold", "fit_s", "val": {...}, "test": {...}}}``.
    """
    out = {}
    for name in names:
        started = time.perf_counter()
        est = fit_baseline(name, configs.get(name, {}), train["X"], train["y"], seed, n_jobs)
        fit_s = time.perf_counter() - started
        p_val = proba_female(est, val["X"])
        threshold = choose_threshold(val["y"], p_val)
        entry = {"threshold": threshold, "fit_s": fit_s,
                 "val": split_scores(val["y"], p_val, val["speakers"], threshold)}
        if test is not None and len(test["y"]):
            entry["test"] = split_scores(test["y"], proba_female(est, test["X"]), test["speakers"], threshold)
        out[name] = entry
    return out
