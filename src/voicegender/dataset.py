"""Utterance tables, speaker-disjoint splits, and feature arrays on disk.

A labels table is a list of dicts with the columns of ``LABEL_COLUMNS``: one row per
utterance, naming its speaker, sex (``F``/``M``), split (``train``/``val``/``test``), and where
its audio is (``source``: an archive or a folder; ``member``: the path inside it).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from voicegender.params import FeatureSettings, RaySettings

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


def save_features(
    directory: str | Path, split: str, X: np.ndarray, y: np.ndarray, ids: list[str], speakers: list[str]
) -> None:
    """Save one split as ``{split}_X.npy``, ``_y.npy``, ``_ids.npy``, ``_speakers.npy``.

    Plain ``.npy`` files (not ``.npz``, whose zip headers carry timestamps) so that the same
    features give the same bytes.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / f"{split}_X.npy", np.ascontiguousarray(X, dtype=np.float32))
    _save_labels(d, split, y, ids, speakers)


def _save_labels(d: Path, split: str, y, ids, speakers) -> None:
    np.save(d / f"{split}_y.npy", np.asarray(y, dtype=np.float32))
    np.save(d / f"{split}_ids.npy", np.asarray(ids, dtype=str))
    np.save(d / f"{split}_speakers.npy", np.asarray(speakers, dtype=str))


def _open_rows(path: Path, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 ``.npy`` of ``n`` rows on disk, memory-mapped (mmap cannot map 0 bytes)."""
    if n == 0:
        np.save(path, np.zeros((0, *shape), dtype=np.float32))
        return np.load(path)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, *shape))


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
    :func:`voicegender.extraction.extract_many`; feature rows go straight into memory-mapped
    ``.npy`` files, so memory stays bounded whatever the corpus size. Unreadable recordings
    are reported and skipped, and so are recordings with too little speech when ``speech`` (the
    keyword arguments of :func:`voicegender.speech.require_speech`) is given. Training recordings
    also get ``features.augment.copies`` altered versions (:mod:`voicegender.augment`; at most
    ``max_per_speaker`` recordings of a speaker get them), made in the extraction workers and
    stored after the originals in the train split with ids ``<id>~aug<k>``; val and test are
    never altered. ``cluster`` (``ray:``): with an address, the features are computed on that Ray
    cluster (:func:`voicegender.extraction.extract_many`), with the same bytes. ge2e: train and
    val (and the copies) are embedded at ``ge2e_train_rate`` partials a second where it is set,
    test at ``ge2e_rate``. Returns ``{"utterances", "augmented", "skipped": {id: reason},
    "seconds", "recordings": {split: labelled}, "kept": {split: featurized}}`` (recordings, not copies).
    """
    from tqdm import tqdm

    from voicegender.augment import recordings_to_augment
    from voicegender.extraction import extract_many
    from voicegender.features import feature_shape
    from voicegender.libritts import iter_audio

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
    partial = {s: _open_rows(d / f".{s}_X.partial.npy", len(part), shape) for s, part in by_split.items()}
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
        X = _open_rows(d / f"{split}_X.npy", len(keep), shape)
        for start in range(0, len(keep), 4096):  # copy in blocks: bounded memory
            X[start : start + 4096] = partial[split][keep[start : start + 4096]]
        del X, partial[split]  # flushes and unmaps
        (d / f".{split}_X.partial.npy").unlink()
        kept = [part[i][0] for i in keep]
        _save_labels(
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


def load_features(directory: str | Path, split: str) -> dict[str, np.ndarray]:
    """Load one split saved by :func:`save_features` as ``{"X", "y", "ids", "speakers"}``."""
    d = Path(directory)
    return {name: np.load(d / f"{split}_{name}.npy") for name in ("X", "y", "ids", "speakers")}


def training_data_card(corpus_info: dict, labels_path: str | Path, splits: dict[str, dict]) -> dict:
    """What a model was trained on, for its model card.

    ``corpus_info``: the download stage's ``corpus.json`` (``corpus``, ``sources``, and for a
    folder corpus ``manifest``); ``splits``: ``{split: {"y", "speakers"}}`` as loaded from the
    features (recordings featurize skipped are not counted). ``labels_sha256`` fingerprints
    the exact utterance table, so two cards with the same value saw the same data.
    """
    import hashlib

    card: dict = {"corpus": corpus_info["corpus"], "generated": corpus_info["corpus"] == "synthetic"}
    subsets = {s["role"]: s["subset"] for s in corpus_info.get("sources", []) if s.get("subset")}
    if subsets:
        card["subsets"] = subsets
    if corpus_info.get("manifest"):
        card["manifest"] = corpus_info["manifest"]
    card["labels_sha256"] = hashlib.sha256(Path(labels_path).read_bytes()).hexdigest()
    card["splits"] = {}
    for split, part in splits.items():
        y, speakers = np.asarray(part["y"]), np.asarray(part["speakers"]).astype(str)
        if "ids" in part:  # recordings, not their augmented copies (ids <id>~aug<k>)
            original = np.array(["~aug" not in str(i) for i in part["ids"]], dtype=bool)
            card["augmented_copies"] = card.get("augmented_copies", 0) + int((~original).sum())
            y, speakers = y[original], speakers[original]
        card["splits"][split] = {
            "utterances": int(y.size),
            "speakers": int(np.unique(speakers).size),
            "female_utterances": int((y == FEMALE).sum()),
            "male_utterances": int((y != FEMALE).sum()),
        }
    return card


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
