"""One chunk of recordings to features, in a worker process (the local pool's or a Ray task's).

What runs in a worker: its set-up (:func:`init_worker`: one native thread, glibc keeping freed
memory; :func:`warm_up`: imports and the ge2e encoder loaded once) and :func:`featurize_chunk`
(decode, speech check, augmented copies, features; ge2e chunks of ``GE2E_CHUNK`` recordings
through the encoder together). Failures of a recording are returned as error strings.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import signal
import threading
import sys
from typing import Any, Iterable, Iterator

import numpy as np
from threadpoolctl import ThreadpoolController

from voicegender.audio.decode import decode_audio
from voicegender.errors import UserError
from voicegender.features.kinds import compute_features, encoder_device
from voicegender.params import FeatureSettings
from voicegender.runtime import use_one_thread
from voicegender.audio.spectral import mel_segments, resample


@functools.lru_cache(maxsize=1)
def thread_pools() -> ThreadpoolController:
    """threadpoolctl's controller of the loaded native thread pools (OpenBLAS & co.).
    Built once in the parent (a ~30 ms library scan); forked workers inherit it."""
    return ThreadpoolController()


_SHARED: mmap.mmap | None = None  # in a worker: the parent's shared transfer buffer (fork only)
SLOT_BYTES = 16 << 20  # audio bytes per in-flight chunk in the shared buffer; bigger chunks are pickled


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


def init_worker(uses_blas: bool, shared: mmap.mmap | None) -> None:
    # One process per core: native thread pools would oversubscribe the cores. Only the workers
    # are limited; the caller's own settings are left alone. mean_mel uses no BLAS: there, even
    # setting OpenBLAS's thread count would cost each worker ~0.1-0.2 s of CPU (it starts its
    # thread pool anew after a fork, and the new threads busy-wait before sleeping).
    global _SHARED
    _SHARED = shared
    _keep_freed_memory()
    if uses_blas:
        thread_pools().limit(limits=1)
    if "torch" in sys.modules:  # only where loaded: importing it would cost mean_mel workers ~1 s
        use_one_thread()
    # A terminal's Ctrl-C reaches the whole process group: it is the parent's to handle (it stops
    # the pool, or cancels a Ray driver's tasks). A worker dying of it first would turn the
    # interrupt into a lost worker (exit 1 instead of 130: seen in the Ctrl-C tests).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def warm_up(cfg: FeatureSettings) -> None:
    import librosa.filters  # noqa: F401  (imports numba & co.: slow, do it once)
    import soxr  # noqa: F401

    if cfg.kind == "ge2e":
        from voicegender.features.speaker_encoder import encoder_for

        device = encoder_device(cfg.encoder_device)
        if device == "cpu":  # built once, here: forked workers share it (CUDA is used in-process)
            encoder_for(device, cfg.ge2e_precision)
    elif cfg.sample_rate != "native":
        mel_segments(cfg.sample_rate, cfg.n_fft, cfg.n_mels)  # and mel_filterbank


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _versions(
    y: np.ndarray, sr: int, augment_as: str | None, copies: int, cfg: FeatureSettings
) -> Iterator[tuple[int, np.ndarray]]:
    """(0, the recording) then (k, its k-th augmented copy) for k = 1 .. ``copies``, seeded by
    ``augment_as`` (the utterance id) and ``features.augment.seed``."""
    yield 0, y
    if copies:
        from voicegender.audio.augment import augmented_signals

        yield from enumerate(augmented_signals(y, sr, augment_as, cfg.augment, copies), 1)


def featurize_chunk(
    chunk: list[tuple], cfg: FeatureSettings, speech: dict | None
) -> list[tuple[Any, np.ndarray | None, str | None]]:
    """Features of a chunk of (id, audio bytes, augment_as, copies) items, in order: each item's
    own as (id, feature, None), then its ``copies`` augmented versions as ((id, k), feature, None);
    a failure as (id, None, reason), without copies.

    Recordings are decoded once. The speech check (``speech``: the keyword arguments of
    ``speech.require_speech``) scores the chunk's recordings together at 16 kHz
    (``speech.speech_shortfalls``); augmented copies are not checked (a copy of speech is
    speech). ge2e augments at the encoder's 16 kHz (it hears nothing above 8 kHz) and puts every
    partial of the chunk through the encoder together (the same bytes as one at a time).
    """
    if speech is None and cfg.kind != "ge2e":
        # nothing is batched: one recording at a time, so that its samples stay in the cache
        # between decoding and the features (decoding the whole chunk first was 3-7 % slower)
        return [out for item in chunk for out in _featurize_chunk_batched([item], cfg, speech)]
    return _featurize_chunk_batched(chunk, cfg, speech)


def _featurize_chunk_batched(
    chunk: list[tuple], cfg: FeatureSettings, speech: dict | None
) -> list[tuple[Any, np.ndarray | None, str | None]]:
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
    if speech is not None and signals:  # extract_many(speech=...): recordings without enough speech are skipped
        from voicegender.audio.speech import VAD_RATE, speech_shortfalls

        at_16k = {i: resample(y, sr, VAD_RATE) for i, (y, sr) in signals.items()}
        for i, shortfall in zip(list(at_16k), speech_shortfalls(list(at_16k.values()), **speech)):
            if shortfall is not None:
                errors[i, 0] = _reason(shortfall)
                del signals[i]
    vectors: dict[tuple[int, int], np.ndarray] = {}
    if cfg.kind == "ge2e":
        from voicegender.features.speaker_encoder import SAMPLE_RATE, ge2e_embeddings, partial_mels

        mels, owners = [], []
        for i, (y, sr) in signals.items():
            w = at_16k[i] if i in at_16k else resample(y, sr, SAMPLE_RATE)
            for k, version in _versions(w, SAMPLE_RATE, chunk[i][2], chunk[i][3], cfg):
                try:
                    mels.append(
                        partial_mels(
                            version,
                            SAMPLE_RATE,
                            rate=cfg.ge2e_rate,
                            min_coverage=cfg.ge2e_min_coverage,
                            target_dbfs=cfg.target_dbfs,
                        )
                    )
                    owners.append((i, k))
                except Exception as exc:  # noqa: BLE001
                    errors[i, k] = _reason(exc)
        device = encoder_device(cfg.encoder_device)
        vectors = dict(zip(owners, ge2e_embeddings(mels, device=device, precision=cfg.ge2e_precision)))
    else:
        for i, (y, sr) in signals.items():
            for k, version in _versions(y, sr, chunk[i][2], chunk[i][3], cfg):
                try:
                    vectors[i, k] = compute_features(version, sr, cfg)
                except Exception as exc:  # noqa: BLE001
                    errors[i, k] = _reason(exc)
    out: list[tuple[Any, np.ndarray | None, str | None]] = []
    for i, (item_id, _, _, copies) in enumerate(chunk):
        out.append((item_id, vectors.get((i, 0)), errors.get((i, 0))))
        if (i, 0) in vectors:
            out += [((item_id, k), vectors.get((i, k)), errors.get((i, k))) for k in range(1, copies + 1)]
    return out


def featurize_shared(
    layout: list[tuple], cfg: FeatureSettings, speech: dict | None
) -> list[tuple[Any, np.ndarray | None, str | None]]:
    """featurize_chunk on items the parent wrote into the shared buffer:
    (id, offset, length, augment_as, copies)."""
    assert _SHARED is not None
    return featurize_chunk(
        [(item_id, _SHARED[start : start + n], augment_as, copies) for item_id, start, n, augment_as, copies in layout],
        cfg,
        speech,
    )


def in_chunks(items: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
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


class WorkerLost(UserError, RuntimeError):
    """A feature worker process ended abruptly (killed, crashed) more often than
    ``features.max_retries`` allows."""
