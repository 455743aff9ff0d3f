"""label stage: one row per utterance with its speaker, sex, split and where its audio is.

Reads data/raw/corpus.json; writes data/labels.csv, metrics/data.json and plots/data/.
Speakers and utterances are counted from the audio actually present, not from metadata.
"""

import sys
from pathlib import Path

# this repository's library first, whatever is installed where: DVC runs queued and temporary
# experiments in copies of the repository, each with its own src/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json

from voicegender import corpus
from voicegender.dataset import SEXES, SPLITS, data_summary, split_speakers, write_labels
from voicegender.params import load_params
from voicegender.reporting import figure, save_figure, write_json, write_table
from voicegender.errors import run_command


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("data/labels.csv", "metrics/data.json", "plots/data")


def main() -> None:
    params = load_params()
    info = json.loads(Path("data/raw/corpus.json").read_text())
    rows, unknown_sex = [], []
    if info["corpus"] == "folder":
        rows = [{**r, "split": r["split"] or "", "seconds": r["duration_s"] or 0.0}
                for r in corpus.read_folder_manifest(info["manifest"])]
    else:
        for src in info["sources"]:
            scan = corpus.scan_source(src["path"])
            unknown_sex += [u["id"] for u in scan.unknown_sex]
            rows += [{"id": u["id"], "speaker": u["speaker"], "sex": u["sex"],
                      "split": "train" if src["role"] == "train" else "test",
                      "source": src["path"], "member": u["member"], "seconds": u["duration_s"] or 0.0}
                     for u in scan.utterances]
    assign_splits(rows, params)
    write_labels(rows, "data/labels.csv")

    summary = data_summary(rows)
    summary["excluded"] = {"unknown_sex": len(unknown_sex), "unknown_sex_ids": sorted(unknown_sex)[:100]}
    write_json("metrics/data.json", summary)
    table = [{"group": f"{split} {sex}", "split": split, "sex": sex, **summary[split][sex]}
             for split in SPLITS for sex in SEXES]
    write_table("plots/data/summary.csv", table)
    fig, axes = figure(10, 3)
    fig.clf()
    for i, key in enumerate(("speakers", "utterances", "hours")):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.bar([t["group"] for t in table], [t[key] for t in table],
               color=["C3" if t["sex"] == "F" else "C0" for t in table])
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=45)
    save_figure(fig, "plots/data/summary.png")
    print("label: " + ", ".join(f"{s}: {summary[s]['total']['speakers']} speakers / "
                                f"{summary[s]['total']['utterances']} utterances" for s in SPLITS), flush=True)


def assign_splits(rows: list[dict], params: dict) -> None:
    """Speaker-disjoint splits stratified by sex: val speakers from train; for a folder corpus
    without a split column, test speakers too."""
    data = params["data"]
    seed = data["seed"]
    if any(not r["split"] for r in rows):
        sexes = {r["speaker"]: r["sex"] for r in rows}
        test = split_speakers(sexes, data["folder"]["test_fraction"], seed)
        for r in rows:
            r["split"] = r["split"] or ("test" if r["speaker"] in test else "train")
    train_sexes = {r["speaker"]: r["sex"] for r in rows if r["split"] == "train"}
    val = split_speakers(train_sexes, data["val_fraction"], seed + 1)
    for r in rows:
        if r["split"] == "train" and r["speaker"] in val:
            r["split"] = "val"


if __name__ == "__main__":
    run_command(main, name="label", outputs=OUTPUTS)
