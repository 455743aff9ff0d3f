"""voicegender.features.kinds: every kind's shape, config checks, and agreement with librosa (a few seconds of audio each)."""

import hashlib
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import SHARED_DATA, needs_shared
from feature_settings import check, fs
from voicegender.features import kinds as F
from voicegender.audio import spectral as S
from signals import SR, tone, voice, wav_bytes

#: librosa.feature.melspectrogram's defaults: what these tests compare with
LIBROSA = dict(n_fft=2048, hop_length=512, n_mels=128)
#: the YIN settings of these tests (params.yaml's then)
YIN = dict(fmin=60, fmax=400, hop_length=512, threshold=0.15)

SAMPLE = SHARED_DATA / "librispeech-clean100-sample" / "audio"
REAL_FILES = sorted(SAMPLE.glob("*.flac"))[:3]


def max_rel(a, b):
    """Per-element relative difference, worst band."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def rel_diff(a, b):
    """The mean_mel precision criterion vs librosa: max|a - b| / max|b| <= 1e-4.

    Errors are measured against the feature vector's scale: a band ~100 dB below the loudest holds
    rounding-level values (float32 FFT noise is relative to each frame's energy), where a
    per-element ratio measures the noise, not the feature (see features.mean_mel).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def max_rel_audible(a, b, db=60.0):
    """Per-element relative difference over the bands within `db` dB of b's loudest band."""
    b64 = np.asarray(b, np.float64)
    keep = b64 >= b64.max() * 10 ** (-db / 10)
    return max_rel(np.asarray(a)[keep], b64[keep])


def assert_matches_librosa(ours, ref, per_element_everywhere=False):
    assert ours.shape == ref.shape == (128,) and ours.dtype == np.float32
    assert rel_diff(ours, ref) <= 1e-4
    assert max_rel_audible(ours, ref) <= 1e-4
    if per_element_everywhere:
        assert max_rel(ours, ref) <= 1e-4


# -- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", F.KINDS)
def test_shape_and_dtype_of_every_kind(kind):
    cfg = fs({"kind": kind, "sample_rate": 22050, "n_mels": 64, "n_mfcc": 13, "patch_frames": 50})
    y = tone(150, 1.5, noise=0.01)
    v = F.compute_features(y, SR, cfg)
    assert v.shape == F.feature_shape(cfg)
    assert v.dtype == np.float32
    assert np.isfinite(v).all()


def test_feature_shapes():
    assert F.feature_shape(fs({"kind": "mean_mel"})) == (128,)
    assert F.feature_shape(fs({"kind": "mfcc_stats", "n_mfcc": 20})) == (120,)
    assert F.feature_shape(fs({"kind": "pitch_mel", "n_mels": 40})) == (86,)
    assert F.feature_shape(fs({"kind": "log_mel_patch", "patch_frames": 64})) == (128, 64)


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"n_mels": -3}, "features.n_mels"),
        ({"n_fft": 2048.0}, "features.n_fft"),
        ({"hop_length": True}, "features.hop_length"),
        ({"kind": "wavelets"}, "features.kind"),
        ({"sample_rate": "22050"}, "features.sample_rate"),
        ({"fmin_f0": 300, "fmax_f0": 200}, "features.fmax_f0"),
        ({"n_mfcc": 200, "n_mels": 40}, "features.n_mfcc"),
        ({"n_mel": 40}, "features.n_mel"),
    ],
)
def test_validate_names_the_bad_key(bad, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        check(bad)


def test_validate_fills_defaults():
    cfg = check({"sample_rate": "native"})
    assert cfg.n_fft == 2048 and cfg.sample_rate == "native"


# -- mean_mel fast path vs the report's librosa pipeline ---------------------------------------------


def test_mean_mel_matches_librosa_on_synthetic_24k():
    import librosa

    y = tone(180, 2.0, noise=0.05) + tone(3100, 2.0, amp=0.1)
    data = wav_bytes(y, subtype="FLOAT")
    for rate in (22050, "native"):
        ours = F.featurize(data, fs({"kind": "mean_mel", "sample_rate": rate}))
        ref = F.mean_mel_reference(data, sr=None if rate == "native" else rate)
        assert_matches_librosa(ours, ref, per_element_everywhere=True)  # broadband noise: no empty band
    # the same comparison spelled out: librosa at the native rate
    ref_native = librosa.feature.melspectrogram(y=y, sr=SR).mean(axis=1)
    assert_matches_librosa(F.mean_mel(y, SR, **LIBROSA), ref_native, per_element_everywhere=True)


@pytest.mark.filterwarnings("ignore:n_fft=2048 is too large")
@pytest.mark.parametrize("n", [1, 300, 512 * 31 - 1, 512 * 32, 512 * 33 + 7, 512 * 70])
def test_mean_mel_matches_librosa_at_block_edges(n):
    """Frame counts around the FFT block size (32 frames) and shorter than one frame."""
    import librosa

    y = tone(150, n / SR, noise=0.05, seed=n)
    ref = librosa.feature.melspectrogram(y=y, sr=SR).mean(axis=1)
    assert_matches_librosa(F.mean_mel(y, SR, **LIBROSA), ref)


def test_mean_mel_bands_above_the_source_nyquist():
    """A 16 kHz file resampled to 22,050 Hz has (next to) nothing above 8 kHz: those bands sit
    ~120 dB below the peak, where float32 FFT rounding dominates (on the real LibriSpeech
    sample, per-element differences reach ~2 there). The criterion holds, and per-element wherever there is signal."""
    y = tone(180, 1.0, sr=16000, noise=0.05) + tone(2500, 1.0, sr=16000, amp=0.1)
    data = wav_bytes(y, sr=16000)
    ours = F.featurize(data, fs({"kind": "mean_mel", "sample_rate": 22050}))
    ref = F.mean_mel_reference(data)
    assert_matches_librosa(ours, ref)
    hi = S.mel_filterbank(22050, 2048, 128)[:, : 2048 * 8000 // 22050].sum(axis=1) == 0  # bands above 8 kHz
    assert hi.any() and np.all(ref[hi] < 1e-9 * ref.max())


@needs_shared(SAMPLE)
@pytest.mark.parametrize("path", REAL_FILES or [SAMPLE], ids=lambda p: p.name)
def test_mean_mel_matches_librosa_on_real_speech(path):
    data = path.read_bytes()
    assert_matches_librosa(F.featurize(data, fs({"kind": "mean_mel"})), F.mean_mel_reference(str(path)))
    native = F.featurize(data, fs({"kind": "mean_mel", "sample_rate": "native"}))
    assert_matches_librosa(native, F.mean_mel_reference(str(path), sr=None), per_element_everywhere=True)


def test_log_mel_stats_are_db_mean_then_std():
    import librosa

    y = tone(200, 1.0, noise=0.02)
    S = librosa.feature.melspectrogram(y=y, sr=SR)
    db = librosa.power_to_db(S, top_db=None)
    v = F.log_mel_stats(y, SR, **LIBROSA)
    np.testing.assert_allclose(v[:128], db.mean(axis=1), atol=1e-3)
    np.testing.assert_allclose(v[128:], db.std(axis=1), atol=1e-3)


# -- pitch ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("f0", [120.0, 220.0])
@pytest.mark.parametrize("sr", [22050, 24000, 16000])
def test_pitch_of_pure_and_harmonic_tones(f0, sr):
    for y in (tone(f0, 1.0, sr=sr), voice(f0, 1.0, sr=sr)):
        v = F.pitch_stats(y, sr, **YIN)
        median, mean, std, p10, p90, voiced = v
        assert abs(median - f0) < 2.0 and abs(p10 - f0) < 3.0 and abs(p90 - f0) < 3.0
        assert voiced > 0.9


def test_pitch_fallback_on_silence_and_noise():
    for y in (np.zeros(SR, np.float32), 0.1 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)):
        v = F.pitch_stats(y, SR, **YIN)
        assert np.isfinite(v).all()
        assert v[-1] < 0.1  # voiced fraction
    v = F.pitch_stats(np.zeros(SR, np.float32), SR, **YIN)
    np.testing.assert_allclose(v, [np.sqrt(60 * 400)] * 2 + [0] + [np.sqrt(60 * 400)] * 2 + [0], rtol=1e-6)


# -- robustness ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", F.KINDS)
@pytest.mark.parametrize(
    "name, y",
    [
        ("silence", np.zeros(SR, np.float32)),
        ("clipping", np.clip(tone(130, 1.0, amp=5.0), -1, 1)),
        ("very_short", tone(200, 100 / SR)),
        ("one_sample", np.array([0.3], np.float32)),
    ],
)
def test_finite_on_edge_cases(kind, name, y):
    cfg = fs({"kind": kind, "sample_rate": 22050})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (log of 0, 0/0) either
        v = F.featurize(wav_bytes(y, subtype="FLOAT"), cfg)
    assert v.shape == F.feature_shape(cfg)
    assert np.isfinite(v).all(), name


def test_log_mel_patch_crop_and_pad():
    cfg = fs({"kind": "log_mel_patch", "sample_rate": "native", "patch_frames": 40})
    long = F.compute_features(tone(150, 3.0, noise=0.01), SR, cfg)
    short = F.compute_features(tone(150, 0.2, noise=0.01), SR, cfg)  # 10 frames
    assert long.shape == short.shape == (128, 40)
    assert np.all(short[:, :15] == S.LOG_FLOOR_DB) and np.all(short[:, 25:] == S.LOG_FLOOR_DB)
    assert np.all(short[:, 15:25] > S.LOG_FLOOR_DB)


# -- determinism ------------------------------------------------------------------------------------------


FRESH = """
import hashlib, json, sys
sys.path[:0] = sys.argv[1:3]
from feature_settings import fs
from signals import tone, wav_bytes
from voicegender.features import kinds as F
data = wav_bytes(tone(170, 1.0, noise=0.05))
cases = json.loads(sys.argv[3])
print(json.dumps({k: hashlib.sha256(F.featurize(data, fs(s)).tobytes()).hexdigest() for k, s in cases.items()}))
"""
CASES = {
    **{kind: {"kind": kind} for kind in F.KINDS},
    "ge2e-bfloat16": {"kind": "ge2e", "ge2e_precision": "bfloat16"},  # params.yaml's precision
    "mean_mel-native": {"kind": "mean_mel", "sample_rate": "native"},
}


@pytest.mark.slow  # a second interpreter loads torch, librosa and the GE2E encoder (~4-13 s)
def test_every_kind_gives_the_same_bytes_in_a_fresh_interpreter():
    """Features are a function of the audio and the settings alone: a fresh interpreter (nothing
    computed or cached before) gives the bytes of this one, which has computed other settings first
    (other rates, so other filterbanks and resamplers in its caches) and run other tests."""
    data = wav_bytes(tone(170, 1.0, noise=0.05))
    for settings in CASES.values():
        F.featurize(data, fs({**settings, "sample_rate": 16000}))
    here = {k: hashlib.sha256(F.featurize(data, fs(s)).tobytes()).hexdigest() for k, s in CASES.items()}
    tests = pathlib.Path(__file__).resolve().parent
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, str(tests), str(tests.parent / "src"), json.dumps(CASES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.splitlines()[-1])
    assert fresh == here, sorted(k for k in here if fresh.get(k) != here[k])
