import random

import numpy as np
import pytest

from voicegender.corpora.labels import cap_per_speaker, data_summary, read_labels, split_speakers, write_labels
from voicegender.features.store import load_features, save_features


def test_split_is_speaker_disjoint_stratified_and_reproducible():
    sexes = {f"f{i}": "F" for i in range(10)} | {f"m{i}": "M" for i in range(10)}
    val = split_speakers(sexes, 0.2, seed=1)
    assert sum(s.startswith("f") for s in val) == 2 and sum(s.startswith("m") for s in val) == 2
    assert val == split_speakers(sexes, 0.2, seed=1)
    assert val != split_speakers(sexes, 0.2, seed=2)


def test_split_keeps_at_least_one_training_speaker_per_sex():
    val = split_speakers({"a": "F", "b": "F", "c": "M", "d": "M"}, 0.9, seed=0)
    assert len(val) == 2


def test_labels_round_trip_and_summary(tmp_path):
    rows = [
        {
            "id": "1_1_1_1",
            "speaker": "1",
            "sex": "F",
            "split": "train",
            "source": "a.tar.gz",
            "member": "x.wav",
            "seconds": 1800.0,
        },
        {
            "id": "2_1_1_1",
            "speaker": "2",
            "sex": "M",
            "split": "test",
            "source": "b.tar.gz",
            "member": "y.wav",
            "seconds": 3600.0,
        },
    ]
    write_labels(rows, tmp_path / "labels.csv")
    back = read_labels(tmp_path / "labels.csv")
    assert [r["id"] for r in back] == ["1_1_1_1", "2_1_1_1"]
    s = data_summary(back)
    assert s["train"]["F"] == {"speakers": 1, "utterances": 1, "hours": 0.5}
    assert s["test"]["M"]["hours"] == 1.0 and s["val"]["total"]["utterances"] == 0


def test_features_round_trip_byte_identical(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    for d in ("a", "b"):
        save_features(tmp_path / d, "train", X, [1, 0, 1], ["u1", "u2", "u3"], ["s1", "s2", "s1"])
    back = load_features(tmp_path / "a", "train")
    assert np.array_equal(back["X"], X) and list(back["ids"]) == ["u1", "u2", "u3"]
    for name in ("X", "y", "ids", "speakers"):
        assert (tmp_path / "a" / f"train_{name}.npy").read_bytes() == (
            tmp_path / "b" / f"train_{name}.npy"
        ).read_bytes()


def _corpus(per_speaker: int = 100, chapters: int = 5) -> list[dict]:
    """Two training speakers, one val, one test, each with ``per_speaker`` recordings in ``chapters`` chapters."""
    rows = []
    for speaker, split in (("1", "train"), ("2", "train"), ("3", "val"), ("4", "test")):
        for k in range(per_speaker):
            chapter = 100 + k * chapters // per_speaker
            rows.append({"id": f"{speaker}_{chapter}_000000_{k:06d}", "speaker": speaker, "split": split})
    return rows


def test_cap_keeps_at_most_n_of_each_train_and_val_speaker_and_every_test_recording():
    rows = _corpus()
    kept, left_out = cap_per_speaker(rows, 10, seed=42)
    count = {s: sum(r["speaker"] == s for r in kept) for s in "1234"}
    assert count == {"1": 10, "2": 10, "3": 10, "4": 100}
    assert len(left_out) == 270 and not any(r["split"] == "test" for r in left_out)
    assert {r["id"] for r in kept} | {r["id"] for r in left_out} == {r["id"] for r in rows}
    assert [r["id"] for r in kept] == [r["id"] for r in rows if r in kept]  # the rows' order


def test_cap_is_seeded_and_independent_of_the_rows_order():
    rows = _corpus()
    ids = {r["id"] for r in cap_per_speaker(rows, 10, seed=42)[0]}
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert {r["id"] for r in cap_per_speaker(shuffled, 10, seed=42)[0]} == ids
    assert {r["id"] for r in cap_per_speaker(rows, 10, seed=43)[0]} != ids


def test_cap_spreads_over_the_speakers_recordings():
    # 100 recordings in 5 chapters of 20: 10 chosen = 2 from every chapter, never a run of the first ones
    for seed in range(20):
        kept, _ = cap_per_speaker(_corpus(), 10, seed=seed)
        for speaker in "123":
            chapters = [r["id"].split("_")[1] for r in kept if r["speaker"] == speaker]
            assert sorted(chapters) == sorted([str(c) for c in range(100, 105)] * 2), (seed, speaker, chapters)


def test_no_cap_or_a_cap_above_the_count_keeps_everything():
    rows = _corpus(per_speaker=7)
    for cap in (None, 7, 100):
        kept, left_out = cap_per_speaker(rows, cap, seed=0)
        assert kept == rows and left_out == []


@pytest.mark.parametrize("cap", [1, 3, 29, 99])
def test_cap_keeps_exactly_n_distinct_recordings(cap):
    kept, _ = cap_per_speaker(_corpus(), cap, seed=7)
    for speaker in "123":
        ids = [r["id"] for r in kept if r["speaker"] == speaker]
        assert len(ids) == len(set(ids)) == cap


def test_label_stage_caps_train_and_val_never_test_and_counts_what_it_uses(tmp_path):
    """stages/label.py with data.max_per_speaker 2: data.json counts the recordings used (2 of
    each train / val speaker's 5, all 5 of each test speaker's), data_details.json what was left out."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from libritts_fixture import make_wav

    root = Path(__file__).resolve().parents[1]
    rec = tmp_path / "rec"
    rec.mkdir()
    lines = ["path,speaker,sex,split"]
    speakers = [("f1", "F", "train"), ("f2", "F", "train"), ("m1", "M", "train"), ("m2", "M", "train")]
    speakers += [("f9", "F", "test"), ("m9", "M", "test")]
    for speaker, sex, split in speakers:
        for k in range(5):
            (rec / f"{speaker}_{k}.wav").write_bytes(make_wav(sex, speaker, k))
            lines.append(f"{speaker}_{k}.wav,{speaker},{sex},{split}")
    (rec / "manifest.csv").write_text("\n".join(lines) + "\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["corpus"] = "folder"
    params["data"]["folder"].update(manifest=str(rec / "manifest.csv"), recordings=str(rec))
    params["data"]["max_per_speaker"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(root / "stages", tmp_path / "stages")
    shutil.copytree(root / "src", tmp_path / "src")
    for stage in ("download", "label"):
        proc = subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "metrics/data.json").read_text())
    used = {split: sum(data[split][sex]["utterances"] for sex in "FM") for split in ("train", "val", "test")}
    speakers_used = {split: sum(data[split][sex]["speakers"] for sex in "FM") for split in ("train", "val", "test")}
    assert speakers_used == {"train": 2, "val": 2, "test": 2}
    assert used == {"train": 4, "val": 4, "test": 10}
    left = json.loads((tmp_path / "metrics/data_details.json").read_text())["left_out"]
    assert left["max_per_speaker"] == 2
    assert left["train"]["utterances"] == 6 and left["val"]["utterances"] == 6 and left["train"]["hours"] > 0
    labels = read_labels(tmp_path / "data/labels.csv")
    assert len(labels) == 18
    assert "12 train / val utterances left out" in proc.stdout
