"""The test split under degraded conditions: which recordings, their degraded versions, the scores.

A model at the ceiling on clean test speech can still lose points in a phone call, an echoing
room or a crowd; these functions make those conditions (``voicegender.audio.degrade``) reproducible
and score them the way ``voicegender predict`` answers: a recording whose speech check fails is
answered ``no speech``, which counts as wrong.

Every draw (noise, babble talkers and offsets, which room) comes from a generator seeded by
(seed, the recording's id, the condition's name): the same bytes whatever the order.
"""

from __future__ import annotations

import hashlib
import io
from typing import Iterable, Iterator, Mapping

import numpy as np

from voicegender.audio.degrade import degrade

Recording = tuple[str, str, np.ndarray, int]  # (id, speaker, mono float32 samples, rate in Hz)


def condition_rng(seed: int, uid: str, condition: str) -> np.random.Generator:
    """The generator of one recording under one condition, independent of every other pair."""
    digest = hashlib.sha256(f"{uid}\0{condition}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def choose_recordings(rows: list[dict], max_per_speaker: int | None, seed: int) -> list[dict]:
    """The rows (with ``id`` and ``speaker``) scored: every one, or per speaker ``max_per_speaker``
    in a seeded order (the same choice whatever the rows' order); returned in the rows' order."""
    from voicegender.audio.augment import recordings_to_augment

    chosen = recordings_to_augment(rows, max_per_speaker, seed)
    return [r for r in rows if r["id"] in chosen]


def babble_talkers(
    target: Recording, pool: list[Recording], talkers: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One recording each of ``talkers`` speakers other than the target's (drawn from ``pool``),
    at the target's rate. Fewer when the pool holds fewer other speakers."""
    from voicegender.audio.spectral import resample

    _, speaker, _, sr = target
    by_speaker: dict[str, list[Recording]] = {}
    for rec in pool:
        if rec[1] != speaker:
            by_speaker.setdefault(rec[1], []).append(rec)
    names = sorted(by_speaker)
    picked = rng.choice(len(names), size=min(talkers, len(names)), replace=False) if names else []
    out = []
    for i in sorted(int(i) for i in picked):
        candidates = sorted(by_speaker[names[i]], key=lambda rec: rec[0])  # whatever the pool's order
        _, _, y, rate = candidates[int(rng.integers(len(candidates)))]
        out.append(y if rate == sr else resample(y, rate, sr))
    return out


def degraded_versions(
    recordings: list[Recording], conditions: Mapping, seed: int
) -> Iterator[tuple[tuple[str, str], np.ndarray, int]]:
    """``((id, condition name), samples, rate)`` of every recording under every condition,
    recording by recording; babble talkers come from the other recordings' speakers."""
    for rec in recordings:
        uid, _, y, sr = rec
        for name, condition in conditions.items():
            rng = condition_rng(seed, uid, name)
            others = babble_talkers(rec, recordings, condition.talkers, rng) if condition.kind == "babble" else None
            out, rate = degrade(y, sr, condition, rng, others=others, seed=seed)
            yield (uid, name), out, rate


def wav_bytes(y: np.ndarray, sr: int) -> bytes:
    """Float32 WAV bytes of mono samples (lossless: what the extraction workers decode)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(y, dtype=np.float32), sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def condition_scores(y_true: Iterable[int], p_female: Iterable[float | None], threshold: float) -> dict:
    """Accuracy and balanced accuracy over recordings (``p_female`` None = answered ``no speech``,
    counted wrong), and how many were answered ``no speech``. Labels: 1 female, 0 male."""
    y = np.asarray(list(y_true), dtype=int)
    p = list(p_female)
    answered = np.array([q is not None for q in p], dtype=bool)
    pred = np.array([(q is not None and q >= threshold) for q in p], dtype=int)
    right = answered & (pred == y)
    recalls = [float(right[y == c].mean()) for c in (0, 1) if np.any(y == c)]
    return {
        "accuracy": float(right.mean()) if y.size else 0.0,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "no_speech": int((~answered).sum()),
        "recordings": int(y.size),
    }


def score_conditions(
    recordings: list[Recording],
    females: Mapping[str, bool],
    settings,
    features,
    proba,
    threshold: float,
    *,
    speech: dict | None,
    log=print,
) -> dict[str, dict]:
    """Each condition's :func:`condition_scores` over ``recordings``: every degraded version is
    featurized as training featurized (``features``, :func:`voicegender.features.extraction.extract_many`,
    on ``features.n_jobs`` cores), checked for speech (``speech``: the keyword arguments of
    ``speech.require_speech``; None = no check) and scored by ``proba`` (features -> P(female)).
    ``settings``: the ``robustness`` section; ``females``: id -> whether the speaker is female.
    A recording that cannot be featurized under a condition is logged and counted wrong."""
    from tqdm import tqdm

    from voicegender.features.extraction import extract_many

    conditions = settings.conditions
    items = ((key, wav_bytes(y, sr)) for key, y, sr in degraded_versions(recordings, conditions, settings.seed))
    vectors: dict[tuple[str, str], np.ndarray | None] = {}
    bar = tqdm(total=len(recordings) * len(conditions), unit="version", desc="robustness", mininterval=2)
    for key, vector, error in extract_many(items, features, n_jobs=features.n_jobs, speech=speech):
        if error is not None and not error.startswith("NoSpeech"):
            log(f"{key[0]} ({key[1]}): {error}")
        vectors[key] = vector
        bar.update()
    bar.close()
    answered = [key for key, v in vectors.items() if v is not None]
    p = dict(zip(answered, proba(np.stack([vectors[k] for k in answered])))) if answered else {}
    return {
        name: condition_scores(
            [int(females[uid]) for uid, *_ in recordings],
            [None if (uid, name) not in p else float(p[uid, name]) for uid, *_ in recordings],
            threshold,
        )
        for name in conditions
    }
