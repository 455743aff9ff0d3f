"""Degraded listening conditions (voicegender.audio.degrade) and their scoring (voicegender.evaluation.robustness)."""

import numpy as np
import pytest

from signals import voice
from voicegender.audio import degrade as dg
from voicegender.params import ParamError, RobustnessSettings, validate, validate_params
from voicegender.evaluation.robustness import babble_talkers, condition_scores, degraded_versions

SR = 16000


def rms_db(y):
    return 20 * np.log10(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def band_share(y, sr, low, high):
    """Share of the signal's energy between low and high Hz."""
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.size, 1 / sr)
    return spec[(f >= low) & (f <= high)].sum() / spec.sum()


@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_noise_lands_at_the_asked_snr(snr):
    y = voice(150, 2.0, SR)
    out, sr = dg.add_noise(y, SR, snr, np.random.default_rng(0))
    assert sr == SR and out.dtype == np.float32 and out.size == y.size
    assert dg.snr_db(y, out) == pytest.approx(snr, abs=0.3)


def test_babble_sits_at_the_asked_snr_and_never_holds_the_target_speaker():
    y = voice(120, 2.0, SR)
    pool = [(f"u{i}", f"spk{i % 4}", voice(100 + 30 * i, 1.0 + 0.1 * i, SR), SR) for i in range(8)]
    target = ("t", "spk0", y, SR)
    others = babble_talkers(target, pool, 3, np.random.default_rng(1))
    assert len(others) == 3
    spk0 = {rec[2].tobytes() for rec in pool if rec[1] == "spk0"}
    assert not any(o.tobytes() in spk0 for o in others)  # other speakers only
    out, _ = dg.mix_babble(y, SR, others, 5.0, np.random.default_rng(2))
    assert dg.snr_db(y, out) == pytest.approx(5.0, abs=0.3)
    # fewer other speakers than asked: all of them, no repeats
    assert len(babble_talkers(target, pool[:3], 5, np.random.default_rng(1))) == 2


def test_rooms_reverberate_longer_for_a_longer_rt60():
    import pyroomacoustics as pra

    measured = [pra.experimental.measure_rt60(dg.room_impulse_response(SR, rt60, 0, 0), fs=SR) for rt60 in (0.3, 0.9)]
    assert measured[0] < measured[1]
    assert measured[1] > 0.6
    y = voice(200, 1.0, SR)
    out, sr = dg.reverberate(y, SR, dg.room_impulse_response(SR, 0.3, 0, 0))
    assert sr == SR and out.size == y.size
    assert rms_db(out) == pytest.approx(rms_db(y), abs=0.5)
    assert not np.allclose(out, y, atol=1e-3)


@pytest.mark.parametrize("codec", ["mulaw", "gsm"])
def test_telephone_is_8_khz_and_band_limited(codec):
    y = dg.add_noise(voice(180, 2.0, SR), SR, 20.0, np.random.default_rng(0))[0]  # energy at every frequency
    out, sr = dg.telephone(y, SR, 300.0, 3400.0, codec)
    assert sr == 8000 and out.size == pytest.approx(y.size / 2, abs=64)
    assert band_share(out, sr, 0, 200) < 0.1 * band_share(y, SR, 0, 200)  # the fundamental mostly gone
    assert band_share(out, sr, 300, 3400) > 0.9


def test_mp3_keeps_the_rate_and_most_of_the_signal():
    y = voice(150, 2.0, SR)
    out, sr = dg.mp3(y, SR, 32)
    assert sr == SR and y.size <= out.size < y.size + SR // 5  # the codec's padding only
    assert band_share(out, sr, 100, 4000) > 0.9


def test_level_sets_the_rms_on_a_16_bit_grid():
    out, _ = dg.set_level(voice(150, 1.0, SR), SR, -45.0)
    assert rms_db(out) == pytest.approx(-45.0, abs=0.1)
    assert np.allclose(out * 32767, np.round(out * 32767), atol=1e-3)


def test_scores_count_no_speech_as_wrong():
    s = condition_scores([1, 1, 0, 0], [0.9, None, 0.1, 0.8], threshold=0.5)
    assert s == {"accuracy": 0.5, "balanced_accuracy": 0.5, "no_speech": 1, "recordings": 4}
    s = condition_scores([1, 1, 1, 0], [0.9, 0.9, 0.9, 0.1], threshold=0.5)
    assert s["accuracy"] == 1.0 and s["balanced_accuracy"] == 1.0 and s["no_speech"] == 0


def test_degraded_versions_are_the_same_bytes_in_any_order():
    settings = validate_params({}).robustness.model_copy(
        update={"conditions": validate(RobustnessSettings, {"conditions": CONDITIONS}, "t").conditions}
    )
    recs = [(f"u{i}", f"spk{i % 3}", voice(110 + 20 * i, 0.8, SR), SR) for i in range(5)]
    first = {key: y.tobytes() for key, y, _ in degraded_versions(recs, settings.conditions, seed=3)}
    again = {key: y.tobytes() for key, y, _ in degraded_versions(recs[::-1], settings.conditions, seed=3)}
    assert first == again
    assert len(first) == len(recs) * len(CONDITIONS)
    other_seed = {key: y.tobytes() for key, y, _ in degraded_versions(recs, settings.conditions, seed=4)}
    assert other_seed[("u0", "noise")] != first[("u0", "noise")]


CONDITIONS = {
    "clean": {"kind": "clean"},
    "noise": {"kind": "noise", "snr_db": 5.0},
    "babble": {"kind": "babble", "talkers": 2, "snr_db": 5.0},
    "room": {"kind": "room", "rt60_s": 0.4, "rooms": 2},
    "phone": {"kind": "telephone"},
    "mp3": {"kind": "mp3", "bitrate_kbps": 32},
    "quiet": {"kind": "level", "dbfs": -45.0},
}


def test_a_bad_condition_is_named():
    with pytest.raises(ParamError, match="robustness.conditions.loud"):
        validate_params({"robustness": {"conditions": {"loud": {"kind": "level", "dbfs": 6.0}}}})
    with pytest.raises(ParamError, match="robustness.conditions.x"):
        validate_params({"robustness": {"conditions": {"x": {"kind": "thunder"}}}})


def test_every_condition_kind_of_the_schema_has_a_degradation():
    from voicegender.params import CONDITION_KINDS

    assert set(dg.DEGRADATIONS) == set(CONDITION_KINDS)


def test_snr_is_against_the_active_speech_not_the_padding():
    y = np.concatenate([voice(150, 1.0, SR), np.zeros(SR, np.float32)])  # half digital silence
    out, _ = dg.add_noise(y, SR, 10.0, np.random.default_rng(0))
    active = slice(0, SR)
    assert dg.snr_db(y[active], out[active]) == pytest.approx(10.0, abs=0.3)
