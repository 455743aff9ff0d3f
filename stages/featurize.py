"""featurize stage: one feature array per utterance, read straight from the archives.

Reads data/labels.csv and the audio it points at; writes data/features/ (train / val / test
arrays, labels, ids, speakers) and metrics/featurize.json (unreadable recordings, skipped).
"""

import time

import numpy as np
from tqdm import tqdm

from voicegender import corpus
from voicegender.dataset import FEMALE, SPLITS, read_labels, save_features
from voicegender.features import extract_many, feature_shape
from voicegender.params import load_params
from voicegender.reporting import write_json


def main() -> None:
    params = load_params()
    config = params["features"]
    rows = read_labels("data/labels.csv")
    by_key = {(r["source"], r["member"]): r for r in rows}
    sources = sorted({r["source"] for r in rows})

    def items():
        for source in sources:
            wanted = {m for (s, m) in by_key if s == source}
            for member, data in corpus.iter_audio(source, wanted):
                yield f"{source}\0{member}", data

    features, failed = {}, {}
    started, seconds = time.perf_counter(), sum(r["seconds"] for r in rows)
    bar = tqdm(total=len(rows), unit="utt", desc=f"featurize {config['kind']}", mininterval=2)
    for key, vector, error in extract_many(items(), config, n_jobs=config["n_jobs"]):
        row = by_key[tuple(key.split("\0"))]
        if error is None:
            features[row["id"]] = vector
        else:
            failed[row["id"]] = error
            tqdm.write(f"skipped {row['id']}: {error}")
        bar.update()
    bar.close()
    wall = time.perf_counter() - started
    print(f"featurize: {len(features)} utterances, {seconds / 3600:.2f} h of audio in {wall:.1f} s "
          f"({seconds / max(wall, 1e-9):.0f}x real time); {len(failed)} skipped", flush=True)

    shape = feature_shape(config)
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split and r["id"] in features]
        X = np.stack([features[r["id"]] for r in part]) if part else np.zeros((0, *shape), np.float32)
        y = np.array([FEMALE if r["sex"] == "F" else 1 - FEMALE for r in part], dtype=np.float32)
        save_features("data/features", split, X, y, [r["id"] for r in part], [r["speaker"] for r in part])
    missing = [r["id"] for r in rows if r["id"] not in features and r["id"] not in failed]
    write_json("metrics/featurize.json", {
        "kind": config["kind"], "shape": list(shape), "utterances": len(features),
        "skipped": len(failed) + len(missing),
        "skipped_ids": {**failed, **{m: "not found in its archive" for m in missing}},
    })


if __name__ == "__main__":
    main()
