"""tune stage: Ray Tune search over the space in params.yaml's ``tune.space``.

Reads data/features/; writes models/tuned.yaml (the best trial's settings), metrics/tune.json
and plots/tune/ (one row per trial, learning curves, lr vs accuracy).
"""

from pathlib import Path

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

import shutil

import yaml

from voicegender.features.store import load_features
from voicegender.models.training import fit_standardizer
from voicegender.params import load_params
from voicegender.evaluation.plots import plot_tune_curves
from voicegender.evaluation.reports import write_json, write_table
from voicegender.models.tuning import (
    TrialSettings,
    best_settings,
    describe_best,
    resolve_address,
    run_search,
    search_summary,
    trials_table,
)
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("models/tuned.yaml", "metrics/tune.json", "metrics/tune_details.json", "plots/tune")


def main() -> None:
    params = load_params()
    tune, ray = params.tune, params.ray
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
    address = resolve_address(ray.address)
    # Ray wants an absolute path (or a URI). The local default lives under the repository
    # (data/ is git- and DVC-ignored) and is removed after the search: its results are all
    # in plots/tune and metrics/tune.json. A storage the user names is kept.
    storage = ray.storage or (None if address else str(Path(LOCAL_STORAGE).resolve()))
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
            connect_timeout_s=ray.connect_timeout_s,
            seed=params.train.seed,
            log=lambda m: print(m, flush=True),
        )
    finally:
        if not ray.storage and not address:
            shutil.rmtree(LOCAL_STORAGE, ignore_errors=True)
    print(
        f"tune: {len(result['trials'])} trials, {sum(t['epochs_run'] for t in result['trials'])} epochs, "
        f"wall {result['wall_s']:.1f} s; best {describe_best(result['best'])}",
        flush=True,
    )
    Path("models").mkdir(exist_ok=True)
    Path("models/tuned.yaml").write_text(yaml.safe_dump(best_settings(result["best"]), sort_keys=True))
    write_table("plots/tune/trials.csv", trials_table(result["trials"], list(tune.space)))
    summary = search_summary(result, tune.search)
    write_json("metrics/tune.json", {k: summary[k] for k in ("best", "trials")})  # what one compares
    write_json("metrics/tune_details.json", {k: v for k, v in summary.items() if k not in ("best", "trials")})
    plot_tune_curves(result["trials"], "plots/tune/curves.png")


LOCAL_STORAGE = "data/ray"


if __name__ == "__main__":
    run_command(main, name="tune", outputs=OUTPUTS)
