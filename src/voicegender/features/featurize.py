"""Featurize a labels table: every split's recordings (and the training copies) into a feature store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from voicegender.audio.augment import recordings_to_augment
from voicegender.corpora.labels import FEMALE, SPLITS
from voicegender.corpora.libritts import iter_audio
from voicegender.features.extraction import extract_many
from voicegender.features.kinds import feature_shape
from voicegender.features.store import open_rows, save_labels
from voicegender.params import FeatureSettings, RaySettings


def build_features(
    rows: list[dict],
    config: FeatureSettings,
    directory: str | Path,
    log=print,
    speech: dict | None = None,
    cluster: RaySettings | None = None,
) -> dict:
    """Featurize every utterance of a labels table into ``directory``, split by split.

    Audio is streamed from each source (one sequential pass per archive) through
    :func:`voicegender.features.extraction.extract_many`; feature rows go straight into memory-mapped
    ``.npy`` files, so memory stays bounded whatever the corpus size. Unreadable recordings
    are reported and skipped, and so are recordings with too little speech when ``speech`` (the
    keyword arguments of :func:`voicegender.audio.speech.require_speech`) is given. Training recordings
    also get ``features.augment.copies`` altered versions (:mod:`voicegender.audio.augment`; at most
    ``max_per_speaker`` recordings of a speaker get them), made in the extraction workers and
    stored after the originals in the train split with ids ``<id>~aug<k>``; val and test are
    never altered. ``cluster`` (``ray:``): with an address, the features are computed on that Ray
    cluster (:func:`voicegender.features.extraction.extract_many`), with the same bytes. ge2e: train and
    val (and the copies) are embedded at ``ge2e_train_rate`` partials a second where it is set,
    test at ``ge2e_rate``. Returns ``{"utterances", "augmented", "skipped": {id: reason},
    "seconds", "recordings": {split: labelled}, "kept": {split: featurized}}`` (recordings, not copies).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    shape = feature_shape(config)
    plan = plan_slots(rows, config.augment)
    partial = {s: open_rows(d / f".{s}_X.partial.npy", len(part), shape) for s, part in plan.by_split.items()}
    done = {s: np.zeros(len(part), dtype=bool) for s, part in plan.by_split.items()}
    skipped: dict[str, str] = {}
    bar = tqdm(total=plan.total, unit="utt", desc=f"featurize {config.kind}", mininterval=2)
    for pass_config, splits in extraction_passes(config):
        items = _audio_items(rows, splits, plan.copies_of, config.augment.copies)
        for key, vector, error in extract_many(
            items, pass_config, n_jobs=config.n_jobs, speech=speech, cluster=cluster, log=log
        ):
            split, i = plan.slot[key]
            if error is None:
                partial[split][i] = vector
                done[split][i] = True
            else:
                skipped[plan.uid(split, i)] = error
                log(f"skipped {plan.uid(split, i)}: {error}")
            bar.update()
    bar.close()
    for split in plan.by_split:
        _write_split(d, split, plan, partial.pop(split), done[split], skipped, shape)
    by_split = plan.by_split
    n_augmented = sum(int(done[s][i]) for s, part in by_split.items() for i, (_, k) in enumerate(part) if k)
    n = sum(int(v.sum()) for v in done.values()) - n_augmented
    return {
        "utterances": n,
        "augmented": n_augmented,
        "skipped": dict(sorted(skipped.items())),
        "seconds": sum(r["seconds"] for r in rows),
        "recordings": {s: sum(1 for _, k in part if k == 0) for s, part in by_split.items()},
        "kept": {s: sum(int(done[s][i]) for i, (_, k) in enumerate(part) if k == 0) for s, part in by_split.items()},
    }


@dataclass(frozen=True)
class Slots:
    """Where each feature row goes. ``by_split[split]``: ``(row, k)`` per output row, the split's
    recordings (k = 0) then, in train, their augmented copies (k = 1 …); ``slot``: extract_many's
    key -> ``(split, index)``, ``(source, member)`` for a recording and ``((source, member), k)`` for
    its copies; ``copies_of``: ``(source, member)`` -> id of the training recordings that get copies."""

    by_split: dict[str, list[tuple[dict, int]]]
    slot: dict
    copies_of: dict[tuple[str, str], str]

    @property
    def total(self) -> int:
        return sum(len(part) for part in self.by_split.values())

    def uid(self, split: str, i: int) -> str:
        """The stored id of row ``i`` of ``split``: the recording's id, ``<id>~aug<k>`` for a copy."""
        r, k = self.by_split[split][i]
        return r["id"] if k == 0 else f"{r['id']}~aug{k}"


def plan_slots(rows: list[dict], augment) -> Slots:
    """The feature rows of a labels table, split by split, with ``augment.copies`` copies of the
    training recordings that :func:`voicegender.audio.augment.recordings_to_augment` picks."""
    train = [r for r in rows if r["split"] == "train"]
    augmented = recordings_to_augment(train, augment.max_per_speaker, augment.seed) if augment.copies else set()
    by_split = {s: [(r, 0) for r in rows if r["split"] == s] for s in SPLITS}
    by_split["train"] += [(r, k) for k in range(1, augment.copies + 1) for r in train if r["id"] in augmented]
    slot = {
        ((r["source"], r["member"]), k) if k else (r["source"], r["member"]): (s, i)
        for s, part in by_split.items()
        for i, (r, k) in enumerate(part)
    }
    copies_of = {(r["source"], r["member"]): r["id"] for r in train if r["id"] in augmented}
    return Slots(by_split, slot, copies_of)


def _audio_items(rows: list[dict], splits: set[str] | None, copies_of: dict, copies: int) -> Iterator[tuple]:
    """extract_many's items for the recordings of ``splits`` (None: all): one sequential pass per
    source, ``(key, bytes)``, or ``(key, bytes, id, copies)`` for a recording that gets copies."""
    for source in sorted({r["source"] for r in rows}):
        wanted = {r["member"] for r in rows if r["source"] == source and (splits is None or r["split"] in splits)}
        if not wanted:
            continue
        for member, data in iter_audio(source, wanted):
            key = (source, member)
            yield (key, data, copies_of[key], copies) if key in copies_of else (key, data)


def extraction_passes(config: FeatureSettings) -> list[tuple[FeatureSettings, set[str] | None]]:
    """(settings, splits) per extraction pass. ge2e_train_rate: the training side (train, val and
    the copies) at its own partial rate, test at ge2e_rate, in two passes (one per source still
    where a source holds one side, as LibriTTS's)."""
    train_rate = config.ge2e_train_rate if config.kind == "ge2e" else None
    if train_rate is None or train_rate == config.ge2e_rate:
        return [(config, None)]
    return [(config.model_copy(update={"ge2e_rate": train_rate}), {"train", "val"}), (config, {"test"})]


def _write_split(
    d: Path, split: str, plan: Slots, partial: np.ndarray, done: np.ndarray, skipped: dict[str, str], shape
) -> None:
    """Store ``split``'s featurized rows (``done``) from its ``partial`` file into ``d`` with their
    labels, ids and speakers, and note the rows never featurized in ``skipped``. A skipped
    recording has no copies: it is reported once, itself (its copies' rows are dropped)."""
    part = plan.by_split[split]
    for i, (r, k) in enumerate(part):
        if k and r["id"] in skipped:
            done[i] = False
            skipped.pop(plan.uid(split, i), None)
    for i in np.flatnonzero(~done):
        if part[i][1] and part[i][0]["id"] in skipped:
            continue
        skipped.setdefault(plan.uid(split, i), "not found in its source")
    keep = np.flatnonzero(done)
    X = open_rows(d / f"{split}_X.npy", len(keep), shape)
    for start in range(0, len(keep), 4096):  # copy in blocks: bounded memory
        X[start : start + 4096] = partial[keep[start : start + 4096]]
    del X, partial  # flushes and unmaps
    (d / f".{split}_X.partial.npy").unlink()
    kept = [part[i][0] for i in keep]
    save_labels(
        d,
        split,
        [FEMALE if r["sex"] == "F" else 1 - FEMALE for r in kept],
        [plan.uid(split, i) for i in keep],
        [r["speaker"] for r in kept],
    )


def empty_split_message(report: dict) -> str | None:
    """What to tell a user when a split with labelled recordings kept none of them (every one
    unreadable or without enough speech), or None: the splits the following stages need, named
    with their counts, the commonest reasons and the knobs that decide them."""
    empty = [s for s, n in report["recordings"].items() if n and not report["kept"][s]]
    if not empty:
        return None
    reasons: dict[str, int] = {}
    for reason in report["skipped"].values():
        head = reason.split(":", 1)[0] if not reason.startswith("NoSpeech") else "no speech (NoSpeech)"
        reasons[head] = reasons.get(head, 0) + 1
    common = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    examples = "; ".join(f"{uid}: {why}" for uid, why in list(report["skipped"].items())[:3])
    splits = ", ".join(f"{s} ({report['recordings'][s]} recordings, all skipped)" for s in empty)
    return (
        f"no recording of the {splits} could be featurized, so no model can be trained or scored.\n"
        f"  Reasons: {common}. E.g. {examples}.\n"
        "  Recordings without speech are skipped by the speech check: check that they hold speech, or set "
        "predict.min_speech_s (0 turns the check off) / predict.check_threshold; unreadable files: see each reason."
    )
