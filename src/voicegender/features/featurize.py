"""Featurize a labels table: every split's recordings (and the training copies) into a feature store."""

from __future__ import annotations

from pathlib import Path

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
    augment = config.augment
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    shape = feature_shape(config)
    train = [r for r in rows if r["split"] == "train"]
    augmented = recordings_to_augment(train, augment.max_per_speaker, augment.seed) if augment.copies else set()
    by_split = {s: [(r, 0) for r in rows if r["split"] == s] for s in SPLITS}
    by_split["train"] += [(r, k) for k in range(1, augment.copies + 1) for r in train if r["id"] in augmented]
    # feature slot of each output of extract_many: (source, member) for a recording, ((source, member), k) for its copies
    slot = {
        ((r["source"], r["member"]), k) if k else (r["source"], r["member"]): (s, i)
        for s, part in by_split.items()
        for i, (r, k) in enumerate(part)
    }
    copies_of = {(r["source"], r["member"]): r["id"] for r in train if r["id"] in augmented}
    partial = {s: open_rows(d / f".{s}_X.partial.npy", len(part), shape) for s, part in by_split.items()}
    done = {s: np.zeros(len(part), dtype=bool) for s, part in by_split.items()}
    skipped: dict[str, str] = {}

    def uid(split: str, i: int) -> str:
        r, k = by_split[split][i]
        return r["id"] if k == 0 else f"{r['id']}~aug{k}"

    def items(splits):
        for source in sorted({r["source"] for r in rows}):
            wanted = {r["member"] for r in rows if r["source"] == source and (splits is None or r["split"] in splits)}
            if not wanted:
                continue
            for member, data in iter_audio(source, wanted):
                key = (source, member)
                yield (key, data, copies_of[key], augment.copies) if key in copies_of else (key, data)

    # ge2e_train_rate: the training side (train, val and the copies) at its own partial rate, test
    # at ge2e_rate, in two passes (one per source still where a source holds one side, as LibriTTS's)
    train_rate = config.ge2e_train_rate if config.kind == "ge2e" else None
    if train_rate is None or train_rate == config.ge2e_rate:
        passes = [(config, None)]
    else:
        passes = [(config.model_copy(update={"ge2e_rate": train_rate}), {"train", "val"}), (config, {"test"})]
    total = sum(len(part) for part in by_split.values())
    bar = tqdm(total=total, unit="utt", desc=f"featurize {config.kind}", mininterval=2)
    for pass_config, splits in passes:
        for key, vector, error in extract_many(
            items(splits), pass_config, n_jobs=config.n_jobs, speech=speech, cluster=cluster, log=log
        ):
            split, i = slot[key]
            if error is None:
                partial[split][i] = vector
                done[split][i] = True
            else:
                skipped[uid(split, i)] = error
                log(f"skipped {uid(split, i)}: {error}")
            bar.update()
    bar.close()

    for split, part in by_split.items():
        for i, (r, k) in enumerate(part):
            if k and r["id"] in skipped:  # a skipped recording has no copies: it is reported once, itself
                done[split][i] = False
                skipped.pop(uid(split, i), None)
        for i in np.flatnonzero(~done[split]):
            if part[i][1] and part[i][0]["id"] in skipped:
                continue
            skipped.setdefault(uid(split, i), "not found in its source")
        keep = np.flatnonzero(done[split])
        X = open_rows(d / f"{split}_X.npy", len(keep), shape)
        for start in range(0, len(keep), 4096):  # copy in blocks: bounded memory
            X[start : start + 4096] = partial[split][keep[start : start + 4096]]
        del X, partial[split]  # flushes and unmaps
        (d / f".{split}_X.partial.npy").unlink()
        kept = [part[i][0] for i in keep]
        save_labels(
            d,
            split,
            [FEMALE if r["sex"] == "F" else 1 - FEMALE for r in kept],
            [uid(split, i) for i in keep],
            [r["speaker"] for r in kept],
        )
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
