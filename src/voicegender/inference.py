"""A trained model applied to recordings: whole-file answers, segments of one sex, speaking time.

What ``voicegender predict`` computes (the command line, in :mod:`voicegender.cli`, only parses
arguments and writes rows). Any sample rate, any format libsndfile reads (:data:`AUDIO_EXTENSIONS`);
the model card's features config says how to featurize, exactly as the featurize stage did.

How a recording is read:

1. **Speech**: silero-vad (:mod:`voicegender.audio.speech`) finds stretches of speech between pauses of
   at least ``predict.min_silence_s``; a recording with less than ``predict.min_speech_s`` of
   speech is answered ``no speech``.
2. **Windowed decisions**: inside each stretch, one decision every ``predict.hop_s`` seconds over
   a short window (ge2e: the encoder's 1.6 s partial utterances, each scored by the model as an
   utterance's embedding; other kinds: ``predict.window_s`` of audio featurized as in training),
   placed at the window's centre and interpolated to 10 ms frames (in log-odds, clipped to
   +- ``predict.max_log_odds``).
3. **Smoothing**: a two-state (female / male) Viterbi pass over the frames of each stretch; a
   change of sex costs ``predict.switch_penalty`` (log-odds). So a stretch splits where the voice's
   sex changes, even without a pause, and not at every odd window.
4. **Answers**: each run of one sex gets its ``p_female`` from its feature made as in training
   (ge2e: the normalised mean of the partial embeddings inside it; other kinds: featurized whole);
   neighbours that get the same answer are joined (``p_female`` their length-weighted mean).
   A segment is thus a stretch of speech of one sex: it ends at a pause or where the sex changes.

A whole-file answer is the recording featurized whole, as in training (longer than
``predict.max_whole_s``: the length-weighted mean of its segments), plus its speaking time per
sex from the segments; ``mixed`` when the minority sex holds at least ``predict.mixed_min_s``.

Times in seconds, probabilities of female in [0, 1]. :func:`run` spreads files, and the
stretches of long recordings, over worker processes; every task is computed alone, on one torch
thread, so answers do not depend on the number of workers.
"""

from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from voicegender.runtime import use_one_thread

NO_SPEECH = "no speech"
ERROR = "error"
FRAME_S = 0.01  # s: the frames the Viterbi pass labels (the scoring unit of segment accuracy too)
BLOCK_S = 30.0  # s of audio decoded at a time for speech detection (bounded memory)
#: file name endings taken from a directory: the containers libsndfile reads (soundfile >= 0.12)
AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".oga",
    ".opus",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".snd",
    ".caf",
    ".w64",
    ".rf64",
)

SYNTHETIC_WARNING = (
    "voicegender: warning: this model was trained on generated (eSpeak) speech, never on a real voice: "
    "its answers on real recordings are unreliable. Train on real speech: `dvc exp run -S corpus=libritts "
    "-S data.libritts.train_subset=dev-clean` (1.3 GB), or `-S corpus=folder -S data.folder.manifest=FILE.csv "
    "-S data.folder.recordings=FOLDER` (FOLDER holds the recordings and FILE.csv; see README)"
)
UNKNOWN_DATA_WARNING = (
    "voicegender: warning: the model card does not say what data the model was trained on "
    "(trained by an older version): retrain to record it"
)


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Each path as given, except directories: the audio files inside them (by ending, see
    :data:`AUDIO_EXTENSIONS`), recursively, sorted. Missing paths are kept (answered ``error``)."""
    out: list[str] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
            out.extend(found)
        else:
            out.append(path)
    return out


# ----------------------------------------------------------------------------- smoothing


def viterbi_two_state(log_odds: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The most likely female (True) / male (False) label of each frame, given each frame's
    log-odds of female vs male, when every change of label costs ``switch_penalty``.
    Ties keep the current label (then male at the start): deterministic."""
    n = len(log_odds)
    if n == 0:
        return np.zeros(0, dtype=bool)
    lo = np.asarray(log_odds, dtype=np.float64)
    # scores of ending in male (0) / female (1); emissions: male 0, female log_odds (a shift of both
    # by the same amount changes nothing)
    back = np.zeros((n, 2), dtype=bool)  # True: came from the other state
    s0, s1 = 0.0, lo[0]
    for t in range(1, n):
        switch0, switch1 = s1 - switch_penalty > s0, s0 - switch_penalty > s1
        n0 = (s1 - switch_penalty) if switch0 else s0
        n1 = ((s0 - switch_penalty) if switch1 else s1) + lo[t]
        back[t] = switch0, switch1
        s0, s1 = n0, n1
    labels = np.zeros(n, dtype=bool)
    state = bool(s1 > s0)
    for t in range(n - 1, -1, -1):
        labels[t] = state
        if back[t, int(state)]:
            state = not state
    return labels


def runs(labels: np.ndarray) -> list[tuple[int, int, bool]]:
    """``[(first, end, label), ...]`` of each run of equal labels (end exclusive)."""
    if len(labels) == 0:
        return []
    cuts = np.flatnonzero(np.diff(labels.astype(np.int8))) + 1
    edges = [0, *cuts.tolist(), len(labels)]
    return [(a, b, bool(labels[a])) for a, b in zip(edges[:-1], edges[1:])]


def frame_log_odds(centres_s: np.ndarray, log_odds: np.ndarray, duration_s: float, max_log_odds: float) -> np.ndarray:
    """Windows' log-odds (placed at their centres, s) interpolated to the 10 ms frames of a
    stretch ``duration_s`` long, clipped to +- ``max_log_odds``; constant beyond the outer windows."""
    n = max(1, int(math.ceil(duration_s / FRAME_S - 1e-9)))
    t = (np.arange(n) + 0.5) * FRAME_S
    return np.interp(t, centres_s, np.clip(log_odds, -max_log_odds, max_log_odds))


# ----------------------------------------------------------------------------- the predictor


@dataclass
class Speech:
    """Speech detection of one recording: its length, sample rate, stretches of speech (padded,
    as segments) and seconds of speech (unpadded)."""

    duration_s: float
    sr: int
    stretches: list[tuple[float, float]]
    speech_s: float


@dataclass
class Segment:
    start_s: float
    end_s: float
    answer: str
    p_female: float

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


class Predictor:
    """A trained model plus its card's ``predict`` settings: answers recordings."""

    def __init__(self, model_dir: str | Path = "models", overrides: dict | None = None):
        from voicegender.models.networks import load_trained

        self.model_dir, self.overrides = str(model_dir), dict(overrides or {})
        self.model, self.card = load_trained(model_dir)
        self.threshold = float(self.card.get("threshold", 0.5))
        self.shape = tuple(self.card["input_shape"])
        card_settings = self.card.get("predict")
        if card_settings is None:
            raise KeyError("the model card has no `predict` settings (trained by an older version): retrain it")
        from voicegender.params import FeatureSettings, ParamError, PredictSettings, validate_predict

        # a card written before a predict key existed takes that key's default
        settings = {**PredictSettings().model_dump(mode="json"), **card_settings}
        given = {k: v for k, v in self.overrides.items() if v is not None}
        if given.get("vad_threshold") is not None and given.get("vad_neg_threshold") is None:
            # a lower threshold alone must not leave the pause threshold (or the check's) above it
            given["vad_neg_threshold"] = min(settings["vad_neg_threshold"], given["vad_threshold"])
            given["check_threshold"] = min(settings["check_threshold"], given["vad_threshold"])
        try:
            self.settings = validate_predict({**settings, **given})
        except ParamError as e:
            raise ValueError(str(e)) from None
        self.features = FeatureSettings.model_validate(self.card["features"])
        from voicegender.audio.speech import check_settings, vad_settings

        self.vad = vad_settings(self.settings)
        self.check = {k: v for k, v in check_settings(self.settings).items() if k != "min_speech_s"}
        self.min_speech_s = float(self.settings.min_speech_s)
        self.max_whole_s = float(self.settings.max_whole_s)

    def warning(self) -> str | None:
        """One line about the training data a user must know of, or None."""
        data = self.card.get("data")
        if data is None:
            return UNKNOWN_DATA_WARNING
        return SYNTHETIC_WARNING if data.get("corpus") == "synthetic" else None

    # -- model --------------------------------------------------------------------------------

    def _proba(self, X: np.ndarray) -> np.ndarray:
        from voicegender.models.training import predict_proba

        if X.shape[1:] != self.shape:
            raise ValueError(f"feature shape {X.shape[1:]} differs from the model's {self.shape}")
        return predict_proba(self.model, X).astype(np.float64)

    def answer(self, y: np.ndarray, sr: int) -> tuple[str, float]:
        """(female / male, p_female) of mono samples featurized whole, as in training."""
        from voicegender.features.kinds import compute_features

        p_female = float(self._proba(compute_features(y, sr, self.features)[None])[0])
        return self._label(p_female), p_female

    def _label(self, p_female: float) -> str:
        return "female" if p_female >= self.threshold else "male"

    def _log_odds(self, p: np.ndarray) -> np.ndarray:
        """Log-odds of female vs male relative to the decision threshold (0 = undecided)."""
        eps = 1e-12
        p = np.clip(p, eps, 1 - eps)
        t = min(max(self.threshold, eps), 1 - eps)
        return np.log(p / (1 - p)) - math.log(t / (1 - t))

    def window_decisions(self, y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, tuple | None]:
        """(centres in s, p_female, windows) of the windowed decisions over mono samples ``y`` at ``sr``:
        one every ``hop_s``. ge2e: the encoder's 1.6 s partials, each embedding scored as an
        utterance's (unit norm, as combine_partials makes them); other kinds: ``window_s`` of
        audio featurized as in training. ``windows``: ge2e's (starts s, ends s, embeddings), else None."""
        hop = float(self.settings.hop_s)
        f = self.features
        if f.kind == "ge2e":
            from voicegender.features.kinds import encoder_device
            from voicegender.features.speaker_encoder import (
                HOP_LENGTH,
                PARTIAL_FRAMES,
                SAMPLE_RATE,
                embed_partials,
                partial_mels,
                partial_starts,
            )
            from voicegender.audio.spectral import resample

            y16 = resample(np.asarray(y, dtype=np.float32), sr, SAMPLE_RATE)
            n16 = len(y16)
            mels = partial_mels(
                y16, SAMPLE_RATE, rate=1.0 / hop, min_coverage=f.ge2e_min_coverage, target_dbfs=f.target_dbfs
            )
            starts = partial_starts(n16, 1.0 / hop, f.ge2e_min_coverage)
            emb = embed_partials(mels, device=encoder_device(f.encoder_device), precision=f.ge2e_precision)
            frame_s = HOP_LENGTH / SAMPLE_RATE
            width = min(PARTIAL_FRAMES * frame_s, n16 / SAMPLE_RATE)
            windows = (starts * frame_s, starts * frame_s + width, emb)
            return starts * frame_s + width / 2, self._proba(emb), windows
        from voicegender.features.kinds import compute_features

        duration = len(y) / sr
        win = min(float(self.settings.window_s), duration)
        n = int(math.floor((duration - win) / hop + 1e-9)) + 1
        starts_s = np.arange(n) * hop
        X = np.stack([compute_features(y[int(round(s * sr)) : int(round((s + win) * sr))], sr, f) for s in starts_s])
        return starts_s + win / 2, self._proba(X), None

    def label_piece(self, y: np.ndarray, sr: int, offset_s: float = 0.0) -> list[Segment]:
        """Segments of one sex within a stretch of speech (samples ``y`` at ``sr``, starting at
        ``offset_s`` in the recording): windowed decisions, Viterbi smoothing, then each run
        answered whole; neighbours with the same answer joined."""
        duration = len(y) / sr
        centres, p, windows = self.window_decisions(y, sr)
        lo = frame_log_odds(centres, self._log_odds(p), duration, self.settings.max_log_odds)
        labels = viterbi_two_state(lo, self.settings.switch_penalty)
        out: list[Segment] = []
        for a, b, _ in runs(labels):
            start, end = a * FRAME_S, min(b * FRAME_S, duration)
            answer, p_female = self._run_answer(y, sr, start, end, windows)
            seg = Segment(round(offset_s + start, 3), round(offset_s + end, 3), answer, p_female)
            if out and out[-1].answer == seg.answer and abs(out[-1].end_s - seg.start_s) < 1e-6:
                prev = out[-1]
                p_joined = (prev.p_female * prev.length_s + seg.p_female * seg.length_s) / (
                    prev.length_s + seg.length_s
                )
                out[-1] = Segment(prev.start_s, seg.end_s, answer, p_joined)
            else:
                out.append(seg)
        return out

    def _run_answer(self, y: np.ndarray, sr: int, start: float, end: float, windows) -> tuple[str, float]:
        """(answer, p_female) of a run of one sex from ``start`` to ``end`` s of ``y``. ge2e: the
        utterance embedding made as in training, the normalised mean of partial embeddings, from
        the windows already embedded (those inside the run, else those centred in it): saves an
        encoder pass (~25 % of the time). Other kinds: the run featurized whole."""
        if windows is not None:
            from voicegender.features.speaker_encoder import combine_partials

            w_start, w_end, emb = windows
            tol = FRAME_S / 2
            inside = (w_start >= start - tol) & (w_end <= end + tol)
            if not inside.any():
                centre = (w_start + w_end) / 2
                inside = (centre >= start - tol) & (centre <= end + tol)
            if inside.any():
                p_female = float(self._proba(combine_partials(emb[inside])[None])[0])
                return self._label(p_female), p_female
        return self.answer(y[int(round(start * sr)) : int(round(end * sr))], sr)

    # -- files --------------------------------------------------------------------------------

    def speech(self, path: str) -> Speech:
        """Speech detection over a file, decoded in blocks (memory does not grow with its length).
        Raises ValueError naming what is wrong with a bad file."""
        import soundfile as sf

        from voicegender.audio.speech import iter_speech_probabilities, segments_from_probabilities, total_seconds

        p = _regular_file(path)
        with _open(p) as f:
            sr, frames = f.samplerate, f.frames
            duration = frames / sr if sr else 0.0
            if frames == 0:
                raise ValueError("audio: no audio samples")
            if duration < self.min_speech_s:
                return Speech(duration, sr, [], 0.0)
            blocks = (_mono(b) for b in f.blocks(blocksize=int(BLOCK_S * sr), dtype="float32", always_2d=True))
            try:
                probs = np.concatenate(list(iter_speech_probabilities(blocks, sr)))
            except sf.LibsndfileError as e:
                raise ValueError(f"audio: not readable audio ({e.error_string})") from None
        # whether there is speech: the check's threshold (predict.check_threshold); where it is:
        # the segmenting one, unless that finds none (speech in an echoing room scores low)
        speech_s = total_seconds(segments_from_probabilities(probs, duration, **{**self.check, "pad_s": 0.0}))
        stretches = []
        if speech_s >= self.min_speech_s:
            for vad in (self.vad, self.check):
                found = segments_from_probabilities(probs, duration, **vad)
                stretches = [(s, e) for s, e in found if e - s >= self.min_speech_s]
                if stretches:
                    break
        return Speech(duration, sr, stretches, round(speech_s, 3))

    def label_span(self, path: str, start_s: float, end_s: float) -> list[Segment]:
        """:meth:`label_piece` of the file's samples between ``start_s`` and ``end_s``."""
        with _open(_regular_file(path)) as f:
            sr = f.samplerate
            f.seek(int(round(start_s * sr)))
            y = _mono(f.read(int(round((end_s - start_s) * sr)), dtype="float32", always_2d=True))
        return self.label_piece(y, sr, start_s)

    def whole(self, path: str) -> tuple[str, float]:
        """The file featurized whole, as in training: (female / male, p_female)."""
        from voicegender.audio.decode import decode_audio

        y, sr = decode_audio(_regular_file(path).read_bytes(), name="audio")
        return self.answer(y, sr)

    def pieces(self, speech: Speech) -> list[tuple[float, float]]:
        """The spans labelled one task each: stretches cut into pieces of at most max_whole_s."""
        return list(_pieces(speech.stretches, self.max_whole_s))


# ----------------------------------------------------------------------------- rows


def segment_rows(path: str, speech: Speech, segments: list[Segment]) -> list[dict]:
    """One row per segment (``file, start_s, end_s, answer, p_female, speech_s``); none: one
    ``no speech`` row over the whole recording."""
    if not segments:
        return [_no_speech_row(path, speech)]
    return [
        {
            "file": path,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "answer": s.answer,
            "p_female": s.p_female,
            "speech_s": round(s.length_s, 3),
        }
        for s in segments
    ]


def _no_speech_row(path: str, speech: Speech) -> dict:
    return {
        "file": path,
        "start_s": 0.0,
        "end_s": round(speech.duration_s, 3),
        "answer": NO_SPEECH,
        "p_female": None,
        "speech_s": speech.speech_s,
    }


def sex_seconds(segments: list[Segment]) -> tuple[float, float]:
    """(female, male) seconds of speech in segments."""
    female = float(sum(s.length_s for s in segments if s.answer == "female"))
    male = float(sum(s.length_s for s in segments if s.answer == "male"))
    return round(female, 3), round(male, 3)


def whole_row(
    path: str, speech: Speech, segments: list[Segment], whole: tuple[str, float] | None, mixed_min_s: float, threshold
) -> dict:
    """The whole-file row: ``file, start_s, end_s, answer, p_female, speech_s, female_s, male_s,
    mixed``. ``whole``: the file featurized whole; None: from the segments (length-weighted)."""
    female_s, male_s = sex_seconds(segments)
    row = _no_speech_row(path, speech)
    row.update(female_s=female_s, male_s=male_s, mixed=False)
    if not segments:
        return row
    if whole is None:
        total = sum(s.length_s for s in segments)
        p_female = float(sum(s.p_female * s.length_s for s in segments) / total)
        whole = ("female" if p_female >= threshold else "male", p_female)
    row.update(answer=whole[0], p_female=whole[1], mixed=min(female_s, male_s) >= mixed_min_s)
    return row


def error_row(path: str, message: str, columns: Iterable[str]) -> dict:
    """A failed input: every column present, ``answer`` ``error``, the message in ``error``."""
    row = {c: None for c in columns}
    row.update(file=path, answer=ERROR, error=message)
    return row


def _pieces(segments: list[tuple[float, float]], max_s: float) -> Iterator[tuple[float, float]]:
    """Segments cut into consecutive pieces of at most ``max_s`` seconds (a speaker who never
    pauses must not make one piece as long as the recording: bounded memory)."""
    for start, end in segments:
        n = max(1, math.ceil((end - start) / max_s))
        for i in range(n):
            yield round(start + i * (end - start) / n, 3), round(start + (i + 1) * (end - start) / n, 3)


def _mono(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block[:, 0] if block.shape[1] == 1 else block.mean(axis=1))


def _open(p: Path):
    import soundfile as sf

    try:
        return sf.SoundFile(str(p))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"audio: not readable audio ({getattr(e, 'error_string', None) or e})") from None


def _regular_file(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ValueError("no such file" if not p.exists() else "not a regular file")
    return p


# ----------------------------------------------------------------------------- many files, many cores

_WORKER: Predictor | None = None


def _init_worker(model_dir: str, overrides: dict) -> None:
    global _WORKER
    use_one_thread()
    _WORKER = Predictor(model_dir, overrides)


def _task(kind: str, *args):
    """One unit of work in a worker: ``("speech", path)``, ``("span", path, start, end)`` or
    ``("whole", path)``; returns ``(True, result)`` or ``(False, message)``."""
    assert _WORKER is not None
    try:
        if kind == "speech":
            return True, _WORKER.speech(*args)
        if kind == "span":
            return True, _WORKER.label_span(*args)
        return True, _WORKER.whole(*args)
    except Exception as exc:  # noqa: BLE001 -- one bad file must not stop the others
        return False, _message(exc)


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _Inline:
    """An executor that runs each task at once in this process (``jobs`` 1)."""

    def submit(self, fn: Callable, *args) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut

    def shutdown(self, **_) -> None:
        pass


@dataclass
class _File:
    path: str
    speech: Future
    spans: list[Future] | None = None
    whole: Future | None = None
    done: bool = False
    result: dict = field(default_factory=dict)


def run(
    predictor: Predictor, paths: list[str], *, whole: bool = True, jobs: int = 1
) -> Iterator[tuple[str, Speech | None, list[Segment], tuple[str, float] | None, str | None]]:
    """Every path analysed, in order: ``(path, speech, segments, whole answer, error)`` (error a
    message, or None). Files, and the pieces of long recordings, are spread over ``jobs`` worker
    processes (1: this process); each task is computed alone, so the results do not depend on
    ``jobs``. ``whole``: also featurize each recording whole (up to max_whole_s), as in training."""
    global _WORKER
    if jobs <= 1:
        _WORKER = predictor
        pool = _Inline()
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
        pool = ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=_init_worker, initargs=(predictor.model_dir, predictor.overrides)
        )
    ahead = max(2, 2 * jobs)  # files in flight: keeps every worker busy across file boundaries
    queue: deque[_File] = deque()
    todo = iter(paths)
    try:
        while True:
            while len(queue) < ahead:
                path = next(todo, None)
                if path is None:
                    break
                queue.append(_File(path, pool.submit(_task, "speech", path)))
            if not queue:
                return
            for item in queue:  # start the spans of every file whose speech is known
                _advance(item, pool, predictor, whole)
            head = queue[0]
            if head.spans is not None and all(f.done() for f in _futures(head)):
                queue.popleft()
                yield _collect(head)
                continue
            busy = [f for item in queue for f in _futures(item) if not f.done()]
            wait(busy, return_when=FIRST_COMPLETED)
    finally:
        pool.shutdown(cancel_futures=True)
        if jobs <= 1:
            _WORKER = None


def _futures(item: _File) -> list[Future]:
    return [item.speech, *(item.spans or []), *([item.whole] if item.whole is not None else [])]


def _advance(item: _File, pool, predictor: Predictor, whole: bool) -> None:
    if item.spans is not None or not item.speech.done():
        return
    ok, speech = item.speech.result()
    if not ok:
        item.spans = []
        return
    item.spans = [pool.submit(_task, "span", item.path, s, e) for s, e in predictor.pieces(speech)]
    if whole and item.spans and speech.duration_s <= predictor.max_whole_s:
        item.whole = pool.submit(_task, "whole", item.path)


def _collect(item: _File):
    ok, speech = item.speech.result()
    if not ok:
        return item.path, None, [], None, speech
    segments: list[Segment] = []
    for fut in item.spans or []:
        ok, result = fut.result()
        if not ok:
            return item.path, speech, [], None, result
        segments.extend(result)
    answer = None
    if item.whole is not None:
        ok, result = item.whole.result()
        if not ok:
            return item.path, speech, [], None, result
        answer = result
    return item.path, speech, segments, answer, None


def default_jobs() -> int:
    """All the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
