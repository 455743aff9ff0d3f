"""Writing metrics, tables and figures in diff-friendly, byte-stable forms."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no screen needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

PNG_METADATA = {"Software": None}  # no library version in the file: figures diff only on content


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON (floats rounded to 6 significant digits, NaN as null)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_clean(obj), indent=2) + "\n", encoding="utf-8")


def _clean(obj):
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj


def write_table(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Write rows as CSV, or TSV when ``path`` ends in ``.tsv``; floats to 6 significant digits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or (list(rows[0]) if rows else [])
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, delimiter=delimiter, lineterminator="\n",
                                extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def save_figure(fig, path: str | Path) -> None:
    """Save a matplotlib figure as PNG without volatile metadata, and close it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)


def figure(width: float = 6.0, height: float = 4.0):
    """A new (figure, axes) pair."""
    return plt.subplots(figsize=(width, height))


def significant(x: float, digits: int = 6) -> float:
    """``x`` rounded to ``digits`` significant digits: what the tables and JSON files hold, so
    that a last-bit difference in a loss does not show up as a changed file."""
    return float(f"{x:.{digits}g}")


def plot_training_curves(history: list[dict], best_epoch: int, path: str | Path) -> None:
    """Loss and accuracy per epoch, train vs val, with the kept (best validation-loss) epoch dotted."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [r["epoch"] for r in history]
    for ax, key in zip(axes, ("loss", "accuracy")):
        for part in ("train", "val"):
            ax.plot(epochs, [r[f"{part}_{key}"] for r in history], label=part)
        ax.axvline(best_epoch, color="grey", linestyle=":", label="best epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("BCE loss" if key == "loss" else "accuracy")
        ax.legend()
    save_figure(fig, path)


def plot_evaluation_summary(path: str | Path, *, threshold: float, confusion, fpr, tpr, truth, share_right,
                            calibration: list[dict], metrics: dict) -> None:
    """Four panels: the 2x2 ``confusion`` counts at ``threshold`` (rows actual female, male), the
    ROC curve, each test speaker's share of utterances classified right (``truth`` 1 = female),
    and the reliability curve (``calibration``: rows of ``evaluation.calibration_table``).
    ``metrics`` gives the titles' ``roc_auc``, ``speaker_accuracy``, ``expected_calibration_error``.
    """
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    ax = axes[0]
    ax.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, f"{count}\n{count / max(confusion[i].sum(), 1):.1%}", ha="center", va="center")
    ax.set_xticks([0, 1], ["female", "male"])
    ax.set_yticks([0, 1], ["female", "male"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"confusion (utterances, threshold {threshold:.2f})")
    ax = axes[1]
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (male called female)")
    ax.set_ylabel("true positive rate (female found)")
    ax.set_title(f"ROC (AUC {metrics['roc_auc']:.3f})")
    ax = axes[2]
    order = np.argsort(share_right, kind="stable")
    ax.bar(range(len(order)), share_right[order], color=["C3" if truth[k] == 1 else "C0" for k in order])
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_xlabel("test speaker (red female, blue male)")
    ax.set_ylabel("share of utterances right")
    ax.set_title(f"per speaker: {metrics['speaker_accuracy']:.1%} of {len(order)} right by vote")
    ax = axes[3]
    ax.plot([c["mean_predicted"] for c in calibration], [c["fraction_female"] for c in calibration], "o-")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("mean predicted P(female)")
    ax.set_ylabel("observed fraction female")
    ax.set_title(f"calibration (ECE {metrics['expected_calibration_error']:.3f})")
    fig.tight_layout()  # the four panels' axis labels otherwise overlap
    save_figure(fig, path)
