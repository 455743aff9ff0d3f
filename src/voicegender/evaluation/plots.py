"""The pipeline's figures (PNG, drawn with matplotlib), written without volatile metadata so that
the same results give the same bytes. The stages hand over their results; every drawing is here."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no screen needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

PNG_METADATA = {"Software": None}  # no library version in the file: figures diff only on content


def save_figure(fig, path: str | Path) -> None:
    """Save a matplotlib figure as PNG without volatile metadata, and close it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)


def figure(width: float = 6.0, height: float = 4.0):
    """A new (figure, axes) pair."""
    return plt.subplots(figsize=(width, height))


def plot_data_summary(table: list[dict], path: str | Path) -> None:
    """Speakers, utterances and hours per split and sex (``table``: the label stage's summary rows,
    each with ``group``, ``sex`` and the three counts), female red, male blue."""
    fig, axes = figure(10, 3)
    fig.clf()
    for i, key in enumerate(("speakers", "utterances", "hours")):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.bar(
            [t["group"] for t in table],
            [t[key] for t in table],
            color=["C3" if t["sex"] == "F" else "C0" for t in table],
        )
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=45)
    save_figure(fig, path)


def plot_tune_curves(trials: list[dict], path: str | Path) -> None:
    """Validation loss per epoch, one line per trial (``trials``: :func:`voicegender.models.tuning.run_search`'s)."""
    fig, ax = figure(6, 4)
    for i, t in enumerate(trials):
        ax.plot([h["epoch"] for h in t["history"]], [h["val_loss"] for h in t["history"]], alpha=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation BCE loss")
    ax.set_title(f"{len(trials)} trials (ASHA's rule stops weak ones early)")
    save_figure(fig, path)


def plot_evaluation_summary(
    path: str | Path,
    *,
    threshold: float,
    confusion,
    fpr,
    tpr,
    speakers: list[dict],
    calibration: list[dict],
    metrics: dict,
) -> None:
    """Four panels in a 2 x 2 grid: the 2x2 ``confusion`` counts at ``threshold`` (rows actual female, male), the
    ROC curve, each test speaker's share of utterances classified right (``speakers``: rows of
    ``evaluation.speaker_table``), and the reliability curve (``calibration``: rows of ``evaluation.calibration_table``).
    ``metrics`` gives the titles' ``roc_auc``, ``speaker_accuracy``, ``expected_calibration_error``.
    """
    # a 2 x 2 grid, 1,000 px wide: four panels in a row (1,500 px) were cut off at the calibration
    # panel in a browser window of `dvc plots show`
    fig, grid = plt.subplots(2, 2, figsize=(10, 8))
    axes = grid.ravel()
    ax = axes[0]
    ax.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        share = count / max(confusion[i].sum(), 1)
        ax.text(j, i, f"{count}\n{share:.1%}", ha="center", va="center", color="white" if share > 0.5 else "black")
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
    share_right = np.array([r["accuracy"] for r in speakers])
    truth = [1 if r["sex"] == "F" else 0 for r in speakers]
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
