import numpy as np

from voicegender.corpora.labels import data_summary, read_labels, split_speakers, write_labels
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
