"""label stage: one row per utterance with its speaker, sex, split and where its audio is.

Reads data/raw/corpus.json; writes data/labels.csv, metrics/data.json (speakers, utterances, hours
per split and sex), metrics/data_details.json (totals, exclusions) and plots/data/summary.png.
Speakers and utterances are counted from the audio actually present, not from metadata.
"""

from pathlib import Path

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

import json

from voicegender.corpora import switch as corpus
from voicegender.corpora.labels import SEXES, SPLITS, assign_splits, cap_per_speaker, data_summary, write_labels
from voicegender.params import load_params
from voicegender.evaluation.plots import plot_data_summary
from voicegender.evaluation.reports import write_json
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("data/labels.csv", "metrics/data.json", "metrics/data_details.json", "plots/data")


def main() -> None:
    params = load_params()
    info = json.loads(Path("data/raw/corpus.json").read_text())
    rows, unknown_sex = corpus.label_rows(info)
    data = params.data
    assign_splits(rows, seed=data.seed, val_fraction=data.val_fraction, test_fraction=data.folder.test_fraction)
    # data.max_per_speaker: train and val use at most this many recordings a speaker (test all);
    # the labels, and so every count below, hold only the recordings used
    rows, left_out = cap_per_speaker(rows, data.max_per_speaker, data.seed)
    write_labels(rows, "data/labels.csv")
    left = data_summary(left_out)

    summary = data_summary(rows)
    # metrics/data.json (DESIGN's contract): per split and sex; totals and exclusions are details
    write_json("metrics/data.json", {split: {sex: summary[split][sex] for sex in SEXES} for split in SPLITS})
    write_json(
        "metrics/data_details.json",
        {
            "total": {split: summary[split]["total"] for split in SPLITS},
            "excluded": {"unknown_sex": len(unknown_sex), "unknown_sex_ids": sorted(unknown_sex)[:100]},
            # recordings present but not used under data.max_per_speaker, per split
            "left_out": {
                "max_per_speaker": data.max_per_speaker,
                **{split: {k: left[split]["total"][k] for k in ("utterances", "hours")} for split in ("train", "val")},
            },
        },
    )
    table = [
        {"group": f"{split} {sex}", "split": split, "sex": sex, **summary[split][sex]}
        for split in SPLITS
        for sex in SEXES
    ]
    plot_data_summary(table, "plots/data/summary.png")
    print(
        "label: "
        + ", ".join(
            f"{s}: {summary[s]['total']['speakers']} speakers / {summary[s]['total']['utterances']} utterances"
            for s in SPLITS
        )
        + (
            f" ({len(left_out)} train / val utterances left out: data.max_per_speaker {data.max_per_speaker})"
            if left_out
            else ""
        ),
        flush=True,
    )


if __name__ == "__main__":
    run_command(main, name="label", outputs=OUTPUTS)
