"""The real pipeline on real speech: train on the LibriSpeech sample, test on the cross-corpus set.

What a user does with their own recordings (``corpus: folder``), on the configuration in
params.yaml: the repository's tracked files are copied to a temporary git repo, a manifest is
written that marks the sample's recordings ``train`` (the label stage draws validation speakers
from them) and the cross-corpus recordings ``test``, and ``dvc repro`` runs every stage (the
tune search included). Prints the evaluate stage's test metrics, per corpus too. Both sets are
read in place; nothing is copied into the repository.

    python benchmarks/real_speech_pipeline.py                    # params.yaml as it is
    python benchmarks/real_speech_pipeline.py -S model.name=cnn1d -S features.kind=pitch_mel
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import copy_repo, set_params  # noqa: E402  (the end-to-end tests' repository copy)

SHARED = ROOT.parent / "shared" / "data"  # the real speech at hand, read in place
SAMPLE = str(SHARED / "librispeech-clean100-sample")
CROSS = str(SHARED / "cross-corpus-dev")


def combined_manifest(train_dir: Path, test_dir: Path, rec: Path) -> None:
    """``rec/manifest.csv``: path,speaker,sex,split, train_dir's rows train, test_dir's test. The
    manifest and the recordings it names must lie in the one folder DVC watches, so the recordings
    are hard-linked (copied across file systems) into ``rec/train`` and ``rec/test``, a temporary
    folder deleted afterwards."""
    rows = []
    for folder, split in ((train_dir, "train"), (test_dir, "test")):
        with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                dest = rec / split / r["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(folder / r["path"], dest)
                except OSError:
                    shutil.copyfile(folder / r["path"], dest)
                rows.append(
                    {
                        "path": f"{split}/{r['path']}",
                        "speaker": f"{folder.name}:{r['speaker']}",
                        "sex": r["sex"],
                        "split": split,
                    }
                )
    with open(rec / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "sex", "split"])
        w.writeheader()
        w.writerows(rows)


def per_corpus(repo: Path) -> dict:
    """Accuracy per corpus of the test set (the folder under cross-corpus-dev/audio/)."""
    speakers = {}
    with open(repo / "plots/evaluate/speakers.csv", newline="") as f:
        for r in csv.DictReader(f):
            speakers[r["speaker"]] = r
    out: dict = {}
    for spk, r in speakers.items():
        corpus = spk.split(":", 1)[1].split("_", 1)[0]
        d = out.setdefault(corpus, {"speakers": 0, "speakers_right": 0})
        d["speakers"] += 1
        d["speakers_right"] += float(r["accuracy"]) > 0.5
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default=SAMPLE, help="folder with manifest.csv: training recordings")
    ap.add_argument("--test", default=CROSS, help="folder with manifest.csv: test recordings")
    ap.add_argument(
        "-S",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params.yaml override (YAML value), as dvc exp run -S",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary repository")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="voicegender-real-pipeline-"))
    repo, rec = tmp / "repo", tmp / "recordings"
    repo.mkdir()
    rec.mkdir()
    combined_manifest(Path(args.train), Path(args.test), rec)
    copy_repo(repo)
    updates = {
        "corpus": "folder",
        "data.folder.manifest": str(rec / "manifest.csv"),
        "data.folder.recordings": str(rec),
    }
    for o in args.overrides:
        key, value = o.split("=", 1)
        updates[key] = yaml.safe_load(value)
    set_params(repo, updates)
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    started = time.perf_counter()
    proc = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        print(f"dvc repro failed; repository kept in {repo}", file=sys.stderr)
        return 1
    ev = json.loads((repo / "metrics/evaluate.json").read_text())
    fz = json.loads((repo / "metrics/featurize.json").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    print(
        f"configuration: features.kind={params['features']['kind']} model.name={params['model']['name']} "
        + " ".join(args.overrides)
    )
    print(f"dvc repro: {wall:.0f} s; featurize skipped {fz['skipped']} recordings")
    print(
        f"test (cross-corpus): accuracy {ev['accuracy']:.4f}, balanced accuracy {ev['balanced_accuracy']:.4f}, "
        f"ROC AUC {ev['roc_auc']:.4f}, speaker accuracy {ev['speaker_accuracy']:.4f} "
        f"({ev['n_utterances']} utterances, {ev['n_speakers']} speakers)"
    )
    for corpus, d in sorted(per_corpus(repo).items()):
        print(f"  {corpus:<12} speakers right by majority vote: {d['speakers_right']}/{d['speakers']}")
    robustness = repo / "metrics/robustness.json"
    if robustness.is_file():
        print("robustness (test recordings under each condition; no speech counts as wrong):")
        scored = json.loads((repo / "metrics/robustness_details.json").read_text())
        for name, s in json.loads(robustness.read_text()).items():
            print(
                f"  {name:<12} accuracy {s['accuracy']:.4f}  balanced {s['balanced_accuracy']:.4f}  "
                f"no speech {s['no_speech']}/{scored[name]['recordings']}"
            )
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept: {repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
