"""Where the speech is in a recording: silero-vad's speech probabilities turned into segments.

One home for speech detection, used by ``voicegender predict`` (answer only where there is
speech; split long recordings at their pauses) and by feature extraction (skip recordings with
too little speech). Plain functions over float samples; times in seconds, rates in Hz.

Why a neural VAD rather than an energy gate: loudness alone accepts white and pink noise, tones
and clicks. silero-vad (MIT; its TorchScript weights ship inside the ``silero-vad`` wheel, so no
download) scores every 32 ms window of 16 kHz audio with a speech probability, and rejects them.

Settings (the ``predict:`` section of params.yaml, passed as keyword arguments):

- ``threshold``: a window with speech probability >= this starts (or continues) speech;
- ``neg_threshold``: once in speech, only a window below this counts as a pause (hysteresis,
  silero's own rule: threshold - 0.15 by default);
- ``min_segment_s``: speech runs shorter than this are dropped (clicks, coughs);
- ``min_silence_s``: pauses shorter than this do not end a segment;
- ``pad_s``: each segment is widened by this much on both sides (clipped, overlaps merged).

The model is loaded once per process and is stateful across the windows of one recording, so
these functions are not thread-safe. Torch's thread count is left as the caller set it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from typing import Iterable, Iterator, Sequence

import numpy as np

from voicegender.params import PredictSettings

VAD_RATE = 16000  # Hz: the rate silero-vad's 16 kHz model scores
WINDOW = 512  # samples per scored window at VAD_RATE (silero's fixed size: 32 ms)
WINDOW_S = WINDOW / VAD_RATE

Segment = tuple[float, float]  # (start_s, end_s)


class NoSpeech(ValueError):
    """A recording holds less speech than required (a reason to skip it, not a failure)."""


@functools.lru_cache(maxsize=1)
def _model():
    import torch

    # The weights' path, found without importing the silero_vad package: its __init__ calls
    # torch.set_num_threads(1) for the whole process, which is the caller's choice, not ours.
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero-vad is not installed: pip install --no-deps silero-vad packaging")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "silero_vad.jit")
    with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript loading; it works, and is what ships
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(path, map_location="cpu")
    model.eval()
    return model


class _Scorer:
    """Speech probability per 32 ms window of one recording fed block by block at rate ``sr``."""

    def __init__(self, sr: int):
        import torch

        self._torch = torch
        self.model = _model()
        self.model.reset_states()
        self.sr = int(sr)
        self._resampler = None
        if self.sr != VAD_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(self.sr, VAD_RATE, 1, dtype="float32", quality="HQ")
        self._pending = np.zeros(0, dtype=np.float32)  # samples at VAD_RATE not yet a full window

    def feed(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Probabilities of the full windows completed by ``block`` (``last``: pad and flush)."""
        x = np.asarray(block, dtype=np.float32)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        x = np.concatenate([self._pending, x]) if self._pending.size else x
        n_full = x.size // WINDOW
        if last and x.size % WINDOW:
            x = np.concatenate([x, np.zeros(WINDOW - x.size % WINDOW, dtype=np.float32)])
            n_full = x.size // WINDOW
        self._pending = x[n_full * WINDOW :].copy()
        if n_full == 0:
            return np.zeros(0, dtype=np.float32)
        windows = self._torch.from_numpy(np.ascontiguousarray(x[: n_full * WINDOW])).view(n_full, WINDOW)
        out = np.empty(n_full, dtype=np.float32)
        with self._torch.inference_mode():
            for i in range(n_full):
                out[i] = float(self.model(windows[i : i + 1], VAD_RATE))
        return out


def speech_probabilities(blocks: np.ndarray | Iterable[np.ndarray], sr: int) -> np.ndarray:
    """silero-vad speech probability of every 32 ms window (``WINDOW_S``) of a recording.

    ``blocks``: the mono samples at ``sr`` Hz, as one array or as consecutive blocks (e.g.
    ``soundfile.blocks``), so that a long file never needs to be in memory at once.
    """
    return np.concatenate(list(iter_speech_probabilities(blocks, sr)) or [np.zeros(0, np.float32)])


def iter_speech_probabilities(blocks: np.ndarray | Iterable[np.ndarray], sr: int) -> Iterator[np.ndarray]:
    """:func:`speech_probabilities`, yielded block by block."""
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    scorer = _Scorer(sr)
    for block in blocks:
        yield scorer.feed(block)
    yield scorer.feed(np.zeros(0, dtype=np.float32), last=True)


def segments_from_probabilities(
    probs: np.ndarray,
    duration_s: float,
    *,
    threshold: float,
    neg_threshold: float,
    min_segment_s: float,
    min_silence_s: float,
    pad_s: float,
    window_s: float = WINDOW_S,
) -> list[Segment]:
    """Speech segments ``[(start_s, end_s), ...]`` from per-window probabilities (see module doc)."""
    runs: list[list[float]] = []
    start = None  # start of the current speech run (s)
    silence_from = None  # start of the current pause inside a run (s)
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        t = i * window_s
        if start is None:
            if p >= threshold:
                start, silence_from = t, None
            continue
        if p >= threshold:
            silence_from = None
        elif p < neg_threshold:
            silence_from = t if silence_from is None else silence_from
            if t + window_s - silence_from >= min_silence_s:
                runs.append([start, silence_from])
                start = silence_from = None
    if start is not None:
        runs.append([start, silence_from if silence_from is not None else len(probs) * window_s])
    merged: list[list[float]] = []
    for s, e in runs:
        if e - s < min_segment_s:
            continue
        s, e = max(0.0, s - pad_s), min(duration_s, e + pad_s)
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in merged if e > s]


def speech_segments(
    y: np.ndarray | Iterable[np.ndarray], sr: int, *, duration_s: float | None = None, **settings
) -> list[Segment]:
    """Speech segments of mono samples ``y`` at ``sr`` Hz (an array or consecutive blocks; then
    pass ``duration_s``). ``settings``: the keyword arguments of :func:`segments_from_probabilities`."""
    if duration_s is None:
        duration_s = len(y) / sr  # type: ignore[arg-type]
    return segments_from_probabilities(speech_probabilities(y, sr), duration_s, **settings)


def total_seconds(segments: list[Segment]) -> float:
    """Summed length of segments (s)."""
    return float(sum(e - s for s, e in segments))


def speech_seconds(y: np.ndarray, sr: int, *, enough_s: float | None = None, block_s: float = 1.0, **settings) -> float:
    """Seconds of speech in ``y`` (``sr`` Hz), unpadded. With ``enough_s``, scoring stops as soon
    as that much speech is found (the answer is then >= ``enough_s``, not the full amount): a
    corpus check needs only to know that a recording has enough, usually from its first second."""
    settings = {**settings, "pad_s": 0.0}
    if y.size == 0:
        return 0.0
    duration_s = y.size / sr
    step = max(1, int(block_s * sr))
    parts: list[np.ndarray] = []
    for probs in iter_speech_probabilities((y[i : i + step] for i in range(0, y.size, step)), sr):
        parts.append(probs)
        if enough_s is not None and probs.size:
            found = total_seconds(segments_from_probabilities(np.concatenate(parts), duration_s, **settings))
            if found >= enough_s:
                return found
    return total_seconds(segments_from_probabilities(np.concatenate(parts), duration_s, **settings))


def require_speech(y: np.ndarray, sr: int, *, min_speech_s: float, **settings) -> float:
    """Raise :class:`NoSpeech` unless ``y`` holds at least ``min_speech_s`` seconds of speech;
    returns the speech found (at least ``min_speech_s``: scoring stops there). ``min_speech_s``
    0 requires nothing (no scoring)."""
    if min_speech_s <= 0:
        return 0.0
    if y.size / sr < min_speech_s:  # too short to hold that much: no need to score it
        raise NoSpeech(f"no speech: {y.size / sr:.3f} s long, under the {min_speech_s} s of speech required")
    found = speech_seconds(y, sr, enough_s=min_speech_s, **settings)
    if found < min_speech_s:
        raise NoSpeech(f"no speech: {found:.2f} s of speech found, under the {min_speech_s} s required")
    return found


VAD_KEYS = ("threshold", "neg_threshold", "min_segment_s", "min_silence_s", "pad_s")


def vad_settings(predict: PredictSettings) -> dict:
    """The keyword arguments of :func:`segments_from_probabilities` from the ``predict:`` settings."""
    return {
        "threshold": predict.vad_threshold,
        "neg_threshold": predict.vad_neg_threshold,
        "min_segment_s": predict.min_segment_s,
        "min_silence_s": predict.min_silence_s,
        "pad_s": predict.pad_s,
    }


def check_settings(predict: PredictSettings) -> dict:
    """The keyword arguments of :func:`require_speech` / :func:`speech_shortfalls` from the
    ``predict:`` settings: ``min_speech_s``, and the VAD settings with ``check_threshold``.

    Why a threshold of its own: the check asks *whether* there is speech, segmenting asks
    *where*. In an echoing room silero's scores of real speech fall to 0.1-0.4 (measured on
    cross-corpus-dev's 2 s EmoDB clips at RT60 0.9 s: 15 of 120 had no 0.5 s at or above 0.5,
    one none at or above 0.1), while white, pink and brown noise, tones, chords, chirps, note
    sequences and drums stay under 0.05 but for single windows (a tone or chirp: up to 0.12;
    a run must last ``min_segment_s``): a low threshold keeps reverberant speech and still
    refuses them (docs/robustness.md)."""
    vad = vad_settings(predict)
    threshold = predict.check_threshold
    return {
        "min_speech_s": predict.min_speech_s,
        **vad,
        "threshold": threshold,
        # the segmenting thresholds' hysteresis, scaled to the check's threshold
        "neg_threshold": min(vad["neg_threshold"], threshold * predict.vad_neg_threshold / predict.vad_threshold),
    }


def speech_seconds_many(
    signals: Sequence[np.ndarray], *, enough_s: float, check_every: int = 32, **settings
) -> list[float]:
    """:func:`speech_seconds` of several recordings at once, mono float at ``VAD_RATE`` (16 kHz).

    Their 32 ms windows are scored together, one batched call per window position: at 32
    recordings ~6x less per window than one by one (silero's per-call overhead dominates).
    Every ``check_every`` windows (and at each one's end) a recording with ``enough_s`` of speech
    is decided; scoring stops when all are decided. Returns each one's seconds of speech
    (>= ``enough_s`` once found, as with ``speech_seconds(..., enough_s=...)``).
    """
    import torch

    settings = {**settings, "pad_s": 0.0}
    n_windows = [-(-len(s) // WINDOW) for s in signals]
    found: list[float | None] = [0.0 if n == 0 else None for n in n_windows]
    if all(f is not None for f in found):
        return [0.0] * len(signals)
    windows = [
        np.pad(np.asarray(s, dtype=np.float32), (0, n * WINDOW - len(s))).reshape(n, WINDOW)
        for s, n in zip(signals, n_windows)
    ]
    probs = np.zeros((len(signals), max(n_windows)), dtype=np.float32)
    batch = np.zeros((len(signals), WINDOW), dtype=np.float32)
    model = _model()
    model.reset_states()
    with torch.inference_mode():
        for w in range(max(n_windows)):
            for i, n in enumerate(n_windows):
                batch[i] = windows[i][w] if w < n else 0.0
            probs[:, w] = model(torch.from_numpy(batch), VAD_RATE).numpy()[:, 0]
            for i, n in enumerate(n_windows):
                if found[i] is not None or (w + 1 < n and (w + 1) % check_every):
                    continue
                seconds = total_seconds(
                    segments_from_probabilities(probs[i, : min(w + 1, n)], len(signals[i]) / VAD_RATE, **settings)
                )
                if seconds >= enough_s or w + 1 >= n:
                    found[i] = seconds
            if all(f is not None for f in found):
                break
    return [float(f) for f in found]


def speech_shortfalls(signals: Sequence[np.ndarray], *, min_speech_s: float, **settings) -> list[NoSpeech | None]:
    """:func:`require_speech` of several recordings at ``VAD_RATE`` at once (scored together,
    see :func:`speech_seconds_many`): for each, the :class:`NoSpeech` it would raise, or None."""
    if min_speech_s <= 0:
        return [None] * len(signals)
    out: list[NoSpeech | None] = [None] * len(signals)
    scored = []
    for i, s in enumerate(signals):
        if s.size / VAD_RATE < min_speech_s:
            out[i] = NoSpeech(
                f"no speech: {s.size / VAD_RATE:.3f} s long, under the {min_speech_s} s of speech required"
            )
        else:
            scored.append(i)
    found = speech_seconds_many([signals[i] for i in scored], enough_s=min_speech_s, **settings)
    for i, seconds in zip(scored, found):
        if seconds < min_speech_s:
            out[i] = NoSpeech(f"no speech: {seconds:.2f} s of speech found, under the {min_speech_s} s required")
    return out
