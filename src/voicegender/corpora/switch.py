"""Which corpus, which sources: the one place that switches on params.yaml's ``corpus``.

:func:`prepare` puts a corpus's audio where the pipeline reads it (generates the synthetic
corpus, downloads or locates LibriTTS, checks and fingerprints a folder manifest) and returns
what the download stage records in ``corpus.json``; :func:`label_rows` turns that record into
one labels row per utterance. The corpora themselves: :mod:`voicegender.corpora.synth`,
:mod:`voicegender.corpora.libritts` (and :mod:`voicegender.corpora.download`), :mod:`voicegender.corpora.folder`.
"""

from __future__ import annotations

from pathlib import Path

from voicegender.corpora import download, folder, libritts, synth
from voicegender.params import CorpusName, LibriTTSSettings, SyntheticSettings


def prepare(
    kind: CorpusName,
    raw: Path,
    *,
    seed: int,
    synthetic: SyntheticSettings,
    libritts_cfg: LibriTTSSettings,
    manifest: str | None,
    recordings: str,
) -> dict:
    """Make corpus ``kind``'s audio readable and return its record: ``{"corpus", "sources": [{"role",
    "path"[, "subset"]}]}`` (a folder corpus adds its ``manifest`` and ``fingerprint``).
    ``raw``: the folder the synthetic corpus is generated into."""
    if kind == "synthetic":
        archives = synth.generate_corpus(
            raw,
            seed=seed,
            train_speakers=synthetic.train_speakers,
            test_speakers=synthetic.test_speakers,
            utterances_per_speaker=synthetic.utterances_per_speaker,
            knobs=synthetic,
        )
        names = list(archives)
        sources = [
            {"role": "train", "subset": names[0], "path": str(archives[names[0]])},
            {"role": "test", "subset": names[1], "path": str(archives[names[1]])},
        ]
        return {"corpus": kind, "sources": sources}
    if kind == "libritts":
        cfg = libritts_cfg
        subsets = [cfg.train_subset, cfg.test_subset]
        if cfg.local_dir:
            paths = download.locate_libritts(cfg.local_dir, subsets, checksums=cfg.checksums)
        else:
            cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else download.default_cache_dir()
            print(f"download: LibriTTS archives in {cache.resolve()} (data.libritts.cache_dir)", flush=True)
            paths = download.fetch_libritts(cfg.base_url, subsets, cache.resolve(), checksums=cfg.checksums)
        sources = [
            {"role": role, "subset": s, "path": str(Path(paths[s]).resolve())}
            for role, s in zip(("train", "test"), subsets)
        ]
        return {"corpus": kind, "sources": sources}
    manifest_path = Path(manifest).resolve()
    rows = folder.read_folder_manifest(manifest_path)
    folder.check_watched(recordings, [manifest_path] + [Path(r["path"]) for r in rows])
    return {
        "corpus": kind,
        "manifest": str(manifest_path),
        "fingerprint": folder.fingerprint_files([manifest_path] + [Path(r["path"]) for r in rows]),
        "sources": [{"role": "folder", "path": s} for s in sorted({r["source"] for r in rows})],
    }


def label_rows(info: dict) -> tuple[list[dict], list[str]]:
    """One labels row per utterance of a prepared corpus (``info``: :func:`prepare`'s record), and
    the ids of utterances left out because the metadata gives no sex. Splits: a LibriTTS-layout
    source's role (train / test; val is drawn later), a folder manifest's own column or ``""``."""
    rows, unknown_sex = [], []
    if info["corpus"] == "folder":
        rows = [
            {**r, "split": r["split"] or "", "seconds": r["duration_s"] or 0.0}
            for r in folder.read_folder_manifest(info["manifest"])
        ]
    else:
        for src in info["sources"]:
            scan = libritts.scan_source(src["path"])
            unknown_sex += [u["id"] for u in scan.unknown_sex]
            rows += [
                {
                    "id": u["id"],
                    "speaker": u["speaker"],
                    "sex": u["sex"],
                    "split": "train" if src["role"] == "train" else "test",
                    "source": src["path"],
                    "member": u["member"],
                    "seconds": u["duration_s"] or 0.0,
                }
                for u in scan.utterances
            ]
    return rows, unknown_sex
