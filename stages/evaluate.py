"""evaluate stage: score the trained model on the test split (never used for any choice).

Reads models/ and data/features/; writes metrics/evaluate.json and plots/evaluate/.
"""

import json

import numpy as np
import torch
from sklearn.metrics import roc_curve

from voicegender.dataset import load_features, speaker_majority
from voicegender.evaluation import bootstrap_ci, speaker_metrics, utterance_metrics
from voicegender.models import build_model
from voicegender.params import load_params
from voicegender.reporting import figure, save_figure, write_json, write_table
from voicegender.training import predict_proba


def main() -> None:
    params = load_params()
    card = json.load(open("models/model.json"))
    shape = tuple(card["input_shape"])
    placeholder = (np.zeros(shape), np.ones(shape)) if card["standardized"] else (None, None)
    model = build_model(card["model"], shape, *placeholder)
    model.load_state_dict(torch.load("models/model.pt", weights_only=True))
    test = load_features("data/features", "test")
    threshold = card["threshold"]
    proba = predict_proba(model, test["X"])
    y, speakers = test["y"], test["speakers"]

    metrics = {**utterance_metrics(y, proba, threshold), **speaker_metrics(speakers, y, proba, threshold),
               "threshold": threshold, "n_utterances": int(len(y)), "n_speakers": int(len(set(speakers)))}
    metrics["ci95"] = bootstrap_ci(speakers, y, proba, threshold, n_resamples=params["evaluate"]["bootstrap"],
                                   seed=params["seed"])
    write_json("metrics/evaluate.json", metrics)

    names = {1: "female", 0: "male"}
    pred = (proba >= threshold).astype(int)
    write_table("plots/evaluate/confusion.csv",
                [{"actual": names[int(a)], "predicted": names[int(p)]} for a, p in zip(y, pred)])
    fpr, tpr, _ = roc_curve(y, proba)
    write_table("plots/evaluate/roc.csv", [{"fpr": float(a), "tpr": float(b)} for a, b in zip(fpr, tpr)])
    ids, truth, votes, mean_p = speaker_majority(speakers, y, proba, threshold)
    accuracy_per_speaker = np.where(truth > 0.5, votes, 1 - votes)
    write_table("plots/evaluate/speakers.csv", [
        {"speaker": s, "sex": "F" if t > 0.5 else "M", "accuracy": float(a), "mean_proba_female": float(m)}
        for s, t, a, m in zip(ids, truth, accuracy_per_speaker, mean_p)])
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(proba, bins) - 1, 0, 9)
    calibration = [{"bin": f"{bins[b]:.1f}-{bins[b + 1]:.1f}", "mean_predicted": float(proba[which == b].mean()),
                    "fraction_female": float(y[which == b].mean()), "count": int((which == b).sum())}
                   for b in range(10) if (which == b).any()]
    write_table("plots/evaluate/calibration.csv", calibration)

    fig, axes = figure(14, 3.6)
    fig.clf()
    ax = fig.add_subplot(1, 4, 1)
    cm = np.array([[np.sum((y == a) & (pred == p)) for p in (1, 0)] for a in (1, 0)])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks([0, 1], ["female", "male"]); ax.set_yticks([0, 1], ["female", "male"])
    ax.set_xlabel("predicted"); ax.set_ylabel("actual"); ax.set_title("confusion (utterances)")
    ax = fig.add_subplot(1, 4, 2)
    ax.plot(fpr, tpr); ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate"); ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC (AUC {metrics['roc_auc']:.3f})")
    ax = fig.add_subplot(1, 4, 3)
    order = np.argsort(accuracy_per_speaker)
    ax.bar(range(len(ids)), accuracy_per_speaker[order], color=["C3" if truth[k] > 0.5 else "C0" for k in order])
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_xlabel("test speaker (red female, blue male)"); ax.set_ylabel("utterances right")
    ax.set_title("per-speaker accuracy")
    ax = fig.add_subplot(1, 4, 4)
    ax.plot([c["mean_predicted"] for c in calibration], [c["fraction_female"] for c in calibration], "o-")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("mean predicted P(female)"); ax.set_ylabel("fraction female"); ax.set_title("calibration")
    save_figure(fig, "plots/evaluate/summary.png")
    print(f"evaluate: accuracy {metrics['accuracy']:.4f}, balanced {metrics['balanced_accuracy']:.4f}, "
          f"speakers {metrics['speaker_accuracy']:.4f} of {metrics['n_speakers']}", flush=True)


if __name__ == "__main__":
    main()
