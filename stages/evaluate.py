"""evaluate stage: score the trained model on the test split (never used for any choice).

Reads models/ and data/features/; writes metrics/evaluate.json and plots/evaluate/.
The decision threshold is the one the train stage chose on validation; metrics at 0.5 are
reported too, so that the effect of that choice is visible. Validation metrics are included
for model selection (choose on `val`, never on `test`).
"""

import sys
from pathlib import Path

# this repository's library first, whatever is installed where: DVC runs queued and temporary
# experiments in copies of the repository, each with its own src/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
from sklearn.metrics import roc_curve

from voicegender.dataset import load_features
from voicegender.evaluation import (bootstrap_ci, calibration_table, confusion_counts, evaluate_split,
                                    expected_calibration_error, speaker_predictions)
from voicegender.models import load_trained
from voicegender.params import load_params
from voicegender.reporting import figure, save_figure, write_json, write_table
from voicegender.training import predict_proba
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("metrics/evaluate.json", "plots/evaluate")


def main() -> None:
    params = load_params()
    n_bins = params["evaluate"]["calibration_bins"]
    model, card = load_trained("models")
    threshold = card["threshold"]
    test, val = load_features("data/features", "test"), load_features("data/features", "val")
    proba = predict_proba(model, test["X"])
    y, speakers = test["y"], test["speakers"]
    p_val = predict_proba(model, val["X"])

    metrics = {**evaluate_split(speakers, y, proba, threshold), "threshold": threshold,
               "expected_calibration_error": expected_calibration_error(y, proba, n_bins)}
    at_half = evaluate_split(speakers, y, proba, 0.5)
    metrics["at_threshold_0.5"] = {k: at_half[k] for k in ("accuracy", "balanced_accuracy", "speaker_accuracy")}
    metrics["ci95"] = bootstrap_ci(speakers, y, proba, threshold, n_resamples=params["evaluate"]["bootstrap"],
                                   seed=params["train"]["seed"])
    v = evaluate_split(val["speakers"], val["y"], p_val, threshold)
    metrics["val"] = {k: v[k] for k in ("accuracy", "balanced_accuracy", "roc_auc", "speaker_accuracy",
                                        "n_utterances", "n_speakers")}
    write_json("metrics/evaluate.json", metrics)

    names = {1: "female", 0: "male"}
    pred = (proba >= threshold).astype(int)
    write_table("plots/evaluate/confusion.csv",
                [{"actual": names[int(a)], "predicted": names[int(p)]} for a, p in zip(y, pred)])
    fpr, tpr, _ = roc_curve(y, proba)
    write_table("plots/evaluate/roc.csv", [{"fpr": float(a), "tpr": float(b)} for a, b in zip(fpr, tpr)])
    ids, truth, votes, mean_p, by_vote, _ = speaker_predictions(speakers, y, proba, threshold)
    share_right = np.where(truth == 1, votes, 1 - votes)  # share of the speaker's utterances classified right
    write_table("plots/evaluate/speakers.csv", [
        {"speaker": s, "sex": "F" if t == 1 else "M", "accuracy": float(a), "mean_proba_female": float(m),
         "speaker_right": int(v == t)}
        for s, t, a, m, v in zip(ids, truth, share_right, mean_p, by_vote)])
    calibration = calibration_table(y, proba, n_bins)
    write_table("plots/evaluate/calibration.csv", calibration)

    fig, _ = figure(15, 3.6)
    fig.clf()
    ax = fig.add_subplot(1, 4, 1)
    cm = confusion_counts(y, proba, threshold)
    ax.imshow(cm, cmap="Blues")
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, f"{count}\n{count / max(cm[i].sum(), 1):.1%}", ha="center", va="center")
    ax.set_xticks([0, 1], ["female", "male"])
    ax.set_yticks([0, 1], ["female", "male"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"confusion (utterances, threshold {threshold:.2f})")
    ax = fig.add_subplot(1, 4, 2)
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (male called female)")
    ax.set_ylabel("true positive rate (female found)")
    ax.set_title(f"ROC (AUC {metrics['roc_auc']:.3f})")
    ax = fig.add_subplot(1, 4, 3)
    order = np.argsort(share_right, kind="stable")
    ax.bar(range(len(ids)), share_right[order], color=["C3" if truth[k] == 1 else "C0" for k in order])
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_xlabel("test speaker (red female, blue male)")
    ax.set_ylabel("share of utterances right")
    ax.set_title(f"per speaker: {metrics['speaker_accuracy']:.1%} of {len(ids)} right by vote")
    ax = fig.add_subplot(1, 4, 4)
    ax.plot([c["mean_predicted"] for c in calibration], [c["fraction_female"] for c in calibration], "o-")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("mean predicted P(female)")
    ax.set_ylabel("observed fraction female")
    ax.set_title(f"calibration (ECE {metrics['expected_calibration_error']:.3f})")
    fig.tight_layout()  # the four panels' axis labels otherwise overlap
    save_figure(fig, "plots/evaluate/summary.png")
    ci = metrics["ci95"]
    print(f"evaluate: accuracy {metrics['accuracy']:.4f} [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}], "
          f"balanced {metrics['balanced_accuracy']:.4f}, AUC {metrics['roc_auc']:.4f}, speakers "
          f"{metrics['speaker_accuracy']:.4f} of {metrics['n_speakers']} (majority class "
          f"{metrics['majority_class_accuracy']:.3f})", flush=True)


if __name__ == "__main__":
    run_command(main, name="evaluate", outputs=OUTPUTS)
