"""Training-time augmentation: other rooms, microphones, channels and levels.

The training corpora (LibriSpeech / LibriTTS: read audiobooks, similar microphones) are narrow;
real recordings are not. Each training recording gets ``copies`` altered versions: a room
(an exponentially decaying noise impulse response of a given RT60), a microphone's tilt
(first-order pre-/de-emphasis), a band limit (a telephone or cheap-codec low-pass), background
noise at a signal-to-noise ratio, and a gain. Validation and test recordings are never altered.

Every draw comes from a generator seeded by (seed, the utterance's id, the copy number), so the
same corpus gives the same bytes whatever the order or the number of processes.

Units: sample rates in Hz, RT60 in seconds, cut-offs in Hz, SNR and gain in dB, samples float.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np
import scipy.signal

from voicegender.params import AugmentSettings


def rng_for(seed: int, uid: str, copy: int) -> np.random.Generator:
    """The generator of one augmented copy: independent of every other copy and utterance."""
    digest = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, copy])


def room_impulse_response(sr: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: a direct path then exponentially decaying noise that falls by 60 dB in
    ``rt60_s`` seconds, unit energy (float64, ``rt60_s * sr`` samples)."""
    n = max(1, int(rt60_s * sr))
    rir = rng.standard_normal(n) * np.exp(-np.log(1000.0) * np.arange(n) / n)  # 1000 = 60 dB in amplitude
    rir[0] = 1.0
    return rir / np.sqrt(np.sum(rir**2))


def augment(
    y: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    *,
    reverb_probability: float,
    rt60_s: Sequence[float],
    tilt: Sequence[float],
    lowpass_probability: float,
    lowpass_hz: Sequence[float],
    snr_db: Sequence[float],
    gain_db: Sequence[float],
) -> np.ndarray:
    """One altered version of mono samples ``y`` at ``sr`` Hz (float32, same length, in [-1, 1]).

    With probability ``reverb_probability`` a room of RT60 drawn from ``rt60_s``; a tilt
    ``y[n] - a y[n-1]`` with ``a`` drawn from ``tilt``; with ``lowpass_probability`` a 4th-order
    Butterworth low-pass at a cut-off drawn from ``lowpass_hz`` (skipped above 0.45 sr); white
    noise at an SNR drawn from ``snr_db``; a gain drawn from ``gain_db``. Ranges are [low, high].
    """
    x = np.asarray(y, dtype=np.float64)
    if rng.random() < reverb_probability:
        # float32 FFTs: ~1.8x faster than float64, and far below the noise added next
        rir = room_impulse_response(sr, rng.uniform(*rt60_s), rng).astype(np.float32)
        x = scipy.signal.fftconvolve(x.astype(np.float32), rir)[: len(x)].astype(np.float64)
    x = scipy.signal.lfilter([1.0, -rng.uniform(*tilt)], [1.0], x)
    if rng.random() < lowpass_probability:
        cutoff = rng.uniform(*lowpass_hz)
        if cutoff < 0.45 * sr:
            x = scipy.signal.sosfilt(scipy.signal.butter(4, cutoff, fs=sr, output="sos"), x)
    power = float(np.mean(x**2)) if x.size else 0.0
    noise_std = np.sqrt(power / 10.0 ** (rng.uniform(*snr_db) / 10.0))
    x = x + noise_std * rng.standard_normal(len(x))
    x = x * 10.0 ** (rng.uniform(*gain_db) / 20.0)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def augmented_signals(y: np.ndarray, sr: int, uid: str, settings: AugmentSettings, copies: int) -> list[np.ndarray]:
    """``copies`` augmented versions of one recording (float32, ``sr`` Hz), seeded by ``uid`` and
    ``settings.seed``; ``settings`` is ``features.augment`` (its knobs: see :func:`augment`)."""
    knobs = settings.model_dump(exclude={"copies", "max_per_speaker", "seed"})
    return [augment(y, sr, rng_for(settings.seed, uid, copy), **knobs) for copy in range(1, copies + 1)]


def recordings_to_augment(rows: Iterable[dict], max_per_speaker: int | None, seed: int) -> set[str]:
    """Ids of the recordings (rows with ``id`` and ``speaker``) that get augmented copies: every
    one, or per speaker the ``max_per_speaker`` first in a seeded order (sha256 of seed and id:
    the same choice whatever the rows' order). Why a cap: at LibriTTS size (~130 recordings per
    speaker) copies of every recording double featurize's cost for little more variety of voices."""
    rows = list(rows)
    if max_per_speaker is None:
        return {r["id"] for r in rows}
    by_speaker: dict[str, list[str]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append(r["id"])

    def order(uid: str) -> bytes:
        return hashlib.sha256(f"{seed}:{uid}".encode()).digest()

    return {uid for ids in by_speaker.values() for uid in sorted(ids, key=order)[:max_per_speaker]}
