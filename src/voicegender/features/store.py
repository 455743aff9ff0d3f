"""Feature arrays on disk: one split as plain ``.npy`` files, and the model card of what they hold."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from voicegender.corpora.labels import FEMALE


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
    save_labels(d, split, y, ids, speakers)


def save_labels(d: Path, split: str, y, ids, speakers) -> None:
    """Save one split's labels, ids and speakers beside its ``{split}_X.npy``."""
    np.save(d / f"{split}_y.npy", np.asarray(y, dtype=np.float32))
    np.save(d / f"{split}_ids.npy", np.asarray(ids, dtype=str))
    np.save(d / f"{split}_speakers.npy", np.asarray(speakers, dtype=str))


def open_rows(path: Path, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 ``.npy`` of ``n`` rows on disk, memory-mapped (mmap cannot map 0 bytes)."""
    if n == 0:
        np.save(path, np.zeros((0, *shape), dtype=np.float32))
        return np.load(path)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, *shape))


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
