"""featurize skips (and reports) recordings with too little speech; model cards say what data they saw."""

import hashlib

import numpy as np
import pytest
import soundfile as sf

from feature_settings import fs
from voicegender.features.featurize import build_features
from voicegender.features.store import load_features, training_data_card

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FEATURES = {
    "kind": "log_mel_stats",
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 16,
    "n_mfcc": 8,
    "augment": {"copies": 0},
}  # the speech check alone (augmented copies: tests/test_augment.py)
SPEECH = {
    "min_speech_s": 0.5,
    "threshold": 0.5,
    "neg_threshold": 0.35,
    "min_segment_s": 0.25,
    "min_silence_s": 0.3,
    "pad_s": 0.1,
}


@pytest.mark.parametrize("kind", ["log_mel_stats", "ge2e"])  # ge2e: its batched extraction path
@pytest.mark.parametrize("n_jobs", [1, 2])  # 2: the check runs in the worker processes
def test_featurize_skips_a_silent_recording_and_says_why(tmp_path, utterance, n_jobs, kind):
    y, sr, _ = utterance
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = []
    for name, samples in (
        ("a", y),
        ("silent", np.zeros(3 * sr, dtype=np.float32)),
        ("b", y[::-1].copy()),
        ("c", y),
        ("d", y),
    ):
        sf.write(audio / f"{name}.wav", samples, sr)
        rows.append(
            {
                "id": name,
                "speaker": name,
                "sex": "F",
                "split": "train",
                "source": str(audio),
                "member": f"{name}.wav",
                "seconds": samples.size / sr,
            }
        )
    report = build_features(
        rows, fs({**FEATURES, "kind": kind, "n_jobs": n_jobs}), tmp_path / "features", log=lambda m: None, speech=SPEECH
    )
    assert list(report["skipped"]) == ["silent"]
    assert "no speech" in report["skipped"]["silent"] and "0.5 s" in report["skipped"]["silent"]
    assert load_features(tmp_path / "features", "train")["ids"].tolist() == ["a", "b", "c", "d"]
    # without the check (speech=None) nothing is skipped: the check is what skipped it
    report = build_features(rows, fs({**FEATURES, "n_jobs": 1}), tmp_path / "features2", log=lambda m: None)
    assert report["skipped"] == {}


def test_training_data_card_records_corpus_subsets_counts_and_fingerprint(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,speaker\n1,a\n")
    info = {
        "corpus": "libritts",
        "sources": [
            {"role": "train", "subset": "dev-clean", "path": "x"},
            {"role": "test", "subset": "test-clean", "path": "y"},
        ],
    }
    splits = {
        "train": {"y": np.array([1, 1, 0]), "speakers": np.array(["a", "a", "b"])},
        "test": {"y": np.array([0]), "speakers": np.array(["c"])},
    }
    card = training_data_card(info, labels, splits)
    assert card["corpus"] == "libritts" and card["generated"] is False
    assert card["subsets"] == {"train": "dev-clean", "test": "test-clean"}
    assert card["labels_sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()
    assert card["splits"]["train"] == {"utterances": 3, "speakers": 2, "female_utterances": 2, "male_utterances": 1}
    assert training_data_card({"corpus": "synthetic"}, labels, {})["generated"] is True
    folder = training_data_card({"corpus": "folder", "manifest": "/data/m.csv", "sources": []}, labels, {})
    assert folder["manifest"] == "/data/m.csv"


def test_the_batched_speech_check_gives_the_same_bytes_for_any_n_jobs(tmp_path, utterance):
    # the check scores a chunk's recordings together: chunks must not depend on n_jobs
    from voicegender.features.extraction import extract_many

    y, sr, _ = utterance
    rng = np.random.default_rng(0)
    signals = [
        y,
        np.zeros(2 * sr, np.float32),
        y[::-1].copy(),
        (0.1 * rng.standard_normal(2 * sr)).astype(np.float32),
        y[: sr // 3].copy(),
        y,
        y[::-1].copy(),
    ]
    items = []
    for i, samples in enumerate(signals):
        sf.write(tmp_path / f"{i}.wav", samples, sr)
        items.append((f"u{i}", (tmp_path / f"{i}.wav").read_bytes(), f"u{i}", 1))
    config = fs({**FEATURES, "augment": {"copies": 1}})
    runs = [list(extract_many(iter(items), config, n_jobs=n_jobs, chunksize=3, speech=SPEECH)) for n_jobs in (1, 2)]
    assert [(k, e) for k, _, e in runs[0]] == [(k, e) for k, _, e in runs[1]]
    assert all(a is None and b is None or a.tobytes() == b.tobytes() for (_, a, _), (_, b, _) in zip(*runs))
    ok = [k for k, _, e in runs[0] if e is None]
    assert ok == ["u0", ("u0", 1), "u2", ("u2", 1), "u5", ("u5", 1), "u6", ("u6", 1)]  # copies follow their recording
