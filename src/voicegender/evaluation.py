"""Classification metrics at the utterance and the speaker level, with speaker bootstrap CIs.

Labels: 1 = female, 0 = male. ``proba`` is the predicted probability of female.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from voicegender.dataset import speaker_majority


def choose_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The probability threshold that maximises balanced accuracy on (validation) data.

    Ties go to the threshold nearest 0.5, so a model that is already well placed keeps 0.5.
    """
    candidates = np.unique(np.concatenate([[0.5], proba]))
    best, best_score = 0.5, -1.0
    for t in candidates:
        score = skm.balanced_accuracy_score(y_true, proba >= t)
        if score > best_score + 1e-12 or (abs(score - best_score) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = float(t), score
    return best


def utterance_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy, ROC AUC, F1 (female positive) and per-class precision /
    recall / F1 of utterance-level predictions."""
    y_pred = (proba >= threshold).astype(int)
    y_true = y_true.astype(int)
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=[1, 0], zero_division=0)
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)) if both else float("nan"),
        "roc_auc": float(skm.roc_auc_score(y_true, proba)) if both else float("nan"),
        "f1": float(f[0]),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i])}
            for i, name in enumerate(("female", "male"))
        },
    }


def speaker_metrics(speakers: np.ndarray, y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict:
    """Share of speakers whose sex is right by majority vote of their utterances, and by their
    mean probability."""
    _, truth, votes, mean_p = speaker_majority(speakers, y_true, proba, threshold)
    return {
        "speaker_accuracy": float(np.mean((votes > 0.5) == (truth > 0.5))),
        "speaker_accuracy_mean_proba": float(np.mean((mean_p >= threshold) == (truth > 0.5))),
    }


def bootstrap_ci(speakers: np.ndarray, y_true: np.ndarray, proba: np.ndarray, threshold: float,
                 n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Speaker-level bootstrap confidence intervals of the main metrics.

    Utterances of one speaker are not independent, so whole speakers are resampled with
    replacement. Returns ``{metric: [low, high]}``.
    """
    rng = np.random.default_rng(seed)
    ids, inverse = np.unique(speakers.astype(str), return_inverse=True)
    rows_of = [np.flatnonzero(inverse == k) for k in range(len(ids))]
    keys = ("accuracy", "balanced_accuracy", "roc_auc", "speaker_accuracy")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_resamples):
        pick = rng.integers(0, len(ids), len(ids))
        rows = np.concatenate([rows_of[k] for k in pick])
        # relabel resampled speakers so that a speaker drawn twice votes twice
        spk = np.concatenate([np.full(len(rows_of[k]), j) for j, k in enumerate(pick)])
        u = utterance_metrics(y_true[rows], proba[rows], threshold)
        s = speaker_metrics(spk, y_true[rows], proba[rows], threshold)
        for k in keys:
            samples[k].append(u[k] if k in u else s[k])
    alpha = (1 - level) / 2
    return {k: [float(np.nanquantile(v, alpha)), float(np.nanquantile(v, 1 - alpha))]
            for k, v in samples.items()}
