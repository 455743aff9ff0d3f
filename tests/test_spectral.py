"""voicegender.audio.spectral: the librosa-equivalent DSP against librosa itself."""

import numpy as np
import pytest

from voicegender.features import kinds as F
from voicegender.audio import spectral as S
from signals import SR, tone

#: librosa.feature.melspectrogram's defaults: what these tests compare with
LIBROSA = dict(n_fft=2048, hop_length=512, n_mels=128)


def max_rel(a, b):
    """Per-element relative difference, worst band."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def max_rel_audible(a, b, db=60.0):
    """Per-element relative difference over the bands within `db` dB of b's loudest band."""
    b64 = np.asarray(b, np.float64)
    keep = b64 >= b64.max() * 10 ** (-db / 10)
    return max_rel(np.asarray(a)[keep], b64[keep])


def test_mfcc_matches_librosa():
    import librosa

    y = tone(140, 1.5, noise=0.05)
    ref = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
    ours = S.mfcc(y, SR, n_mfcc=20, **LIBROSA)
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) < 1e-3 * np.max(np.abs(ref))
    d1 = librosa.feature.delta(ref)
    stats = F.mfcc_stats(y, SR, n_mfcc=20, **LIBROSA)
    np.testing.assert_allclose(stats[:20], ref.mean(axis=1), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(stats[20:40], d1.mean(axis=1), atol=1e-3)


@pytest.mark.parametrize("n", [300, 22050, 50000])
def test_mfcc_is_todays_dct_of_our_db_mel_to_the_bit(n):
    """mfcc now calls librosa.feature.mfcc on our dB mel: the very numbers the hand-written DCT gave
    (so mfcc_stats features, and anything trained on them, are unchanged)."""
    import scipy.fft

    y = (np.random.default_rng(n).standard_normal(n) * 0.1).astype(np.float32)
    log_s = S.power_to_db(S.mel_spectrogram(y, 22050, **LIBROSA), top_db=80.0)
    before = scipy.fft.dct(log_s, type=2, norm="ortho", axis=0)[:20]  # the hand-written version
    assert S.mfcc(y, 22050, n_mfcc=20, **LIBROSA).tobytes() == before.tobytes()
