"""librosa-equivalent signal processing: resampling, the STFT in cache-sized blocks, the slaney mel
filterbank (and its sparse projection), mel spectrograms, dB conversion, MFCC (librosa's DCT on our mel)
and a YIN pitch tracker.

Units: sample rates in Hz, ``n_fft`` / ``hop_length`` in samples, audio samples as float in [-1, 1].
Each function names the librosa call it equals (and to what precision); the README's table
"Hand-written code, and the library it stands in for" says why each is kept.
"""

from __future__ import annotations

import functools
import math
from typing import Iterator

import numpy as np
import scipy.fft

AMIN = 1e-10  # power floor for logs: log-mel values are >= 10*log10(AMIN) = -100 dB
LOG_FLOOR_DB = 10.0 * math.log10(AMIN)
_BLOCK_FRAMES = 32  # STFT frames per FFT call: keeps the working set in cache (~2x faster)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample like ``librosa.resample(res_type="soxr_hq")``: soxr HQ, length ceil(n * ratio)."""
    if orig_sr == target_sr:
        return y
    import soxr  # librosa's own resampler backend

    n_out = int(math.ceil(y.shape[-1] * float(target_sr) / orig_sr))
    y_hat = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    # librosa.util.fix_length: trim or zero-pad at the end to exactly n_out samples
    if y_hat.shape[-1] > n_out:
        y_hat = y_hat[:n_out]
    elif y_hat.shape[-1] < n_out:
        y_hat = np.pad(y_hat, (0, n_out - y_hat.shape[-1]))
    return np.asarray(y_hat, dtype=y.dtype)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney mel filterbank (n_mels, n_fft // 2 + 1) as float64, read-only.

    Holds exactly librosa's float32 weights (``librosa.filters.mel`` defaults, fmax = sr / 2).
    """
    import librosa

    m = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float64)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=16)
def mel_segments(sr: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank's nonzero weights as (bands with any, bin index, weight, segment start):
    each slaney filter is one run of bins, so a mel projection is one gather + np.add.reduceat
    (~20x less work than the dense (n_mels, n_fft // 2 + 1) product, and no BLAS threads)."""
    mel = mel_filterbank(sr, n_fft, n_mels)
    bands = np.flatnonzero((mel != 0).any(axis=1))
    runs = [np.flatnonzero(mel[b]) for b in bands]
    runs = [np.arange(r[0], r[-1] + 1) for r in runs]
    idx = np.concatenate(runs) if runs else np.zeros(0, np.intp)
    weights = np.concatenate([mel[b, r] for b, r in zip(bands, runs)]) if runs else np.zeros(0)
    starts = np.cumsum([0] + [len(r) for r in runs[:-1]]).astype(np.intp)
    for a in (bands, idx, weights, starts):
        a.setflags(write=False)
    return bands, idx, weights, starts


def mel_project(power: np.ndarray, sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """mel_filterbank(sr, n_fft, n_mels) @ power for one power spectrum (float64 in and out)."""
    bands, idx, weights, starts = mel_segments(sr, n_fft, n_mels)
    out = np.zeros(n_mels)
    if len(bands):
        out[bands] = np.add.reduceat(weights * power[idx], starts)
    return out


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    # periodic Hann, as librosa.filters.get_window("hann", n_fft, fftbins=True)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=8)
def _hann32(n_fft: int) -> np.ndarray:
    w = _hann(n_fft).astype(np.float32)
    w.setflags(write=False)
    return w


def _frame_blocks(y: np.ndarray, frame_length: int, hop_length: int, block_frames: int) -> Iterator[np.ndarray]:
    """Centred frames in consecutive blocks of up to ``block_frames``, each (frames, frame_length),
    y's dtype: y zero-padded by frame_length // 2 on both sides (librosa's center=True,
    pad_mode="constant"), one frame every hop_length samples.

    Frames lying inside y are strided views of y; only the blocks that reach into the padding
    (first, last) are copied. A padded copy of the whole signal cost a pass over memory and, in
    forked workers, most of their page faults (~5x more).
    """
    n, pad = len(y), frame_length // 2
    n_frames = (n + 2 * pad - frame_length) // hop_length + 1
    # frames inner_lo .. inner_hi - 1 start at or after y[0] and end at or before y[-1]
    inner_lo = -(-pad // hop_length)
    inner_hi = max(inner_lo, (n + pad - frame_length) // hop_length + 1)
    first = inner_lo * hop_length - pad
    inner = (
        np.lib.stride_tricks.sliding_window_view(
            y[first : first + (inner_hi - inner_lo - 1) * hop_length + frame_length], frame_length
        )[::hop_length]
        if inner_hi > inner_lo
        else None
    )
    for start in range(0, n_frames, block_frames):
        stop = min(start + block_frames, n_frames)
        if inner is not None and inner_lo <= start and stop <= inner_hi:
            yield inner[start - inner_lo : stop - inner_lo]
            continue
        lo = start * hop_length - pad  # the block's first sample, in y's coordinates
        span = np.zeros((stop - start - 1) * hop_length + frame_length, dtype=y.dtype)
        a, b = max(lo, 0), min(lo + len(span), n)
        if a < b:
            span[a - lo : b - lo] = y[a:b]
        yield np.lib.stride_tricks.sliding_window_view(span, frame_length)[::hop_length]


def _stft_blocks(y: np.ndarray, n_fft: int, hop_length: int, dtype: type = np.float64) -> Iterator[np.ndarray]:
    """Yield the STFT (Hann, centred, zero pad) in blocks of shape (frames, n_fft // 2 + 1).

    ``dtype`` is the FFT's real precision: float64 (complex128 out) as librosa does (float32
    samples times a float64 window), or float32 (complex64 out, ~1.5x faster; see mean_power_spectrum).
    Frames are strided views; each block is windowed into one reused buffer, then transformed.
    """
    y = np.asarray(y)
    if y.dtype != dtype and not (dtype == np.float64 and y.dtype == np.float32):
        y = y.astype(dtype)  # float32 frames are widened to float64 exactly by the window multiply
    window = _hann(n_fft) if dtype == np.float64 else _hann32(n_fft)
    buf = None
    for frames in _frame_blocks(y, n_fft, hop_length, _BLOCK_FRAMES):
        if buf is None:
            buf = np.empty((len(frames), n_fft), dtype=dtype)  # the first block is the largest
        block = buf[: len(frames)]
        np.multiply(frames, window, out=block)
        yield scipy.fft.rfft(block, axis=-1, workers=1, overwrite_x=True)


def _power_blocks(y: np.ndarray, n_fft: int, hop_length: int, dtype: type = np.float64) -> Iterator[np.ndarray]:
    """Yield |STFT|^2 in blocks of shape (frames, n_fft // 2 + 1), ``dtype`` (see _stft_blocks)."""
    for spec in _stft_blocks(y, n_fft, hop_length, dtype):
        yield spec.real**2 + spec.imag**2


def mean_power_spectrum(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """Time mean of the power spectrum |STFT|^2, shape (n_fft // 2 + 1,), float64.

    Float32 FFTs (the hot path of ``mean_mel``), sums of squares accumulated in float64 across
    blocks. Against librosa's float64 FFTs the mean spectrum differs by ~1e-7 of its maximum
    (float32 rounding, relative to each frame's energy); a band lying ~100 dB below the loudest
    one (e.g. above the Nyquist of a 16 kHz file resampled to 22,050 Hz) carries only rounding
    noise, so its own relative difference can be much larger: see ``mean_mel``'s precision note.
    """
    acc = np.zeros(2 * (n_fft // 2 + 1))  # interleaved re^2, im^2 sums
    n = 0
    for spec in _stft_blocks(y, n_fft, hop_length, np.float32):
        re_im = spec.view(np.float32)  # square in place: no temporaries (this loop is the hot path)
        acc += np.square(re_im, out=re_im).sum(axis=0)
        n += len(spec)
    return acc.reshape(-1, 2).sum(axis=1) / n


def mel_spectrogram(
    y: np.ndarray, sr: int, *, n_fft: int, hop_length: int, n_mels: int, dtype: type = np.float64
) -> np.ndarray:
    """Mel power spectrogram (n_mels, n_frames); equals librosa.feature.melspectrogram. ``dtype``:
    float64 as librosa computes it, or float32 FFTs and projection (~1.6x faster, within ~1.4e-7
    of the maximum: the ge2e front end, whose encoder takes float32 anyway)."""
    mel = mel_filterbank(sr, n_fft, n_mels).astype(dtype, copy=False)
    return np.concatenate([p @ mel.T for p in _power_blocks(y, n_fft, hop_length, dtype)], axis=0).T


def power_to_db(S: np.ndarray, top_db: float | None = None) -> np.ndarray:
    """10 * log10(max(S, 1e-10)) in dB re power 1.0 (a full-scale sine's mean power is 0.5 -> -3 dB).
    With top_db, values are clipped at (max - top_db) as librosa.power_to_db does."""
    log_s = 10.0 * np.log10(np.maximum(S, AMIN))
    if top_db is not None:
        log_s = np.maximum(log_s, log_s.max() - top_db)
    return log_s


def mfcc(y: np.ndarray, sr: int, *, n_mfcc: int, n_fft: int, hop_length: int, n_mels: int) -> np.ndarray:
    """MFCC (n_mfcc, n_frames) float64: ``librosa.feature.mfcc`` (DCT-II ortho) of our dB mel
    spectrogram (top_db 80), i.e. librosa.feature.mfcc(y=...) with our faster mel front end."""
    import librosa

    log_s = power_to_db(mel_spectrogram(y, sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels), top_db=80.0)
    return librosa.feature.mfcc(S=log_s, n_mfcc=n_mfcc)


def yin(
    y: np.ndarray,
    sr: int,
    *,
    fmin: float,
    fmax: float,
    hop_length: int,
    threshold: float,
    silence_db: float = 40.0,
) -> tuple[np.ndarray, np.ndarray]:
    """YIN F0 track: (f0 Hz per frame, voiced flag per frame), 1 + len(y) // hop_length frames
    centred every hop_length samples (the STFT's frames).

    The signal is first decimated (soxr) to about 8 kHz, plenty for F0 <= 400 Hz and ~3x less work.
    Integration window = two periods of fmin. A frame is voiced when its cumulative-mean-normalised
    difference dips below ``threshold`` inside [1/fmax, 1/fmin] s and its energy is within
    ``silence_db`` dB of the loudest frame. Unvoiced frames get f0 = 0.
    """
    n_frames = 1 + len(y) // hop_length
    q = max(1, min(sr // 8000, int(sr // (20 * fmax))))
    if q > 1:
        y = resample(np.asarray(y, dtype=np.float32), sr, sr // q) if sr % q == 0 else resample(y, sr, 8000)
    rate = sr // q if sr % q == 0 else 8000
    tau_min = max(2, int(math.floor(rate / fmax)))
    tau_max = int(math.ceil(rate / fmin))
    win = 2 * tau_max
    length = win + tau_max + 1
    # frame k is centred on sample k * hop_length / sr * rate of the decimated signal
    centres = np.round(np.arange(n_frames) * (hop_length * rate / sr)).astype(np.int64)
    half = length // 2
    yp = np.pad(np.asarray(y, dtype=np.float64), (half, length))
    frames = yp[centres[:, None] + np.arange(length)]  # (T, length)
    n_fft = scipy.fft.next_fast_len(length + win, real=True)
    # r(tau) = sum_{j<win} x_j x_{j+tau}, for every frame at once via FFT cross-correlation
    spec = scipy.fft.rfft(frames, n=n_fft, axis=1, workers=1)
    head = scipy.fft.rfft(frames[:, :win], n=n_fft, axis=1, workers=1)
    r = scipy.fft.irfft(np.conj(head) * spec, n=n_fft, axis=1, workers=1)[:, : tau_max + 1]
    sq = np.cumsum(np.concatenate([np.zeros((len(frames), 1)), frames**2], axis=1), axis=1)
    energy0 = sq[:, win]  # sum_{j<win} x_j^2
    energy_tau = sq[:, win : win + tau_max + 1] - sq[:, : tau_max + 1]  # sum_{j<win} x_{j+tau}^2
    diff = np.maximum(energy0[:, None] + energy_tau - 2.0 * r, 0.0)
    # cumulative mean normalised difference d'(tau) = d(tau) * tau / sum_{k<=tau} d(k); d'(0) = 1
    cum = np.cumsum(diff[:, 1:], axis=1)
    taus = np.arange(1, tau_max + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd = np.where(cum > 0, diff[:, 1:] * taus / cum, 1.0)
    cmnd = np.concatenate([np.ones((len(frames), 1)), cmnd], axis=1)
    cand = cmnd[:, tau_min : tau_max + 1]
    # first local minimum below threshold (YIN's absolute threshold step), else the global minimum
    below = cand < threshold
    local_min = np.zeros_like(below)
    local_min[:, 1:-1] = (cand[:, 1:-1] <= cand[:, :-2]) & (cand[:, 1:-1] <= cand[:, 2:])
    hit = below & local_min
    has_hit = hit.any(axis=1)
    idx = np.where(has_hit, hit.argmax(axis=1), cand.argmin(axis=1))
    rows = np.arange(len(frames))
    # parabolic interpolation of the dip for sub-sample period
    i0 = np.clip(idx, 1, cand.shape[1] - 2)
    a, b, c = cand[rows, i0 - 1], cand[rows, i0], cand[rows, i0 + 1]
    den = a - 2.0 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / den, 0.0)
    shift = np.where(i0 == idx, np.clip(shift, -1.0, 1.0), 0.0)
    period = tau_min + idx + shift
    loud = energy0 > 0
    if loud.any():
        loud &= 10.0 * np.log10(np.maximum(energy0, 1e-30)) >= 10.0 * np.log10(energy0.max()) - silence_db
    voiced = has_hit & loud
    f0 = np.where(voiced, rate / period, 0.0)
    return f0, voiced
