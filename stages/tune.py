"""tune stage: Ray Tune search over the space in params.yaml's ``tune.space``.

Reads data/features/; writes models/tuned.yaml (the best trial's settings), metrics/tune.json
and plots/tune/ (one row per trial, learning curves, lr vs accuracy).
"""

import sys
from pathlib import Path

# this repository's library first, whatever is installed where: DVC runs queued and temporary
# experiments in copies of the repository, each with its own src/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import shutil

import yaml

from voicegender.dataset import load_features
from voicegender.training import fit_standardizer
from voicegender.params import load_params
from voicegender.plots import plot_tune_curves
from voicegender.reporting import write_json, write_table
from voicegender.tuning import TrialSettings, resolve_address, run_search
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("models/tuned.yaml", "metrics/tune.json", "plots/tune")


def main() -> None:
    params = load_params()
    tune = params.tune
    train, val = load_features("data/features", "train"), load_features("data/features", "val")
    mean, std = fit_standardizer(train["X"]) if params.train.standardize else (None, None)
    # what the train stage uses too: model, optimizer, weight decay, seed, patience, device
    fixed = TrialSettings(
        model=params.model,
        optimizer=params.train.optimizer,
        weight_decay=params.train.weight_decay,
        seed=params.train.seed,
        epochs=params.epochs,
        patience=params.train.patience,
        device=params.device,
        mean=mean,
        std=std,
    )
    # lr and batch_size come from tune.space only (a fixed value: `choice` of one): the top-level
    # lr / batch_size choose between the search's result and a number for the final training,
    # so changing them reruns train, not the search
    address = resolve_address(tune.address)
    # Ray wants an absolute path (or a URI). The local default lives under the repository
    # (data/ is git- and DVC-ignored) and is removed after the search: its results are all
    # in plots/tune and metrics/tune.json. A storage the user names is kept.
    storage = tune.storage or (None if address else str(Path(LOCAL_STORAGE).resolve()))
    if storage and "://" not in storage:
        storage = str(Path(storage).resolve())
    print(
        f"tune: {tune.num_samples} trials ({tune.search} search) on {len(train['X'])} train / "
        f"{len(val['X'])} val utterances ({'cluster ' + address if address else 'local Ray'})",
        flush=True,
    )
    try:
        result = run_search(
            train["X"],
            train["y"],
            val["X"],
            val["y"],
            space=tune.space,
            fixed=fixed,
            num_samples=tune.num_samples,
            metric=tune.metric,
            mode=tune.mode,
            search=tune.search,
            grace_period=tune.asha.grace_period,
            reduction_factor=tune.asha.reduction_factor,
            cpus_per_trial=tune.cpus_per_trial,
            gpus_per_trial=tune.gpus_per_trial,
            address=address,
            storage_path=storage,
            connect_timeout_s=tune.connect_timeout_s,
            seed=params.train.seed,
            log=lambda m: print(m, flush=True),
        )
    finally:
        if not tune.storage and not address:
            shutil.rmtree(LOCAL_STORAGE, ignore_errors=True)
    best = result["best"]
    print(
        f"tune: {len(result['trials'])} trials, {sum(t['epochs_run'] for t in result['trials'])} epochs, "
        f"wall {result['wall_s']:.1f} s; best {_short_best(best)}",
        flush=True,
    )
    Path("models").mkdir(exist_ok=True)
    Path("models/tuned.yaml").write_text(
        yaml.safe_dump(
            {
                **{k: _plain(v) for k, v in best["config"].items()},
                "val_loss": float(best["val_loss"]),
                "val_accuracy": float(best["val_accuracy"]),
            },
            sort_keys=True,
        )
    )

    names = list(tune.space)
    # sampling order, no trial ids, paths or timestamps: the table diffs across runs
    rows = [
        {
            "trial": i,
            **{k: _cell(t["config"].get(k)) for k in names},
            "epochs_run": t["epochs_run"],
            "val_loss": t["val_loss"],
            "val_accuracy": t["val_accuracy"],
            "status": "error" if t["error"] else "ok",
            "error": t["error"] or "",
        }
        for i, t in enumerate(result["trials"])
    ]
    write_table("plots/tune/trials.csv", rows)
    write_table(
        "plots/tune/curves.csv",
        [
            {"trial": i, "epoch": h["epoch"], "val_loss": h["val_loss"], "val_accuracy": h["val_accuracy"]}
            for i, t in enumerate(result["trials"])
            for h in t["history"]
        ],
    )
    write_json(
        "metrics/tune.json",
        {
            "best": {
                "config": {k: _plain(v) for k, v in best["config"].items()},
                "val_loss": best["val_loss"],
                "val_accuracy": best["val_accuracy"],
            },
            "trials": len(result["trials"]),
            "failed": sum(bool(t["error"]) for t in result["trials"]),
            "epochs_total": sum(t["epochs_run"] for t in result["trials"]),
            "search": tune.search,
        },
    )  # no wall time here: it changes from run to run, and this file is hashed (dvc.lock) and diffed
    plot_tune_curves(result["trials"], "plots/tune/curves.png")


LOCAL_STORAGE = "data/ray"


def _short_best(best: dict) -> str:
    return (
        " ".join(
            f"{k}={_plain(v):.3g}" if isinstance(_plain(v), float) else f"{k}={_plain(v)}"
            for k, v in best["config"].items()
        )
        + f" val_loss={best['val_loss']:.4f}"
    )


def _cell(v):
    """A table cell: lists (e.g. channels) as 32-64-128, so the CSV stays one value per cell."""
    return "-".join(map(str, v)) if isinstance(v, (list, tuple)) else _plain(v)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


if __name__ == "__main__":
    run_command(main, name="tune", outputs=OUTPUTS)
