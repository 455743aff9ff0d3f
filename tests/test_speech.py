"""voicegender.audio.speech: speech found in speech, none in non-speech; segments from probabilities."""

import numpy as np
import pytest

from voicegender.audio.speech import (
    NoSpeech,
    WINDOW_S,
    require_speech,
    segments_from_probabilities,
    speech_probabilities,
    speech_segments,
    speech_seconds,
    check_settings,
)
from voicegender.params import validate_params

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VAD = {"threshold": 0.5, "neg_threshold": 0.35, "min_segment_s": 0.25, "min_silence_s": 0.3, "pad_s": 0.1}


def non_speech(name: str, sr: int = 16000, seconds: float = 3.0) -> np.ndarray:
    """Recordings with no speech in them (the issue's list)."""
    rng = np.random.default_rng(0)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    if name == "silence":
        y = np.zeros(n)
    elif name == "white noise":
        y = 0.2 * rng.standard_normal(n)
    elif name == "pink noise":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        y = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(spectrum.size), 1)), n)
        y *= 0.3 / np.abs(y).max()
    elif name == "pure tone":
        y = 0.3 * np.sin(2 * np.pi * 220 * t)
    elif name == "clicks":
        y = np.zeros(n)
        y[:: sr // 4] = 0.9
    elif name == "chord":
        y = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0, 523.2))
    elif name == "chirp":
        y = 0.3 * np.sin(2 * np.pi * (100 * t + (4000 - 100) * t**2 / (2 * seconds)))
    elif name == "mains hum in noise":
        y = 0.3 * np.sin(2 * np.pi * 50 * t) + 0.1 * rng.standard_normal(n)
    elif name == "notes and drums":  # music-like: decaying harmonic notes over noise-burst beats
        y = np.zeros(n)
        for i, start in enumerate(range(0, n, sr // 2)):
            m = np.arange(min(sr // 2, n - start)) / sr
            f = (262, 330, 392, 523, 440, 349)[i % 6]
            y[start : start + m.size] += sum(np.sin(2 * np.pi * k * f * m) / k**1.5 for k in range(1, 8)) * np.exp(
                -4 * m
            )
        for start in range(0, n, sr // 4):
            m = min(2000, n - start)
            y[start : start + m] += 1.5 * rng.standard_normal(m) * np.exp(-np.arange(m) / 300)
        y *= 0.2
    elif name == "under 0.1 s":
        y = 0.2 * rng.standard_normal(int(0.09 * sr))
    else:
        raise ValueError(name)
    return y.astype(np.float32)


NON_SPEECH = (
    "silence",
    "white noise",
    "pink noise",
    "pure tone",
    "clicks",
    "chord",
    "chirp",
    "mains hum in noise",
    "notes and drums",
    "under 0.1 s",
)


def probs_of(pattern: str) -> np.ndarray:
    """'S' = a speech window (p 0.9), '.' = silence (0.05), 'm' = in between (0.4)."""
    return np.array([{"S": 0.9, ".": 0.05, "m": 0.4}[c] for c in pattern])


def test_segments_split_at_long_pauses_only():
    w = WINDOW_S
    probs = probs_of("." * 10 + "S" * 20 + "." * 5 + "S" * 20 + "." * 20 + "S" * 20 + "." * 10)
    vad = {**VAD, "pad_s": 0.0}
    # 5 windows (0.16 s) < min_silence_s: bridged; 20 windows (0.64 s): a split
    segs = segments_from_probabilities(probs, len(probs) * w, **vad)
    assert segs == [(round(10 * w, 3), round(55 * w, 3)), (round(75 * w, 3), round(95 * w, 3))]


def test_short_runs_dropped_hysteresis_kept_and_padding_clipped_and_merged():
    w = WINDOW_S
    vad = {**VAD, "pad_s": 0.0}
    assert segments_from_probabilities(probs_of("." * 10 + "S" * 5 + "." * 20), 35 * w, **vad) == []  # 0.16 s run
    # windows between the two thresholds do not end speech
    [(s, e)] = segments_from_probabilities(probs_of("S" * 10 + "m" * 30 + "S" * 10 + "." * 20), 70 * w, **vad)
    assert (s, e) == (0.0, round(50 * w, 3))
    # padding: clipped at 0 and at the end; overlapping padded segments merge
    segs = segments_from_probabilities(probs_of("S" * 20 + "." * 10 + "S" * 20), 50 * w, **{**VAD, "pad_s": 0.2})
    assert segs == [(0.0, round(50 * w, 3))]


@pytest.mark.parametrize("name", NON_SPEECH)
def test_non_speech_holds_no_speech(name):
    y = non_speech(name)
    assert speech_seconds(y, 16000, **VAD) == 0.0
    with pytest.raises(NoSpeech):
        require_speech(y, 16000, min_speech_s=0.5, **VAD)


def test_speech_is_found_at_any_rate_and_in_blocks(utterance):
    from voicegender.audio.spectral import resample

    y, sr, _ = utterance
    whole = speech_seconds(y, sr, **VAD)
    assert whole > 0.6 * y.size / sr
    assert require_speech(y, sr, min_speech_s=0.5, **VAD) >= 0.5
    y16 = resample(y, sr, 16000)
    assert abs(speech_seconds(y16, 16000, **VAD) - whole) < 0.15
    blocks = [y[i : i + 7001] for i in range(0, y.size, 7001)]  # odd block size: windows straddle blocks
    assert np.allclose(speech_probabilities(blocks, sr), speech_probabilities(y, sr), atol=1e-5)


def test_speech_pause_speech_gives_two_segments(utterance):
    y, sr, _ = utterance
    pause = np.zeros(int(1.5 * sr), dtype=np.float32)
    x = np.concatenate([y, pause, y])
    segs = speech_segments(x, sr, **VAD)
    assert len(segs) == 2
    (s1, e1), (s2, e2) = segs
    boundary, restart = y.size / sr, (y.size + pause.size) / sr
    assert e1 <= boundary + 0.2 and s2 >= restart - 0.3  # each segment ends / starts at the pause
    assert e1 < s2


def test_many_recordings_scored_together_get_the_same_decisions(utterance):
    from voicegender.features.kinds import resample
    from voicegender.audio.speech import VAD_RATE, speech_seconds_many, speech_shortfalls

    y, sr, _ = utterance
    speech = resample(y, sr, VAD_RATE)
    late = np.concatenate([np.zeros(3 * VAD_RATE, np.float32), speech])  # speech only after 3 s of silence
    signals = [
        speech,
        non_speech("silence"),
        late,
        non_speech("white noise"),
        speech[: VAD_RATE // 4],
        np.zeros(0, np.float32),
        non_speech("under 0.1 s"),
    ]
    one_by_one = [speech_seconds(s, VAD_RATE, enough_s=0.5, **VAD) for s in signals]
    together = speech_seconds_many(signals, enough_s=0.5, **VAD)
    assert (
        [a >= 0.5 for a in one_by_one]
        == [b >= 0.5 for b in together]
        == [True, False, True, False, False, False, False]
    )
    short = speech_shortfalls(signals, min_speech_s=0.5, **VAD)
    assert [s is None for s in short] == [True, False, True, False, False, False, False]
    assert all(isinstance(s, NoSpeech) and str(s).startswith("no speech: ") for s in short if s is not None)
    assert "long, under" in str(short[4]) and "found, under" in str(short[1])
    assert speech_shortfalls(signals, min_speech_s=0.0, **VAD) == [None] * len(signals)  # 0: no check


CHECK = check_settings(validate_params({}).predict)  # the default speech check (predict.check_threshold)


@pytest.mark.parametrize("name", NON_SPEECH)
def test_the_speech_check_still_refuses_non_speech(name):
    with pytest.raises(NoSpeech):
        require_speech(non_speech(name), 16000, **CHECK)


def test_the_speech_check_keeps_speech_heard_in_echoing_rooms(utterance):
    from voicegender.audio.degrade import reverberate, room_impulse_response

    y, sr, _ = utterance
    clean = speech_probabilities(y, sr).mean()
    for index in range(2):
        wet, _ = reverberate(y, sr, room_impulse_response(sr, 1.0, 0, index))
        assert speech_probabilities(wet, sr).mean() < clean  # the room lowers silero's scores ...
        assert require_speech(wet, sr, **CHECK) >= 0.5  # ... and the check still hears speech
