"""Feature extraction: one fixed-size vector (or patch) per utterance.

Units throughout: sample rates in Hz, ``n_fft`` / ``hop_length`` in samples,
``fmin_f0`` / ``fmax_f0`` in Hz, audio samples as float in [-1, 1].

Kinds (``config["kind"]``), all returned as float32:

``mean_mel``       (n_mels,)             the reference report's feature: time-mean of the mel
                                          power spectrogram (power 2, slaney mels), no log.
``log_mel_stats``  (2 * n_mels,)         mean then std over time of log-mel in dB.
``mfcc_stats``     (6 * n_mfcc,)         mean of [mfcc, delta, delta2] then std of the same.
``pitch_stats``    (6,)                  F0 (YIN) statistics over voiced frames, in Hz.
``pitch_mel``      (2 * n_mels + 6,)     ``log_mel_stats`` followed by ``pitch_stats``.
``log_mel_patch``  (n_mels, patch_frames) log-mel in dB, centre-cropped / padded in time.
``ge2e``           (256,)                a pretrained GE2E speaker encoder's embedding
                                          (``voicegender.speaker_encoder``; always at 16 kHz,
                                          ``sample_rate`` / ``n_fft`` / ... do not apply;
                                          ``extract_many`` embeds a chunk's utterances in one
                                          batch, see ``GE2E_CHUNK``).

``mean_mel`` reproduces ``librosa.load`` + ``librosa.feature.melspectrogram`` + time mean
(``max|diff| / max|librosa|`` ~2e-7; criterion and per-band figures in ``mean_mel``) several
times faster: decode at the native rate (16-bit PCM wav straight from the bytes), the same
soxr_hq resampler as librosa, float32 FFTs on cache-sized blocks of frames, and, since the mel
projection is linear, the time mean of the power spectrum is taken *before* the mel matmul.
The other kinds keep float64 FFTs: their per-frame log-mel reaches down to -100 dB.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import itertools
import io
import math
import mmap
import multiprocessing
import os
import re
import sys
from typing import Any, Iterable, Iterator

import numpy as np
import scipy.fft
from threadpoolctl import ThreadpoolController

from voicegender.corpus import decode_audio

KINDS = ("ge2e", "mean_mel", "log_mel_stats", "mfcc_stats", "pitch_stats", "pitch_mel", "log_mel_patch")

#: Defaults for every ``features.*`` key; ``validate_feature_config`` fills in missing keys.
DEFAULT_CONFIG: dict[str, Any] = {
    "kind": "mean_mel",
    "sample_rate": 22050,  # Hz, or "native" to skip resampling
    "n_fft": 2048,  # samples
    "hop_length": 512,  # samples
    "n_mels": 128,
    "n_mfcc": 20,
    "fmin_f0": 60.0,  # Hz, lowest F0 searched
    "fmax_f0": 400.0,  # Hz, highest F0 searched
    "yin_threshold": 0.15,  # YIN aperiodicity below which a frame counts as voiced
    "patch_frames": 128,  # frames (of hop_length samples) per log_mel_patch
    "ge2e_rate": 1.3,  # ge2e: 1.6 s partial utterances per second of audio
    "ge2e_min_coverage": 0.75,  # ge2e: keep a last, partly padded partial covering at least this share
    "target_dbfs": -30.0,  # ge2e: quieter recordings are raised to this RMS level (dBFS), louder left alone
    "encoder_device": "auto",  # ge2e: where the encoder runs: auto (CUDA when present) | cpu | cuda | cuda:N
    "ge2e_precision": "float32",  # ge2e: float32 (Resemblyzer's network as trained) | mixed (LSTM layers 1-2 in bfloat16)
    "n_jobs": -1,  # worker processes for extract_many; -1 = all cores (does not change the features)
    # training-time augmentation (voicegender.augment); ranges are [low, high]
    "augment": {"copies": 1, "max_per_speaker": None, "seed": 0, "reverb_probability": 0.5, "rt60_s": [0.2, 0.8], "tilt": [-0.9, 0.9],
                "lowpass_probability": 0.5, "lowpass_hz": [3400.0, 7000.0], "snr_db": [5.0, 30.0],
                "gain_db": [-20.0, 6.0]},
}

PITCH_STATS_NAMES = ("f0_median_hz", "f0_mean_hz", "f0_std_hz", "f0_p10_hz", "f0_p90_hz", "voiced_fraction")

AMIN = 1e-10  # power floor for logs: log-mel values are >= 10*log10(AMIN) = -100 dB
LOG_FLOOR_DB = 10.0 * math.log10(AMIN)
_BLOCK_FRAMES = 32  # STFT frames per FFT call: keeps the working set in cache (~2x faster)


# ----------------------------------------------------------------------------- config


def validate_feature_config(cfg: dict | None) -> dict:
    """Check a ``features:`` dict and return a copy with defaults filled in.

    Raises ValueError naming the offending key, e.g.
    ``features.n_mels must be a positive int, got -3``.
    """
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ValueError(f"features must be a mapping, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"features.{unknown[0]} is not a known key (known: {', '.join(DEFAULT_CONFIG)})")
    out = {**DEFAULT_CONFIG, **cfg}

    def positive_int(key: str) -> None:
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"features.{key} must be a positive int, got {v!r}")
        out[key] = int(v)

    def positive_float(key: str) -> None:
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"features.{key} must be a positive number, got {v!r}")
        out[key] = float(v)

    if out["kind"] not in KINDS:
        raise ValueError(f"features.kind must be one of {', '.join(KINDS)}, got {out['kind']!r}")
    if out["sample_rate"] != "native":
        try:
            positive_int("sample_rate")
        except ValueError:
            raise ValueError(
                f"features.sample_rate must be a positive int (Hz) or 'native', got {out['sample_rate']!r}"
            ) from None
    for key in ("n_fft", "hop_length", "n_mels", "n_mfcc", "patch_frames"):
        positive_int(key)
    for key in ("fmin_f0", "fmax_f0", "yin_threshold", "ge2e_rate", "ge2e_min_coverage"):
        positive_float(key)
    v = out["target_dbfs"]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not -120 < v < 0:
        raise ValueError(f"features.target_dbfs must be a number in (-120, 0) dBFS, got {v!r}")
    out["target_dbfs"] = float(v)
    if out["ge2e_min_coverage"] > 1:
        raise ValueError(f"features.ge2e_min_coverage must be in (0, 1], got {out['ge2e_min_coverage']}")
    if not 0.625 <= out["ge2e_rate"] <= 50:
        raise ValueError(f"features.ge2e_rate must be in [0.625, 50] partials per second, got {out['ge2e_rate']}")
    v = out["encoder_device"]
    if not (isinstance(v, str) and (v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v))):
        raise ValueError(f"features.encoder_device must be auto, cpu, cuda or cuda:N, got {v!r}")
    if out["ge2e_precision"] not in ("bfloat16", "mixed", "float32"):
        raise ValueError(f"features.ge2e_precision must be bfloat16, mixed or float32, got {out['ge2e_precision']!r}")
    if isinstance(out["n_jobs"], bool) or not isinstance(out["n_jobs"], int) or out["n_jobs"] == 0:
        raise ValueError(f"features.n_jobs must be a non-zero int (-1 = all cores), got {out['n_jobs']!r}")
    out["augment"] = _validate_augment(out["augment"])
    if out["n_fft"] < 16:
        raise ValueError(f"features.n_fft must be >= 16, got {out['n_fft']}")
    if out["n_mfcc"] > out["n_mels"]:
        raise ValueError(f"features.n_mfcc must be <= features.n_mels ({out['n_mels']}), got {out['n_mfcc']}")
    if out["fmin_f0"] >= out["fmax_f0"]:
        raise ValueError(f"features.fmax_f0 must exceed features.fmin_f0 ({out['fmin_f0']}), got {out['fmax_f0']}")
    if out["kind"] != "ge2e" and out["sample_rate"] != "native" and out["fmax_f0"] >= out["sample_rate"] / 4:
        raise ValueError(f"features.fmax_f0 must be below sample_rate / 4, got {out['fmax_f0']}")
    if out["yin_threshold"] >= 1:
        raise ValueError(f"features.yin_threshold must be in (0, 1), got {out['yin_threshold']}")
    return out


def _validate_augment(aug) -> dict:
    defaults = DEFAULT_CONFIG["augment"]
    if not isinstance(aug, dict):
        raise ValueError(f"features.augment must be a mapping, got {aug!r}")
    unknown = sorted(set(aug) - set(defaults))
    if unknown:
        raise ValueError(f"features.augment.{unknown[0]} is not a known key (known: {', '.join(defaults)})")
    out = {**defaults, **aug}

    def number(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float, np.number)) and math.isfinite(v)

    for key in ("copies", "seed"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"features.augment.{key} must be an int >= 0, got {v!r}")
        out[key] = int(v)
    v = out["max_per_speaker"]
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0):
        raise ValueError(f"features.augment.max_per_speaker must be a positive int or null (every recording), got {v!r}")
    for key in ("reverb_probability", "lowpass_probability"):
        if not number(out[key]) or not 0 <= out[key] <= 1:
            raise ValueError(f"features.augment.{key} must be a probability in [0, 1], got {out[key]!r}")
        out[key] = float(out[key])
    positive = {"rt60_s": True, "lowpass_hz": True, "tilt": False, "snr_db": False, "gain_db": False}
    for key, must_be_positive in positive.items():
        v = out[key]
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(number(x) for x in v) and v[0] <= v[1]) \
                or (must_be_positive and v[0] <= 0):
            raise ValueError(f"features.augment.{key} must be [low, high] numbers with low <= high"
                             f"{' and low > 0' if must_be_positive else ''}, got {v!r}")
        out[key] = [float(v[0]), float(v[1])]
    if not (-1 < out["tilt"][0] and out["tilt"][1] < 1):
        raise ValueError(f"features.augment.tilt must lie in (-1, 1), got {out['tilt']!r}")
    return out


def feature_shape(cfg: dict) -> tuple[int, ...]:
    """Shape of one utterance's feature for this config."""
    cfg = validate_feature_config(cfg)
    kind, n_mels = cfg["kind"], cfg["n_mels"]
    return {
        "ge2e": (256,),
        "mean_mel": (n_mels,),
        "log_mel_stats": (2 * n_mels,),
        "mfcc_stats": (6 * cfg["n_mfcc"],),
        "pitch_stats": (len(PITCH_STATS_NAMES),),
        "pitch_mel": (2 * n_mels + len(PITCH_STATS_NAMES),),
        "log_mel_patch": (n_mels, cfg["patch_frames"]),
    }[kind]


# ----------------------------------------------------------------------------- audio


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


def _analysis_signal(y: np.ndarray, sr: int, cfg: dict) -> tuple[np.ndarray, int]:
    target = sr if cfg["sample_rate"] == "native" else cfg["sample_rate"]
    return resample(y, sr, target), target


# ----------------------------------------------------------------------------- spectra


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
def _mel_segments(sr: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def _mel_project(power: np.ndarray, sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """mel_filterbank(sr, n_fft, n_mels) @ power for one power spectrum (float64 in and out)."""
    bands, idx, weights, starts = _mel_segments(sr, n_fft, n_mels)
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


def mean_power_spectrum(y: np.ndarray, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
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


def mel_spectrogram(y: np.ndarray, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                    dtype: type = np.float64) -> np.ndarray:
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


# ----------------------------------------------------------------------------- kinds (arrays)


def mean_mel(y: np.ndarray, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128) -> np.ndarray:
    """Time-mean mel power spectrum (n_mels,) float32, power units (|amplitude|^2), no log.

    Mean of the linear power spectrum first, then one (sparse) mel projection: exact since mel
    is linear.

    Precision against the report's pipeline (``mean_mel_reference``), the criterion the tests
    enforce: ``max|ours - librosa| / max|librosa| <= 1e-4`` over the 128 bands, i.e. every band's
    error is measured against the vector's own scale (measured: ~2e-7, float32 FFTs). Per band,
    relative errors are also <= 1e-4 (measured <= 1e-6) for every band within 60 dB of the loudest;
    the only bands that exceed it are ~100+ dB below the peak, where the value is rounding-level
    (8-11 kHz of a 16 kHz file resampled to 22,050 Hz: up to ~2, i.e. 200 %, relative there on
    the LibriSpeech sample, on values ~1e-13 of the peak; at native rates every band measured
    stays <= 2e-5). Per element is thus not a usable criterion for float32 FFTs; float64 FFTs
    (``_stft_blocks(..., np.float64)``, ~1.5x slower) would meet it too.
    """
    return _mel_project(mean_power_spectrum(y, n_fft, hop_length), sr, n_fft, n_mels).astype(np.float32)


def log_mel_stats(y: np.ndarray, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128) -> np.ndarray:
    """[mean over time, std over time] of log-mel per band: (2 * n_mels,) float32, in dB
    (``power_to_db`` without top_db: 10*log10(max(power, 1e-10)), so >= -100 dB)."""
    log_s = power_to_db(mel_spectrogram(y, sr, n_fft, hop_length, n_mels))
    return np.concatenate([log_s.mean(axis=1), log_s.std(axis=1)]).astype(np.float32)


def mfcc(y: np.ndarray, sr: int, n_mfcc: int = 20, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128) -> np.ndarray:
    """MFCC (n_mfcc, n_frames) float64: as librosa.feature.mfcc (DCT-II ortho of dB mel, top_db 80)."""
    log_s = power_to_db(mel_spectrogram(y, sr, n_fft, hop_length, n_mels), top_db=80.0)
    return scipy.fft.dct(log_s, type=2, norm="ortho", axis=0)[:n_mfcc]


def mfcc_stats(y: np.ndarray, sr: int, n_mfcc: int = 20, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128) -> np.ndarray:
    """(6 * n_mfcc,) float32: [mean(mfcc), mean(delta), mean(delta2), std(mfcc), std(delta), std(delta2)],
    each block n_mfcc long; MFCC in dB-scaled DCT units, deltas per frame (width 9 Savitzky-Golay,
    as librosa.feature.delta; 'nearest' edge mode when the file has fewer than 9 frames)."""
    import librosa

    c = mfcc(y, sr, n_mfcc, n_fft, hop_length, n_mels)
    mode = "interp" if c.shape[1] >= 9 else "nearest"
    d1 = librosa.feature.delta(c, order=1, mode=mode)
    d2 = librosa.feature.delta(c, order=2, mode=mode)
    stacked = np.concatenate([c, d1, d2], axis=0)
    return np.concatenate([stacked.mean(axis=1), stacked.std(axis=1)]).astype(np.float32)


def yin(
    y: np.ndarray,
    sr: int,
    fmin: float = 60.0,
    fmax: float = 400.0,
    hop_length: int = 512,
    threshold: float = 0.15,
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


def pitch_stats(
    y: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 400.0, hop_length: int = 512, threshold: float = 0.15
) -> np.ndarray:
    """F0 statistics over voiced frames, (6,) float32, see PITCH_STATS_NAMES:
    median, mean, std, 10th and 90th percentile of F0 in Hz, and the voiced fraction (0..1).

    With no voiced frame (silence, noise) the F0 values fall back to sqrt(fmin * fmax) Hz
    (an uninformative mid-range value, std 0) and voiced_fraction is 0, so the vector stays finite.
    """
    f0, voiced = yin(y, sr, fmin, fmax, hop_length, threshold)
    v = f0[voiced]
    if v.size == 0:
        mid = math.sqrt(fmin * fmax)
        return np.array([mid, mid, 0.0, mid, mid, 0.0], dtype=np.float32)
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return np.array([p50, v.mean(), v.std(), p10, p90, v.size / f0.size], dtype=np.float32)


def log_mel_patch(
    y: np.ndarray, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128, patch_frames: int = 128
) -> np.ndarray:
    """Log-mel patch (n_mels, patch_frames) float32 in dB (as log_mel_stats, >= -100 dB):
    the centre patch_frames frames; shorter files are centred and padded with -100 dB (silence)."""
    log_s = power_to_db(mel_spectrogram(y, sr, n_fft, hop_length, n_mels))
    n = log_s.shape[1]
    if n >= patch_frames:
        start = (n - patch_frames) // 2
        return log_s[:, start : start + patch_frames].astype(np.float32)
    out = np.full((n_mels, patch_frames), LOG_FLOOR_DB, dtype=np.float32)
    left = (patch_frames - n) // 2
    out[:, left : left + n] = log_s
    return out


# ----------------------------------------------------------------------------- dispatch


def compute_features(y: np.ndarray, sr: int, config: dict) -> np.ndarray:
    """Feature of one decoded signal (mono float samples at ``sr`` Hz) for a features config."""
    return _compute(y, sr, validate_feature_config(config))


def _compute(y: np.ndarray, sr: int, cfg: dict) -> np.ndarray:
    # cfg already validated: extract_many validates once per batch, not once per file
    if y.size == 0:
        raise ValueError("empty audio (0 samples)")
    kind = cfg["kind"]
    if kind == "ge2e":
        from voicegender.speaker_encoder import ge2e_embedding

        return ge2e_embedding(y, sr, cfg["ge2e_rate"], cfg["ge2e_min_coverage"], cfg["target_dbfs"],
                              encoder_device(cfg["encoder_device"]), cfg["ge2e_precision"])
    y, sr = _analysis_signal(y, sr, cfg)
    n_fft, hop, n_mels = cfg["n_fft"], cfg["hop_length"], cfg["n_mels"]
    if kind == "mean_mel":
        return mean_mel(y, sr, n_fft, hop, n_mels)
    if kind == "log_mel_stats":
        return log_mel_stats(y, sr, n_fft, hop, n_mels)
    if kind == "mfcc_stats":
        return mfcc_stats(y, sr, cfg["n_mfcc"], n_fft, hop, n_mels)
    if kind == "log_mel_patch":
        return log_mel_patch(y, sr, n_fft, hop, n_mels, cfg["patch_frames"])
    if cfg["fmax_f0"] >= sr / 4:  # native rates are only known here
        raise ValueError(f"features.fmax_f0={cfg['fmax_f0']} Hz is too high for {sr} Hz audio")
    pitch = pitch_stats(y, sr, cfg["fmin_f0"], cfg["fmax_f0"], hop, cfg["yin_threshold"])
    if kind == "pitch_stats":
        return pitch
    return np.concatenate([log_mel_stats(y, sr, n_fft, hop, n_mels), pitch])  # pitch_mel


def featurize(data: bytes, config: dict) -> np.ndarray:
    """Feature of one encoded audio file (wav/flac bytes)."""
    return _compute(*decode_audio(data), validate_feature_config(config))


def mean_mel_reference(path_or_bytes: str | os.PathLike | bytes, sr: int | None = 22050) -> np.ndarray:
    """The report's pipeline, literally: librosa.load (sr=22050, soxr_hq, mono) +
    librosa.feature.melspectrogram defaults + mean over time. ``sr=None`` keeps the native rate."""
    import librosa

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    y, sr = librosa.load(src, sr=sr)
    spec = librosa.feature.melspectrogram(y=y, sr=sr)
    return np.mean(spec.T, axis=0)


# ----------------------------------------------------------------------------- parallel


@functools.lru_cache(maxsize=1)
def _thread_pools() -> ThreadpoolController:
    """threadpoolctl's controller of the loaded native thread pools (OpenBLAS & co.).
    Built once in the parent (a ~30 ms library scan); forked workers inherit it."""
    return ThreadpoolController()


_SHARED: mmap.mmap | None = None  # in a worker: the parent's shared transfer buffer (fork only)
_SLOT_BYTES = 16 << 20  # audio bytes per in-flight chunk in the shared buffer; bigger chunks are pickled


# glibc mallopt parameters (malloc.h) and the values the workers set, see _keep_freed_memory
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD_BYTES = 1 << 30  # free heap kept before any is handed back: i.e. never, in practice
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's upper limit on 64-bit: smaller blocks come from the heap


def _keep_freed_memory() -> None:
    """Have glibc reuse a worker's freed memory instead of returning it to the kernel.

    A forked worker starts with glibc's default thresholds for its own allocations, so every
    FFT block and decoded file got fresh pages, each faulted in again: on the flac sample ~30k
    page faults and ~0.1 s of system CPU per run (6 % of the total). Workers are short-lived
    and hold little, so keeping their freed memory costs nothing. No-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def _worker_init(uses_blas: bool, shared: mmap.mmap | None) -> None:
    # One process per core: native thread pools would oversubscribe the cores. Only the workers
    # are limited; the caller's own settings are left alone. mean_mel uses no BLAS: there, even
    # setting OpenBLAS's thread count would cost each worker ~0.1-0.2 s of CPU (it starts its
    # thread pool anew after a fork, and the new threads busy-wait before sleeping).
    global _SHARED
    _SHARED = shared
    _keep_freed_memory()
    if uses_blas:
        _thread_pools().limit(limits=1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _warm_up(cfg: dict) -> None:
    import librosa.filters  # noqa: F401  (imports numba & co.: slow, do it once)
    import soxr  # noqa: F401

    if cfg["kind"] == "ge2e":
        from voicegender.speaker_encoder import encoder_for

        device = encoder_device(cfg["encoder_device"])
        if device == "cpu":  # built once, here: forked workers share it (CUDA is used in-process)
            encoder_for(device, cfg["ge2e_precision"])
    elif cfg["sample_rate"] != "native":
        _mel_segments(cfg["sample_rate"], cfg["n_fft"], cfg["n_mels"])  # and mel_filterbank


def encoder_device(name: str) -> str:
    """features.encoder_device resolved: ``auto`` is CUDA when torch sees a GPU, else the CPU."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _versions(y: np.ndarray, sr: int, augment_as: str | None, copies: int, cfg: dict) -> Iterator[tuple[int, np.ndarray]]:
    """(0, the recording) then (k, its k-th augmented copy) for k = 1 .. ``copies``, seeded by
    ``augment_as`` (the utterance id) and ``features.augment.seed``."""
    yield 0, y
    if copies:
        from voicegender.augment import augmented_signals

        yield from enumerate(augmented_signals(y, sr, augment_as, {**cfg["augment"], "copies": copies}), 1)


def _featurize_chunk(chunk: list[tuple], cfg: dict) -> list[tuple[Any, np.ndarray | None, str | None]]:
    """Features of a chunk of (id, audio bytes, augment_as, copies) items, in order: each item's
    own as (id, feature, None), then its ``copies`` augmented versions as ((id, k), feature, None);
    a failure as (id, None, reason), without copies.

    Recordings are decoded once. The speech check (``cfg["speech"]``) scores the chunk's
    recordings together at 16 kHz (``speech.speech_shortfalls``); augmented copies are not
    checked (a copy of speech is speech). ge2e augments at the encoder's 16 kHz (it hears
    nothing above 8 kHz) and puts every partial of the chunk through the encoder together.
    """
    signals: dict[int, tuple[np.ndarray, int]] = {}
    errors: dict[tuple[int, int], str] = {}
    for i, (_, data, _, _) in enumerate(chunk):
        try:
            y, sr = decode_audio(data)
            if y.size == 0:
                raise ValueError("empty audio (0 samples)")
            signals[i] = (y, sr)
        except Exception as exc:  # noqa: BLE001 -- reported per item so the caller can skip it
            errors[i, 0] = _reason(exc)
    at_16k: dict[int, np.ndarray] = {}
    if "speech" in cfg and signals:  # extract_many(speech=...): recordings without enough speech are skipped
        from voicegender.speech import VAD_RATE, speech_shortfalls

        at_16k = {i: resample(y, sr, VAD_RATE) for i, (y, sr) in signals.items()}
        for i, shortfall in zip(list(at_16k), speech_shortfalls(list(at_16k.values()), **cfg["speech"])):
            if shortfall is not None:
                errors[i, 0] = _reason(shortfall)
                del signals[i]
    vectors: dict[tuple[int, int], np.ndarray] = {}
    if cfg["kind"] == "ge2e":
        from voicegender.speaker_encoder import SAMPLE_RATE, ge2e_embeddings, partial_mels

        mels, owners = [], []
        for i, (y, sr) in signals.items():
            w = at_16k[i] if i in at_16k else resample(y, sr, SAMPLE_RATE)
            for k, version in _versions(w, SAMPLE_RATE, chunk[i][2], chunk[i][3], cfg):
                try:
                    mels.append(partial_mels(version, SAMPLE_RATE, cfg["ge2e_rate"], cfg["ge2e_min_coverage"],
                                             cfg["target_dbfs"]))
                    owners.append((i, k))
                except Exception as exc:  # noqa: BLE001
                    errors[i, k] = _reason(exc)
        vectors = dict(zip(owners, ge2e_embeddings(mels, encoder_device(cfg["encoder_device"]), cfg["ge2e_precision"])))
    else:
        for i, (y, sr) in signals.items():
            for k, version in _versions(y, sr, chunk[i][2], chunk[i][3], cfg):
                try:
                    vectors[i, k] = _compute(version, sr, cfg)
                except Exception as exc:  # noqa: BLE001
                    errors[i, k] = _reason(exc)
    out: list[tuple[Any, np.ndarray | None, str | None]] = []
    for i, (item_id, _, _, copies) in enumerate(chunk):
        out.append((item_id, vectors.get((i, 0)), errors.get((i, 0))))
        if (i, 0) in vectors:
            out += [((item_id, k), vectors.get((i, k)), errors.get((i, k))) for k in range(1, copies + 1)]
    return out


def _featurize_shared(layout: list[tuple], cfg: dict) -> list[tuple[Any, np.ndarray | None, str | None]]:
    """_featurize_chunk on items the parent wrote into the shared buffer:
    (id, offset, length, augment_as, copies)."""
    assert _SHARED is not None
    return _featurize_chunk([(item_id, _SHARED[start : start + n], augment_as, copies)
                             for item_id, start, n, augment_as, copies in layout], cfg)


def _chunks(items: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    """Items as (id, bytes, augment_as, copies) (a plain (id, bytes) has no copies), in chunks."""
    chunk: list[tuple] = []
    for item in items:
        chunk.append(tuple(item) if len(item) == 4 else (*item, None, 0))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: ge2e: utterances per worker chunk; their ~4-8 partials each fill encoder blocks of 32
#: (speaker_encoder.ENCODER_BATCH) with little zero padding. Fixed, never timing-dependent.
GE2E_CHUNK = 32


def resolve_n_jobs(n_jobs: int) -> int:
    """n_jobs as in scikit-learn: -1 = all usable cores, -2 = all but one, positive = that many."""
    try:
        n_cpu = len(os.sched_getaffinity(0))
    except AttributeError:
        n_cpu = os.cpu_count() or 1
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0")
    return max(1, n_jobs if n_jobs > 0 else n_cpu + 1 + n_jobs)


def extract_many(
    items: Iterable[tuple],
    config: dict,
    n_jobs: int = -1,
    chunksize: int | None = None,
    max_pending: int | None = None,
    speech: dict | None = None,
) -> Iterator[tuple[Any, np.ndarray | None, str | None]]:
    """Featurize (id, audio bytes) items in parallel; yield (id, feature, None) or (id, None, error).

    An item (id, audio bytes, augment_as, copies) also gets ``copies`` augmented versions
    (``features.augment``, seeded by the id string ``augment_as``), yielded right after it as
    ((id, k), feature, None) for k = 1 .. copies; none if the item itself failed.
    Input order is preserved. ``items`` is consumed lazily: at most ``max_pending`` chunks of
    ``chunksize`` items (default 2 per worker; ``chunksize`` default 8, for ge2e ``GE2E_CHUNK``,
    whose partials go through the encoder in one batch) are in flight, so memory stays bounded for any
    corpus size. Per-item failures (corrupt, empty, non-audio) are yielded as error strings,
    never raised. Output is byte-identical for any n_jobs. ``speech``: the keyword arguments of
    :func:`voicegender.speech.require_speech` (``min_speech_s`` and the VAD settings): items with
    less speech are yielded as errors (``NoSpeech: ...``) too (their copies are not checked);
    None = no check.

    With n_jobs > 1 the first chunk is computed in the calling process, the rest by forked
    workers that receive the audio through shared memory (see below) and return the features.
    """
    cfg = validate_feature_config(config)  # fail fast, in the caller's process
    if speech is not None:
        cfg = {**cfg, "speech": dict(speech)}  # travels with cfg to the workers (_featurize_chunk)
    n_workers = resolve_n_jobs(n_jobs)
    if chunksize is None:
        chunksize = GE2E_CHUNK if cfg["kind"] == "ge2e" else 8
    if cfg["kind"] == "ge2e" and encoder_device(cfg["encoder_device"]) != "cpu":
        n_workers = 1  # the GPU is the parallelism; CUDA does not survive a fork either
    _warm_up(cfg)  # forked workers inherit imports and caches instead of each paying ~1 s
    items = iter(items)
    if n_workers > 1:
        # The first chunk is done here, before forking, so that the workers inherit what it set up
        # (the filterbank for a native rate, FFT plans: ~80 ms per worker otherwise). A whole
        # chunk, not one item: chunks are then the same for any n_jobs, and so are the batched
        # speech check's results (its batch is a chunk).
        for first in itertools.islice(_chunks(items, chunksize), 1):
            yield from _featurize_chunk(first, cfg)
    if n_workers == 1:
        for chunk in _chunks(items, chunksize):
            yield from _featurize_chunk(chunk, cfg)
        return
    max_pending = max_pending or 2 * n_workers
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    uses_blas = cfg["kind"] != "mean_mel"
    if uses_blas:
        _thread_pools()  # scan once, here: the workers inherit the result
    # Audio bytes go to forked workers through one anonymous shared mapping of max_pending slots
    # of _SLOT_BYTES (pages are backed only once written): one memcpy each way instead of
    # pickling, two pipe copies and unpickling; only (id, offset, length) triples are pickled.
    # Measured on 88 MB of 16-bit wavs with no feature work, pool start included: 0.18 CPU s
    # vs 0.26 s through pipes (mean_mel's own work on them: ~0.6 s). Without fork: pickled.
    shared = mmap.mmap(-1, max_pending * _SLOT_BYTES) if method == "fork" else None
    free_slots = collections.deque(range(max_pending))
    with contextlib.ExitStack() as cleanup:
        if shared is not None:
            cleanup.callback(shared.close)
        pool = cleanup.enter_context(ctx.Pool(n_workers, initializer=_worker_init, initargs=(uses_blas, shared)))
        pending: collections.deque = collections.deque()  # (async result, slot or None)

        def submit(chunk: list[tuple]) -> None:
            if shared is None or sum(len(item[1]) for item in chunk) > _SLOT_BYTES:
                pending.append((pool.apply_async(_featurize_chunk, (chunk, cfg)), None))
                return
            slot = free_slots.popleft()
            pos, layout = slot * _SLOT_BYTES, []
            for item_id, data, augment_as, copies in chunk:
                shared[pos : pos + len(data)] = data
                layout.append((item_id, pos, len(data), augment_as, copies))
                pos += len(data)
            pending.append((pool.apply_async(_featurize_shared, (layout, cfg)), slot))

        def collect() -> list[tuple[Any, np.ndarray | None, str | None]]:
            result, slot = pending.popleft()
            out = result.get()
            if slot is not None:
                free_slots.append(slot)
            return out

        for chunk in _chunks(items, chunksize):
            submit(chunk)
            if len(pending) >= max_pending:
                yield from collect()
        while pending:
            yield from collect()
