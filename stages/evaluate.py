"""evaluate stage: score the trained model on the test split (never used for any choice).

Reads models/ and data/features/; writes metrics/evaluate.json (the numbers one compares across
experiments), metrics/evaluate_details.json (intervals, per class, at 0.5, calibration, validation),
plots/evaluate/ (per-speaker table, summary figure) and, through dvclive's sklearn plots, dvclive/evaluate/plots/sklearn/
(ROC, precision-recall, confusion matrix, calibration: drawn by `dvc plots show`).
The decision threshold is the one the train stage chose on validation; metrics at 0.5 are
reported too, so that the effect of that choice is visible. Validation metrics are included
for model selection (choose on `val`, never on `test`).
"""

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

import numpy as np
from dvclive import Live
from sklearn.metrics import roc_curve

from voicegender.features.store import load_features
from voicegender.evaluation.metrics import (
    calibration_table,
    confusion_counts,
    evaluation_report,
    speaker_table,
    split_report,
)
from voicegender.models.networks import load_trained
from voicegender.params import load_params
from voicegender.evaluation.plots import plot_evaluation_summary
from voicegender.evaluation.reports import write_json, write_table
from voicegender.models.training import predict_proba
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("metrics/evaluate.json", "metrics/evaluate_details.json", "plots/evaluate", "dvclive/evaluate")


def main() -> None:
    params = load_params()
    n_bins = params.evaluate.calibration_bins
    model, card = load_trained("models")
    threshold = card["threshold"]
    test, val = load_features("data/features", "test"), load_features("data/features", "val")
    proba = predict_proba(model, test["X"])
    y, speakers = test["y"], test["speakers"]
    p_val = predict_proba(model, val["X"])

    metrics = evaluation_report(
        speakers,
        y,
        proba,
        threshold,
        val=(val["speakers"], val["y"], p_val),
        n_bins=n_bins,
        n_resamples=params.evaluate.bootstrap,
        seed=params.train.seed,
    )
    compared, details = split_report(metrics)
    write_json("metrics/evaluate.json", compared)  # what `dvc exp show` lists
    write_json("metrics/evaluate_details.json", details)

    names = {1: "female", 0: "male"}
    pred = (proba >= threshold).astype(int)
    # dvclive writes each plot's data at once; DVC declares them (dvc.yaml), so dvclive is told
    # not to touch dvc.yaml or save an experiment. No `end()`: it would only add an empty summary.
    live = Live("dvclive/evaluate", dvcyaml=False, save_dvc_exp=False, report=None)
    p64 = proba.astype(np.float64)  # dvclive's JSON writer takes Python / float64 numbers, not float32
    live.log_sklearn_plot("roc", y, p64)
    live.log_sklearn_plot("precision_recall", y, p64)
    live.log_sklearn_plot("confusion_matrix", [names[int(a)] for a in y], [names[int(b)] for b in pred])
    live.log_sklearn_plot("calibration", y, p64, n_bins=n_bins)  # equal-width bins, as calibration_table
    per_speaker = speaker_table(speakers, y, proba, threshold)
    write_table("plots/evaluate/speakers.csv", per_speaker)
    fpr, tpr, _ = roc_curve(y, proba)
    plot_evaluation_summary(
        "plots/evaluate/summary.png",
        threshold=threshold,
        confusion=confusion_counts(y, proba, threshold),
        fpr=fpr,
        tpr=tpr,
        speakers=per_speaker,
        calibration=calibration_table(y, proba, n_bins),
        metrics=metrics,
    )
    ci = metrics["ci95"]
    print(
        f"evaluate: accuracy {metrics['accuracy']:.4f} [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}], "
        f"balanced {metrics['balanced_accuracy']:.4f}, AUC {metrics['roc_auc']:.4f}, speakers "
        f"{metrics['speaker_accuracy']:.4f} of {metrics['n_speakers']} (majority class "
        f"{metrics['majority_class_accuracy']:.3f})",
        flush=True,
    )


if __name__ == "__main__":
    run_command(main, name="evaluate", outputs=OUTPUTS)
