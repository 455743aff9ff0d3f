"""train stage: fit the chosen model on the train split, keep its best validation epoch.

Reads data/features/ and models/tuned.yaml; writes models/model.pt (a state dict),
models/model.json (how to rebuild and use it), metrics/train.json and plots/train/.
"""

import sys
from pathlib import Path

# this repository's library first, whatever is installed where: DVC runs queued and temporary
# experiments in copies of the repository, each with its own src/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json

import torch
import yaml

from voicegender.dataset import load_features
from voicegender.evaluation import choose_threshold
from voicegender.training import fit_standardizer
from voicegender.models import build_model
from voicegender.params import load_params
from voicegender.reporting import figure, save_figure, write_json, write_table
from voicegender.training import fit, predict_proba, resolve_device
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("models/model.pt", "models/model.json", "metrics/train.json", "plots/train")


def main() -> None:
    params = load_params()
    tuned = yaml.safe_load(Path("models/tuned.yaml").read_text())
    lr = float(tuned["lr"] if params["lr"] == "tuned" else params["lr"])
    batch_size = int(tuned["batch_size"] if params["batch_size"] == "tuned" else params["batch_size"])
    epochs = params["epochs"]
    train, val = load_features("data/features", "train"), load_features("data/features", "val")
    mean, std = fit_standardizer(train["X"]) if params["train"]["standardize"] else (None, None)
    model_config = params["model"]
    model = build_model(model_config, train["X"].shape[1:], mean, std, seed=params["train"]["seed"])
    device = resolve_device(params["device"])
    print(f"train: {params['model']['name']} on {len(train['X'])} utterances, lr={lr:.3g} "
          f"batch_size={batch_size} epochs<={epochs} device={device}", flush=True)

    def log_epoch(r):
        print(f"epoch {r['epoch']:>3}: train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.4f} | "
              f"val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.4f}", flush=True)

    result = fit(model, train["X"], train["y"], val["X"], val["y"], lr=lr, batch_size=batch_size,
                 epochs=epochs, seed=params["train"]["seed"], optimizer=params["train"]["optimizer"],
                 weight_decay=params["train"]["weight_decay"], patience=params["train"]["patience"],
                 device=device, on_epoch=log_epoch)
    threshold = choose_threshold(val["y"], predict_proba(model, val["X"]))

    Path("models").mkdir(exist_ok=True)
    torch.save(result.state_dict, "models/model.pt")
    card = {"model": model_config, "features": params["features"], "input_shape": list(train["X"].shape[1:]),
            "standardized": mean is not None, "threshold": threshold, "positive_class": "female"}
    Path("models/model.json").write_text(json.dumps(card, indent=2) + "\n")

    best = result.best
    write_json("metrics/train.json", {
        "lr": lr, "batch_size": batch_size, "epochs": epochs, "epochs_run": len(result.history),
        "best_epoch": result.best_epoch, "loss": best["val_loss"], "accuracy": best["val_accuracy"],
        "threshold": threshold,
    })
    for part in ("train", "val"):
        write_table(f"plots/train/{part}.tsv",
                    [{"epoch": r["epoch"], "loss": r[f"{part}_loss"], "accuracy": r[f"{part}_accuracy"]}
                     for r in result.history])
    fig, axes = figure(10, 3.5)
    fig.clf()
    for i, key in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for part in ("train", "val"):
            ax.plot([r["epoch"] for r in result.history], [r[f"{part}_{key}"] for r in result.history], label=part)
        ax.axvline(result.best_epoch, color="grey", linestyle=":", label="best epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("BCE loss" if key == "loss" else "accuracy")
        ax.legend()
    save_figure(fig, "plots/train/curves.png")


if __name__ == "__main__":
    run_command(main, name="train", outputs=OUTPUTS)
