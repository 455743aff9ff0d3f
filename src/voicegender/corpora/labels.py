"""Utterance tables and speaker-disjoint splits.

A labels table is a list of dicts with the columns of ``LABEL_COLUMNS``: one row per
utterance, naming its speaker, sex (``F``/``M``), split (``train``/``val``/``test``), and where
its audio is (``source``: an archive or a folder; ``member``: the path inside it).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

LABEL_COLUMNS = ("id", "speaker", "sex", "split", "source", "member", "seconds")
SPLITS = ("train", "val", "test")
SEXES = ("F", "M")
FEMALE = 1  # label value of a female speaker; male is 0


def normalize_sex(value: str) -> str | None:
    """'F', 'f', 'female', ' Male ' -> 'F' / 'M'; anything else -> None."""
    v = value.strip().lower()
    return {"f": "F", "female": "F", "m": "M", "male": "M"}.get(v)


def split_speakers(speaker_sex: dict[str, str], fraction: float, seed: int) -> set[str]:
    """Choose a ``fraction`` of the speakers of each sex (at least one each when there are two
    or more), reproducibly from ``seed``; returns the chosen speaker ids."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for sex in SEXES:
        speakers = sorted(s for s, x in speaker_sex.items() if x == sex)
        if len(speakers) < 2:
            continue
        n = min(len(speakers) - 1, max(1, round(fraction * len(speakers))))
        chosen.update(rng.permutation(speakers)[:n].tolist())
    return chosen


def assign_splits(rows: list[dict], *, seed: int, val_fraction: float, test_fraction: float) -> None:
    """Speaker-disjoint splits stratified by sex, in place: a ``val_fraction`` of the training
    speakers become val; for a folder corpus without a split column, a ``test_fraction`` of all
    speakers become test first (rows with ``split`` ""). Seeded by ``seed`` (data.seed)."""
    if any(not r["split"] for r in rows):
        sexes = {r["speaker"]: r["sex"] for r in rows}
        test = split_speakers(sexes, test_fraction, seed)
        for r in rows:
            r["split"] = r["split"] or ("test" if r["speaker"] in test else "train")
    train_sexes = {r["speaker"]: r["sex"] for r in rows if r["split"] == "train"}
    val = split_speakers(train_sexes, val_fraction, seed + 1)
    for r in rows:
        if r["split"] == "train" and r["speaker"] in val:
            r["split"] = "val"


def cap_per_speaker(
    rows: list[dict], max_per_speaker: int | None, seed: int, splits: tuple[str, ...] = ("train", "val")
) -> tuple[list[dict], list[dict]]:
    """At most ``max_per_speaker`` recordings of each speaker of ``splits`` (train and val: never
    test, whose every recording is scored); ``None`` keeps every one. Returns (kept rows, left-out
    rows), each in the rows' order.

    Which ones: the speaker's ids sorted (LibriTTS's ``<speaker>_<chapter>_...``: by chapter), then
    ``max_per_speaker`` evenly spaced positions from a seeded offset (sha256 of ``seed`` and the
    speaker), so the choice spreads over the speaker's chapters and sessions and is the same
    whatever the rows' order. Why: a probe on speaker embeddings learns from the variety of
    speakers; LibriTTS's ~135 recordings a speaker cost ~7x the encoder work of 20 for little
    that the first 20 did not already show it."""
    if max_per_speaker is None:
        return list(rows), []
    by_speaker: dict[str, list[str]] = {}
    for r in rows:
        if r["split"] in splits:
            by_speaker.setdefault(r["speaker"], []).append(r["id"])
    kept: set[str] = set()
    for speaker, ids in by_speaker.items():
        ids.sort()
        n = len(ids)
        if n <= max_per_speaker:
            kept.update(ids)
            continue
        offset = int.from_bytes(hashlib.sha256(f"{seed}:{speaker}".encode()).digest()[:8], "little") % n
        # integer steps of n / max_per_speaker >= 1: distinct positions in [0, n)
        kept.update(ids[(i * n + offset) // max_per_speaker] for i in range(max_per_speaker))
    capped = [r for r in rows if r["split"] in splits and r["id"] not in kept]
    left_out = {id(r) for r in capped}
    return [r for r in rows if id(r) not in left_out], capped


def write_labels(rows: list[dict], path: str | Path) -> None:
    """Write a labels table as CSV, sorted by split order then id (stable, diff-friendly)."""
    order = {s: i for i, s in enumerate(SPLITS)}
    rows = sorted(rows, key=lambda r: (order[r["split"]], r["id"]))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in LABEL_COLUMNS})


def read_labels(path: str | Path) -> list[dict]:
    """Read a labels table written by :func:`write_labels` (``seconds`` as float)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seconds"] = float(r["seconds"]) if r.get("seconds") else float("nan")
    return rows


def data_summary(rows: list[dict]) -> dict:
    """Speakers, utterances and hours per split and sex: ``{split: {sex: {...}, "total": {...}}}``."""
    out: dict = {}
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        entry = {}
        for sex, members in (
            ("F", [r for r in part if r["sex"] == "F"]),
            ("M", [r for r in part if r["sex"] == "M"]),
            ("total", part),
        ):
            entry[sex] = {
                "speakers": len({r["speaker"] for r in members}),
                "utterances": len(members),
                "hours": round(sum(r["seconds"] for r in members) / 3600, 4),
            }
        out[split] = entry
    return out
