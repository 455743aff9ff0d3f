"""Classification metrics at the utterance and the speaker level, with speaker bootstrap CIs.

Labels: 1 = female, 0 = male. ``proba`` is the predicted probability of female.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn import metrics as skm


def speaker_majority(speakers: np.ndarray, y_true: np.ndarray, proba: np.ndarray, threshold: float):
    """Per speaker: true label, share of utterances voted female, and mean probability.

    Returns ``(speaker_ids, truth, vote_share, mean_proba)`` arrays, sorted by speaker id.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(speakers):
        groups[str(s)].append(i)
    ids = sorted(groups)
    truth = np.array([y_true[groups[s][0]] for s in ids])
    votes = np.array([np.mean(proba[groups[s]] >= threshold) for s in ids])
    mean_p = np.array([np.mean(proba[groups[s]]) for s in ids])
    return np.array(ids), truth, votes, mean_p


def choose_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The probability threshold that maximises balanced accuracy on (validation) data.

    Candidates are 0.5 and the midpoints between neighbouring distinct probabilities (a
    threshold *on* a validation score would sit right at the edge of that example). Ties go to
    the candidate nearest 0.5, so a model that is already well placed keeps 0.5. Vectorised:
    O(n log n), so that LibriTTS's thousands of validation utterances cost nothing.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(proba, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    values = np.unique(p)
    candidates = np.unique(np.concatenate([[0.5], (values[:-1] + values[1:]) / 2, [values[0], values[-1] + 1e-9]]))
    # predictions are `proba >= t`: count positives / negatives strictly below each candidate
    order = np.sort(p[y == 1]), np.sort(p[y == 0])
    pos_below = np.searchsorted(order[0], candidates, side="left")
    neg_below = np.searchsorted(order[1], candidates, side="left")
    score = ((n_pos - pos_below) / n_pos + neg_below / n_neg) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def utterance_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy, ROC AUC, F1 (female positive) and per-class precision /
    recall / F1 of utterance-level predictions. Metrics that need both classes are NaN without."""
    y_pred = (proba >= threshold).astype(int)
    y_true = y_true.astype(int)
    p, r, f, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=[1, 0], zero_division=0)
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)) if both else float("nan"),
        "roc_auc": float(skm.roc_auc_score(y_true, proba)) if both else float("nan"),
        "f1": float(f[0]),
        # what always answering the majority class scores: the floor any model must clear
        "majority_class_accuracy": float(max(np.mean(y_true), 1 - np.mean(y_true))) if len(y_true) else float("nan"),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(("female", "male"))
        },
    }


def speaker_predictions(speakers: np.ndarray, y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5):
    """Per speaker (sorted by id): ``(ids, truth, vote_share, mean_proba, by_vote, by_mean)``.

    ``by_vote`` is the majority vote of the speaker's utterances (female = 1); a tied vote is
    settled by the mean probability rather than silently going to one class. ``by_mean``
    thresholds the mean probability.
    """
    ids, truth, votes, mean_p = speaker_majority(speakers, y_true, proba, threshold)
    by_mean = (mean_p >= threshold).astype(int)
    by_vote = np.where(np.isclose(votes, 0.5), by_mean, (votes > 0.5).astype(int))
    return ids, truth.astype(int), votes, mean_p, by_vote, by_mean


def speaker_metrics(speakers: np.ndarray, y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict:
    """Share of speakers whose sex is right by majority vote of their utterances, and by their
    mean probability; plus the vote's balanced accuracy over speakers."""
    _, truth, _, _, by_vote, by_mean = speaker_predictions(speakers, y_true, proba, threshold)
    both = len(np.unique(truth)) == 2
    return {
        "speaker_accuracy": float(np.mean(by_vote == truth)),
        "speaker_accuracy_mean_proba": float(np.mean(by_mean == truth)),
        "speaker_balanced_accuracy": float(skm.balanced_accuracy_score(truth, by_vote)) if both else float("nan"),
    }


def _weighted_auc(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of ``weights`` (resamples x utterances) as sample weights; ties
    count one half (the Mann-Whitney form, equal to sklearn's weighted roc_auc_score)."""
    order = np.argsort(proba, kind="stable")
    p_sorted, y_sorted, w = proba[order], y[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])  # groups of tied scores
    pos = np.add.reduceat(w * y_sorted, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y_sorted), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


CI_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "speaker_accuracy", "speaker_accuracy_mean_proba")


def bootstrap_ci(
    speakers: np.ndarray,
    y_true: np.ndarray,
    proba: np.ndarray,
    threshold: float,
    *,
    n_resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict:
    """Speaker-level percentile bootstrap confidence intervals of the main metrics
    (``n_resamples``: ``evaluate.bootstrap``; ``seed``: ``train.seed``).

    Utterances of one speaker are not independent, so whole speakers are resampled with
    replacement (a speaker drawn twice counts twice). Returns ``{metric: [low, high]}`` for
    :data:`CI_METRICS`. Counting metrics come from per-speaker confusion counts times the
    draw counts (one matrix product for all resamples); ROC AUC weighs each utterance by its
    speaker's draw count. Resamples without both sexes are left out of the ROC AUC interval.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    ids, inverse = np.unique(np.asarray(speakers).astype(str), return_inverse=True)
    n_spk = len(ids)
    pred = (proba >= threshold).astype(int)
    # per speaker: [true pos, false neg, false pos, true neg] utterance counts
    cells = np.stack(
        [(y == 1) & (pred == 1), (y == 1) & (pred == 0), (y == 0) & (pred == 1), (y == 0) & (pred == 0)], 1
    )
    counts = np.zeros((n_spk, 4))
    np.add.at(counts, inverse, cells.astype(float))
    _, truth, _, _, by_vote, by_mean = speaker_predictions(speakers, y, proba, threshold)
    draws = np.stack([np.bincount(rng.integers(0, n_spk, n_spk), minlength=n_spk) for _ in range(n_resamples)])
    tp, fn, fp, tn = (draws @ counts).T
    with np.errstate(invalid="ignore", divide="ignore"):
        recall_f, recall_m = tp / (tp + fn), tn / (tn + fp)
        samples = {
            "accuracy": (tp + tn) / (tp + fn + fp + tn),
            "balanced_accuracy": (recall_f + recall_m) / 2,
            "f1": 2 * tp / (2 * tp + fp + fn),
            "speaker_accuracy": draws @ (by_vote == truth) / n_spk,
            "speaker_accuracy_mean_proba": draws @ (by_mean == truth) / n_spk,
        }
    auc = _weighted_auc(y, proba, draws[:, inverse].astype(float))
    samples["roc_auc"] = auc
    alpha = (1 - level) / 2
    out = {}
    for k in CI_METRICS:
        v = samples[k][np.isfinite(samples[k])]
        out[k] = [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))] if len(v) else [float("nan")] * 2
    return out


def calibration_table(y_true: np.ndarray, proba: np.ndarray, n_bins: int) -> list[dict]:
    """Reliability diagram data: per equal-width probability bin (non-empty ones), the mean
    predicted P(female), the observed fraction female, and the count."""
    y = np.asarray(y_true, dtype=float)
    proba = np.asarray(proba, dtype=float)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(proba, edges) - 1, 0, n_bins - 1)  # p = 1.0 belongs to the last bin
    return [
        {
            "bin": f"{edges[b]:.2f}-{edges[b + 1]:.2f}",
            "mean_predicted": float(proba[which == b].mean()),
            "fraction_female": float(y[which == b].mean()),
            "count": int((which == b).sum()),
        }
        for b in range(n_bins)
        if (which == b).any()
    ]


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int) -> float:
    """Count-weighted mean |fraction female - mean predicted| over the calibration bins."""
    table = calibration_table(y_true, proba, n_bins)
    n = sum(r["count"] for r in table)
    return float(sum(r["count"] * abs(r["fraction_female"] - r["mean_predicted"]) for r in table) / max(n, 1))


def confusion_counts(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2x2 utterance counts, rows actual (female, male), columns predicted (female, male)."""
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(proba) >= threshold).astype(int)
    return np.array([[int(np.sum((y == a) & (pred == p))) for p in (1, 0)] for a in (1, 0)])


def evaluate_split(speakers: np.ndarray, y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict:
    """Every utterance- and speaker-level metric of one split at ``threshold``, plus its size."""
    return {
        **utterance_metrics(y_true, proba, threshold),
        **speaker_metrics(speakers, y_true, proba, threshold),
        "n_utterances": int(len(y_true)),
        "n_speakers": int(len(set(np.asarray(speakers).tolist()))),
    }


def evaluation_report(
    speakers: np.ndarray,
    y_true: np.ndarray,
    proba: np.ndarray,
    threshold: float,
    *,
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_bins: int,
    n_resamples: int,
    seed: int,
) -> dict:
    """The evaluate stage's metrics: the test split at the validation-chosen ``threshold`` (with its
    calibration error, what 0.5 would have given, and speaker-bootstrap 95 % intervals), and the
    validation split's own figures (``val``: its speakers, labels, probabilities)."""
    report = {
        **evaluate_split(speakers, y_true, proba, threshold),
        "threshold": threshold,
        "expected_calibration_error": expected_calibration_error(y_true, proba, n_bins),
    }
    at_half = evaluate_split(speakers, y_true, proba, 0.5)
    report["at_threshold_0.5"] = {k: at_half[k] for k in ("accuracy", "balanced_accuracy", "speaker_accuracy")}
    report["ci95"] = bootstrap_ci(speakers, y_true, proba, threshold, n_resamples=n_resamples, seed=seed)
    v = evaluate_split(*val, threshold)
    report["val"] = {
        k: v[k] for k in ("accuracy", "balanced_accuracy", "roc_auc", "speaker_accuracy", "n_utterances", "n_speakers")
    }
    return report


# metrics/evaluate.json: what one compares across experiments (DESIGN's contract keys), and the
# validation balanced accuracy to choose on; everything else evaluation_report measures is detail
COMPARED = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "speaker_accuracy", "n_utterances", "n_speakers")


def split_report(report: dict) -> tuple[dict, dict]:
    """``report`` (:func:`evaluation_report`'s) as (the numbers one compares, the details): the first
    for a metrics file `dvc exp show` lists, the second (intervals, per class, at 0.5, calibration,
    all of validation) for a file it does not."""
    compared = {k: report[k] for k in COMPARED}
    compared["val"] = {"balanced_accuracy": report["val"]["balanced_accuracy"]}
    return compared, {k: v for k, v in report.items() if k not in COMPARED}


def speaker_table(speakers: np.ndarray, y_true: np.ndarray, proba: np.ndarray, threshold: float) -> list[dict]:
    """One row per speaker: sex, the share of its utterances classified right, its mean P(female),
    and whether the majority vote is right."""
    ids, truth, votes, mean_p, by_vote, _ = speaker_predictions(speakers, y_true, proba, threshold)
    share_right = np.where(truth == 1, votes, 1 - votes)
    return [
        {
            "speaker": s,
            "sex": "F" if t == 1 else "M",
            "accuracy": float(a),
            "mean_proba_female": float(m),
            "speaker_right": int(v == t),
        }
        for s, t, a, m, v in zip(ids, truth, share_right, mean_p, by_vote)
    ]
