"""baselines stage: scikit-learn classifiers on the networks' features and splits.

Reads data/features/; writes metrics/baselines.json (per model: balanced accuracy on val and
test, what one compares), metrics/baselines_details.json (also the threshold chosen on val,
accuracy, ROC AUC, F1, speaker accuracy) and plots/baselines/comparison.csv (one row per model,
for `dvc plots show`).
"""

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

from voicegender.evaluation.baselines import run_baselines
from voicegender.features.store import load_features
from voicegender.runtime import resolve_n_jobs
from voicegender.params import load_params
from voicegender.evaluation.reports import write_json, write_table
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("metrics/baselines.json", "metrics/baselines_details.json", "plots/baselines")


def main() -> None:
    params = load_params()
    config = params.baselines
    splits = {s: load_features("data/features", s) for s in ("train", "val", "test")}
    results = run_baselines(
        config.models,
        config,
        splits["train"],
        splits["val"],
        splits["test"],
        seed=params.train.seed,
        n_jobs=resolve_n_jobs(config.n_jobs),
    )
    for name, r in results.items():
        test = r.get("test", {})
        print(
            f"baselines: {name:<24} val balanced acc {r['val']['balanced_accuracy']:.4f}  "
            f"test acc {test.get('accuracy', float('nan')):.4f} balanced {test.get('balanced_accuracy', float('nan')):.4f} "
            f"({r['fit_s']:.1f} s)",
            flush=True,
        )
    # fit time varies run to run: keep it out of the metrics so they diff only on content. What one
    # compares (`dvc exp show`): each model's balanced accuracy on val (choose on it) and test
    write_json(
        "metrics/baselines.json",
        {
            name: {s: {"balanced_accuracy": r[s]["balanced_accuracy"]} for s in ("val", "test") if s in r}
            for name, r in results.items()
        },
    )
    write_json(
        "metrics/baselines_details.json",
        {name: {k: v for k, v in r.items() if k != "fit_s"} for name, r in results.items()},
    )

    # wide: one row per model, one column per split and metric (the bar templates take one x column)
    rows = [
        {
            "model": name,
            **{
                f"{split}_{m}": r[split][m]
                for split in ("val", "test")
                if split in r
                for m in ("accuracy", "balanced_accuracy", "roc_auc", "speaker_accuracy")
            },
        }
        for name, r in results.items()
    ]
    write_table("plots/baselines/comparison.csv", rows)  # drawn by `dvc plots show` (dvc.yaml)


if __name__ == "__main__":
    run_command(main, name="baselines", outputs=OUTPUTS)
