"""Degraded listening conditions: what real recordings go through on their way to a user.

Each function takes mono float samples ``y`` at ``sr`` Hz and returns ``(samples, rate)``
(float32 in [-1, 1]; a telephone line returns 8 kHz). The robustness stage scores the test
split under each condition of ``robustness.conditions`` (params.yaml); :func:`degrade`
dispatches on a condition's ``kind``.

Libraries, not hand-written DSP, where one does the job: rooms are pyroomacoustics' image
method (specular reflections of a shoebox room: early echoes, then a dense tail, as a real room
gives; a decaying noise burst has no early reflections); MP3 is LAME through pedalboard;
mu-law is librosa's G.711 companding; band limits are scipy's Butterworth filters; GSM 06.10 is
pedalboard's. White noise and mixing need no library.

Units: rates in Hz, SNR and levels in dB (dBFS: re an RMS of 1.0), RT60 in seconds.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import scipy.signal

TELEPHONE_RATE = 8000  # Hz: G.711 / GSM sample rate


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


def active_rms(y: np.ndarray, sr: int, frame_s: float = 0.01, floor_db: float = 40.0) -> float:
    """RMS over the recording's active part: its ``frame_s`` frames within ``floor_db`` of the
    loudest (a simplified ITU-T P.56 active level). Why: an SNR against the whole recording's
    power would count pauses and padding as signal, and a clip that is half digital silence
    would get its noise 3 dB louder than asked."""
    x = np.asarray(y, dtype=np.float64)
    n = max(1, int(frame_s * sr))
    frames = x[: x.size // n * n].reshape(-1, n) if x.size >= n else x[None]
    power = np.mean(frames**2, axis=1)
    if power.size == 0 or power.max() == 0:
        return 0.0
    return float(np.sqrt(np.mean(power[power >= power.max() * 10.0 ** (-floor_db / 10.0)])))


def _finish(y: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    return np.clip(np.asarray(y, dtype=np.float64), -1.0, 1.0).astype(np.float32), int(sr)


def add_noise(y: np.ndarray, sr: int, snr_db: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """White Gaussian noise at ``snr_db`` below the recording's active level (:func:`active_rms`)."""
    x = np.asarray(y, dtype=np.float64)
    noise = rng.standard_normal(x.size) * active_rms(x, sr) / 10.0 ** (snr_db / 20.0)
    return _finish(x + noise, sr)


def mix_babble(
    y: np.ndarray, sr: int, others: list[np.ndarray], snr_db: float, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Other talkers over the recording: each of ``others`` (mono, at ``sr``) starts at a random
    point, is looped to the recording's length and brought to equal active level; their sum sits
    ``snr_db`` below the recording's active level (the target speaker stays the loudest voice when snr_db > 0)."""
    x = np.asarray(y, dtype=np.float64)
    babble = np.zeros_like(x)
    for other in others:
        o = np.asarray(other, dtype=np.float64)
        if o.size == 0:
            continue
        start = int(rng.integers(o.size))
        looped = np.resize(np.roll(o, -start), x.size)
        level = active_rms(looped, sr)
        if level > 0:
            babble += looped / level
    level = active_rms(babble, sr)
    if level == 0:
        return _finish(x, sr)
    return _finish(x + babble * (active_rms(x, sr) / level) / 10.0 ** (snr_db / 20.0), sr)


@functools.lru_cache(maxsize=64)
def room_impulse_response(sr: int, rt60_s: float, seed: int, index: int) -> np.ndarray:
    """Impulse response of one shoebox room (pyroomacoustics' image method) at ``sr`` Hz whose
    walls absorb as Sabine's formula says for ``rt60_s``; room size and the talker's and
    microphone's places drawn from (``seed``, ``index``). Starts at the direct path's arrival,
    unit energy, float32. Cached: the image method takes ~1 s for RT60 0.9 s."""
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, index, int(round(rt60_s * 1000)), sr])
    dims = np.array([rng.uniform(4.0, 9.0), rng.uniform(3.0, 7.0), rng.uniform(2.5, 3.5)])
    absorption, max_order = pra.inverse_sabine(rt60_s, dims)
    room = pra.ShoeBox(dims, fs=sr, materials=pra.Material(absorption), max_order=max_order)
    margin = 0.5  # m from any wall
    while True:
        source = rng.uniform(margin, dims - margin)
        mic = rng.uniform(margin, dims - margin)
        if 1.0 <= np.linalg.norm(source - mic) <= 4.0:
            break
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    h = h[int(np.argmax(np.abs(h))) :]  # the talker's distance only delays the recording
    return (h / np.sqrt(np.sum(h**2))).astype(np.float32)


def reverberate(y: np.ndarray, sr: int, rir: np.ndarray) -> tuple[np.ndarray, int]:
    """The recording as heard through impulse response ``rir`` (same length, the same RMS level)."""
    x = np.asarray(y, dtype=np.float32)
    wet = scipy.signal.fftconvolve(x, rir)[: x.size].astype(np.float64)
    gain = _rms(x) / _rms(wet) if _rms(wet) > 0 else 1.0
    return _finish(wet * gain, sr)


def telephone(y: np.ndarray, sr: int, low_hz: float, high_hz: float, codec: str) -> tuple[np.ndarray, int]:
    """A telephone line: band-pass ``low_hz``-``high_hz`` (4th-order Butterworth), 8 kHz, then
    ``codec``: ``mulaw`` (G.711, 8-bit) or ``gsm`` (GSM 06.10 full rate). Returns 8 kHz audio."""
    from voicegender.audio.spectral import resample

    x = np.asarray(y, dtype=np.float64)
    high = min(high_hz, 0.45 * sr)
    x = scipy.signal.sosfilt(scipy.signal.butter(4, [low_hz, high], btype="bandpass", fs=sr, output="sos"), x)
    x = resample(np.clip(x, -1.0, 1.0).astype(np.float32), sr, TELEPHONE_RATE)
    if codec == "mulaw":
        import librosa

        x = librosa.mu_expand(librosa.mu_compress(np.clip(x, -1.0, 1.0), mu=255, quantize=True), mu=255, quantize=True)
    else:
        import pedalboard

        x = pedalboard.GSMFullRateCompressor()(np.clip(x, -1.0, 1.0).astype(np.float32)[None], TELEPHONE_RATE)[0]
    return _finish(x, TELEPHONE_RATE)


def mp3(y: np.ndarray, sr: int, bitrate_kbps: int) -> tuple[np.ndarray, int]:
    """Encoded as MP3 at ``bitrate_kbps`` (LAME, constant bitrate) and decoded again: the
    decoder's output as a player gives it (the codec's few tens of ms of delay included)."""
    from pedalboard.io import AudioFile

    x = np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0)[None]
    data = AudioFile.encode(x, sr, format="mp3", num_channels=1, quality=bitrate_kbps)
    with AudioFile(io.BytesIO(data)) as f:
        decoded = f.read(f.frames)
    return _finish(decoded[0], sr)


def set_level(y: np.ndarray, sr: int, dbfs: float) -> tuple[np.ndarray, int]:
    """The recording brought to an RMS of ``dbfs`` and stored as 16-bit PCM (a quiet recording's
    speech then spans few quantisation steps)."""
    x = np.asarray(y, dtype=np.float64)
    level = _rms(x)
    if level > 0:
        x = x * 10.0 ** (dbfs / 20.0) / level
    return _finish(np.round(np.clip(x, -1.0, 1.0) * 32767.0) / 32767.0, sr)


def _room(y, sr, c, rng, others, seed):
    index = int(rng.integers(c.rooms))
    return reverberate(y, sr, room_impulse_response(sr, c.rt60_s, seed, index))


#: robustness.conditions' kinds (the schema's: voicegender.params.CONDITION_KINDS), each
#: applied as ``(y, sr, condition, rng, others, seed) -> (samples, rate)``
DEGRADATIONS = {
    "clean": lambda y, sr, c, rng, others, seed: _finish(y, sr),
    "noise": lambda y, sr, c, rng, others, seed: add_noise(y, sr, c.snr_db, rng),
    "babble": lambda y, sr, c, rng, others, seed: mix_babble(y, sr, others or [], c.snr_db, rng),
    "room": _room,
    "telephone": lambda y, sr, c, rng, others, seed: telephone(y, sr, c.low_hz, c.high_hz, c.codec),
    "mp3": lambda y, sr, c, rng, others, seed: mp3(y, sr, c.bitrate_kbps),
    "level": lambda y, sr, c, rng, others, seed: set_level(y, sr, c.dbfs),
}


def degrade(
    y: np.ndarray,
    sr: int,
    condition,
    rng: np.random.Generator,
    *,
    others: list[np.ndarray] | None = None,
    seed: int,
) -> tuple[np.ndarray, int]:
    """``y`` (``sr`` Hz) under ``condition`` (a ``robustness.conditions`` entry); ``rng`` draws
    what varies per recording (noise, babble offsets, which room); ``others``: the babble
    talkers' recordings at ``sr``; ``seed`` fixes the bank of rooms."""
    return DEGRADATIONS[condition.kind](y, sr, condition, rng, others, seed)


def snr_db(clean: np.ndarray, degraded: np.ndarray) -> float:
    """Signal-to-noise ratio (dB) of ``degraded`` against ``clean`` (same length and rate)."""
    noise = np.asarray(degraded, dtype=np.float64) - np.asarray(clean, dtype=np.float64)
    return 10.0 * math.log10(np.sum(np.square(clean, dtype=np.float64)) / max(np.sum(noise**2), 1e-30))
