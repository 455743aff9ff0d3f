"""Tests for voicegender.audio.augment and the augmented train split of dataset.build_features."""

import io

import numpy as np
import pytest
import soundfile as sf

from voicegender.audio import augment as A
from voicegender.features.featurize import build_features
from voicegender.features.store import load_features
from feature_settings import check, fs
from voicegender.params import AugmentSettings

SR = 16000
SETTINGS = AugmentSettings().model_dump()  # the schema's defaults (params.yaml's)
OFF = {
    "reverb_probability": 0.0,
    "rt60_s": [0.3, 0.3],
    "tilt": [0.0, 0.0],
    "lowpass_probability": 0.0,
    "lowpass_hz": [4000.0, 4000.0],
    "snr_db": [200.0, 200.0],
    "gain_db": [0.0, 0.0],
}


def voice(seconds=1.0, f0=150.0, amp=0.2):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))).astype(np.float32)


def test_copies_are_reproducible_and_independent():
    y = voice()
    settings = AugmentSettings(**SETTINGS)
    a = A.augmented_signals(y, SR, "u1", settings, 2)
    b = A.augmented_signals(y, SR, "u1", settings, 2)
    assert all(x.tobytes() == z.tobytes() for x, z in zip(a, b))  # same bytes
    assert not np.array_equal(a[0], a[1])  # copy 1 and 2 differ
    assert not np.array_equal(a[0], A.augmented_signals(y, SR, "u2", settings, 1)[0])  # so do utterances
    assert not np.array_equal(
        a[0], A.augmented_signals(y, SR, "u1", AugmentSettings(**{**SETTINGS, "seed": 1}), 1)[0]
    )  # and seeds
    assert all(x.dtype == np.float32 and len(x) == len(y) and np.abs(x).max() <= 1.0 for x in a)


def test_a_cap_per_speaker_picks_the_same_recordings_in_any_order():
    rows = [{"id": f"s{s}_{i}", "speaker": f"s{s}"} for s in range(3) for i in range(10)]
    assert A.recordings_to_augment(rows, None, 0) == {r["id"] for r in rows}
    capped = A.recordings_to_augment(rows, 4, 0)
    assert len(capped) == 12 and all(sum(u.startswith(f"s{s}_") for u in capped) == 4 for s in range(3))
    assert A.recordings_to_augment(rows[::-1], 4, 0) == capped  # independent of the rows' order
    assert A.recordings_to_augment(rows, 4, 1) != capped  # the seed chooses
    assert A.recordings_to_augment(rows, 20, 0) == {r["id"] for r in rows}  # fewer than the cap: all


def test_with_every_effect_off_the_signal_is_unchanged():
    y = voice()
    out = A.augment(y, SR, A.rng_for(0, "u", 1), **OFF)
    np.testing.assert_allclose(out, y, atol=1e-6)


def test_noise_is_added_at_the_drawn_snr():
    y = voice(3.0)
    out = A.augment(y, SR, A.rng_for(0, "u", 1), **{**OFF, "snr_db": [10.0, 10.0]})
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((out - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)


def test_gain_and_lowpass_do_what_they_say():
    y = voice()
    quiet = A.augment(y, SR, A.rng_for(0, "u", 1), **{**OFF, "gain_db": [-20.0, -20.0]})
    np.testing.assert_allclose(quiet, 0.1 * y, atol=1e-6)
    t = np.arange(SR) / SR
    two_tones = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    low = A.augment(
        two_tones, SR, A.rng_for(0, "u", 1), **{**OFF, "lowpass_probability": 1.0, "lowpass_hz": [2000.0, 2000.0]}
    )
    spec = np.abs(np.fft.rfft(low[SR // 4 :]))
    freqs = np.fft.rfftfreq(len(low) - SR // 4, 1 / SR)
    assert spec[np.argmin(np.abs(freqs - 6000))] < 1e-3 * spec[np.argmin(np.abs(freqs - 300))]


def test_room_impulse_response_decays_by_60_db_in_rt60():
    rir = A.room_impulse_response(SR, 0.5, np.random.default_rng(0))
    assert len(rir) == SR // 2 and np.sum(rir**2) == pytest.approx(1.0)
    env = np.exp(-np.log(1000.0) * np.arange(len(rir)) / len(rir))
    assert 20 * np.log10(env[-1] / env[0]) == pytest.approx(-60.0, abs=0.1)


@pytest.mark.parametrize(
    "key, bad, message",
    [
        ("copies", -1, "features.augment.copies"),
        ("snr_db", [30.0, 5.0], "features.augment.snr_db"),
        ("reverb_probability", 1.5, "features.augment.reverb_probability"),
        ("tilt", [-1.0, 0.5], "features.augment.tilt"),
        ("rt60_s", [0.0, 0.5], "features.augment.rt60_s"),
        ("loudness", 1, "features.augment.loudness"),
        ("max_per_speaker", 0, "features.augment.max_per_speaker"),
    ],
)
def test_bad_settings_are_named(key, bad, message):
    with pytest.raises(ValueError, match=message):
        check({"augment": {key: bad}})


def _wav(y):
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_only_training_recordings_get_augmented_copies(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    rows = []
    for i, (split, sex) in enumerate([("train", "F"), ("train", "M"), ("val", "F"), ("test", "M")]):
        (rec / f"{i}.wav").write_bytes(_wav(voice(0.5, 120.0 + 40 * i)))
        rows.append(
            {
                "id": f"u{i}",
                "speaker": f"s{i}",
                "sex": sex,
                "split": split,
                "source": str(rec),
                "member": f"{i}.wav",
                "seconds": 0.5,
            }
        )
    (rec / "bad.wav").write_bytes(b"RIFF not audio")
    rows.append(
        {
            "id": "bad",
            "speaker": "s9",
            "sex": "F",
            "split": "train",
            "source": str(rec),
            "member": "bad.wav",
            "seconds": 0.5,
        }
    )
    config = fs({"kind": "pitch_stats", "n_jobs": 1, "augment": {"copies": 2}})
    report = build_features(rows, config, tmp_path / "f", log=lambda m: None)
    train, val, test = (load_features(tmp_path / "f", s) for s in ("train", "val", "test"))
    assert list(train["ids"]) == ["u0", "u1", "u0~aug1", "u1~aug1", "u0~aug2", "u1~aug2"]
    assert list(train["speakers"]) == ["s0", "s1"] * 3 and list(train["y"]) == list(train["y"][:2]) * 3
    assert list(val["ids"]) == ["u2"] and list(test["ids"]) == ["u3"]
    assert report["utterances"] == 4 and report["augmented"] == 4 and list(report["skipped"]) == ["bad"]
    assert not np.array_equal(train["X"][0], train["X"][2])  # the copy really is altered
    again = build_features(rows, config, tmp_path / "g", log=lambda m: None)
    assert again == report
    for name in ("X", "ids"):
        assert (tmp_path / "f" / f"train_{name}.npy").read_bytes() == (
            tmp_path / "g" / f"train_{name}.npy"
        ).read_bytes()
    assert config.augment.copies == 2


@pytest.mark.parametrize("kind", ["pitch_stats", "ge2e"])
def test_copies_are_capped_per_speaker_and_the_same_for_any_n_jobs(tmp_path, kind):
    rec = tmp_path / "rec"
    rec.mkdir()
    rows = []
    for i in range(6):  # two speakers, three recordings each
        (rec / f"{i}.wav").write_bytes(_wav(voice(1.0, 110.0 + 30 * i)))
        rows.append(
            {
                "id": f"u{i}",
                "speaker": f"s{i % 2}",
                "sex": "FM"[i % 2],
                "split": "train",
                "source": str(rec),
                "member": f"{i}.wav",
                "seconds": 1.0,
            }
        )
    config = {"kind": kind, "augment": {"copies": 1, "max_per_speaker": 2}}
    one = build_features(rows, fs({**config, "n_jobs": 1}), tmp_path / "one", log=lambda m: None)
    two = build_features(rows, fs({**config, "n_jobs": 2}), tmp_path / "two", log=lambda m: None)
    ids = list(load_features(tmp_path / "one", "train")["ids"])
    copies = [u for u in ids if "~aug" in u]
    assert one == two and one["augmented"] == 4 and len(copies) == 4
    chosen = A.recordings_to_augment(rows, 2, 0)
    assert {u.split("~")[0] for u in copies} == chosen
    for name in ("X", "ids"):
        assert (tmp_path / "one" / f"train_{name}.npy").read_bytes() == (
            tmp_path / "two" / f"train_{name}.npy"
        ).read_bytes()


def test_ge2e_train_rate_embeds_the_training_side_at_its_own_rate(tmp_path):
    from voicegender.features.kinds import compute_features

    rec = tmp_path / "rec"
    rec.mkdir()
    rows, signals = [], {}
    for i, split in enumerate(["train", "val", "test"]):
        signals[f"u{i}"] = voice(4.0, 120.0 + 40 * i)
        (rec / f"{i}.wav").write_bytes(_wav(signals[f"u{i}"]))
        rows.append(
            {
                "id": f"u{i}",
                "speaker": f"s{i}",
                "sex": "FM"[i % 2],
                "split": split,
                "source": str(rec),
                "member": f"{i}.wav",
                "seconds": 4.0,
            }
        )
    base = {"kind": "ge2e", "n_jobs": 1, "augment": {"copies": 0}}
    build_features(rows, fs(base), tmp_path / "same", log=lambda m: None)
    build_features(rows, fs({**base, "ge2e_train_rate": 0.625}), tmp_path / "own", log=lambda m: None)
    for split, uid in (("train", "u0"), ("val", "u1"), ("test", "u2")):
        same, own = (load_features(tmp_path / d, split)["X"][0] for d in ("same", "own"))
        y = np.asarray(sf.read(io.BytesIO(_wav(signals[uid])), dtype="float32")[0])  # as stored: 16-bit
        at_train_rate = compute_features(y, SR, fs({**base, "ge2e_rate": 0.625}))
        if split == "test":  # test stays at ge2e_rate
            np.testing.assert_array_equal(own, same)
        else:
            np.testing.assert_array_equal(own, at_train_rate)
            assert not np.array_equal(own, same)  # 4 s: 5 overlapping partials at 1.3 a second, 2 at 0.625


def test_ge2e_train_rate_is_checked():
    with pytest.raises(ValueError, match="features.ge2e_train_rate"):
        check({"ge2e_train_rate": 0.1})
