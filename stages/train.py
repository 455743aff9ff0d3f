"""train stage: fit the chosen model on the train split, keep its best validation epoch.

Reads data/features/ and models/tuned.yaml; writes models/model.pt (a state dict),
models/model.json (how to rebuild and use it: model and features configs, the predict
settings, and what data it was trained on), metrics/train.json (what one compares),
metrics/train_details.json (epochs run, the decision threshold) and, epoch by epoch through
dvclive, dvclive/train/ (the curves; its metrics.json lets `dvc exp show` follow a running experiment).
"""

from pathlib import Path

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

import json

import yaml
from dvclive import Live

from voicegender.features.store import load_features, training_data_card
from voicegender.evaluation.metrics import choose_threshold
from voicegender.models.networks import build_model, save_trained
from voicegender.params import load_params
from voicegender.evaluation.reports import significant, write_json
from voicegender.models.training import fit, fit_standardizer, predict_proba, resolve_device
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("models/model.pt", "models/model.json", "metrics/train.json", "metrics/train_details.json", "dvclive/train")


def main() -> None:
    params = load_params()
    tuned = yaml.safe_load(Path("models/tuned.yaml").read_text())
    lr = float(tuned["lr"] if params.lr == "tuned" else params.lr)
    batch_size = int(tuned["batch_size"] if params.batch_size == "tuned" else params.batch_size)
    epochs = params.epochs
    train, val = load_features("data/features", "train"), load_features("data/features", "val")
    mean, std = fit_standardizer(train["X"]) if params.train.standardize else (None, None)
    model_config = params.model
    model = build_model(model_config, train["X"].shape[1:], mean, std, seed=params.train.seed)
    device = resolve_device(params.device)
    print(
        f"train: {model_config.name} on {len(train['X'])} utterances, lr={lr:.3g} "
        f"batch_size={batch_size} epochs<={epochs} device={device}",
        flush=True,
    )

    # dvclive only writes here (no dvc.yaml edits, no experiment of its own, no report): dvc.yaml
    # declares its files. Steps are epochs; values are rounded like every other table, and
    # dvclive writes no timestamps unless asked, so a rerun rewrites the same bytes.
    live = Live("dvclive/train", dvcyaml=False, save_dvc_exp=False, report=None)

    def log_epoch(r):
        print(
            f"epoch {r['epoch']:>3}: train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.4f} | "
            f"val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.4f}",
            flush=True,
        )
        live.step = r["epoch"]
        for part in ("train", "val"):
            for key in ("loss", "accuracy"):
                live.log_metric(f"{part}/{key}", significant(r[f"{part}_{key}"]))
        # dvclive/train/metrics.json, which `dvc exp show` lists, keeps how far (step) and how well
        # (validation loss) training is: the rest is in the curves and in metrics/train.json
        live.summary = {"val": {"loss": live.summary["val"]["loss"]}}
        live.next_step()

    result = fit(
        model,
        train["X"],
        train["y"],
        val["X"],
        val["y"],
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        seed=params.train.seed,
        optimizer=params.train.optimizer,
        weight_decay=params.train.weight_decay,
        patience=params.train.patience,
        device=device,
        on_epoch=log_epoch,
    )
    live.end()
    threshold = choose_threshold(val["y"], predict_proba(model, val["X"]))

    save_trained(
        "models",
        result.state_dict,
        model=model_config,
        features=params.features,
        predict=params.predict,  # predict needs no params.yaml: speech detection as configured here
        input_shape=train["X"].shape[1:],
        standardized=mean is not None,
        threshold=threshold,
        data=training_data_card(
            json.loads(Path("data/raw/corpus.json").read_text()),
            "data/labels.csv",
            {"train": train, "val": val, "test": load_features("data/features", "test")},
        ),
    )

    best = result.best
    write_json(
        "metrics/train.json",
        {
            "lr": lr,
            "batch_size": batch_size,
            "epochs": epochs,
            "best_epoch": result.best_epoch,
            "loss": best["val_loss"],
            "accuracy": best["val_accuracy"],
        },
    )
    write_json("metrics/train_details.json", {"epochs_run": len(result.history), "threshold": threshold})


if __name__ == "__main__":
    run_command(main, name="train", outputs=OUTPUTS)
