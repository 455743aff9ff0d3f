"""download stage: put the corpus's audio where the pipeline can read it.

synthetic: generate the eSpeak NG corpus as LibriTTS-layout archives in data/raw/.
libritts:  download and verify {base_url}/{subset}.tar.gz into data/raw/, or point at a copy
           the user already has (data.libritts.local_dir): nothing is downloaded or copied.
folder:    check the user's manifest of recordings and fingerprint them.
Always writes data/raw/corpus.json: which archive or folder holds the train and test audio.
"""

import json
import shutil
from pathlib import Path

from voicegender import corpus, download, synth
from voicegender.params import load_params

RAW = Path("data/raw")


def main() -> None:
    params = load_params()
    data = params["data"]
    if RAW.exists():
        shutil.rmtree(RAW)
    RAW.mkdir(parents=True)
    kind = params["corpus"]
    if kind == "synthetic":
        cfg = dict(data["synthetic"])
        archives = synth.generate_corpus(RAW, seed=params["seed"], **cfg)
        names = list(archives)
        sources = [{"role": "train", "subset": names[0], "path": str(archives[names[0]])},
                   {"role": "test", "subset": names[1], "path": str(archives[names[1]])}]
        info = {"corpus": kind, "sources": sources}
    elif kind == "libritts":
        cfg = data["libritts"]
        subsets = [cfg["train_subset"], cfg["test_subset"]]
        if cfg["local_dir"]:
            paths = download.locate_libritts(cfg["local_dir"], subsets, checksums=cfg["checksums"])
        else:
            paths = download.fetch_libritts(cfg["base_url"], subsets, RAW, checksums=cfg["checksums"])
        sources = [{"role": role, "subset": s, "path": str(paths[s])}
                   for role, s in zip(("train", "test"), subsets)]
        info = {"corpus": kind, "sources": sources}
    else:
        manifest = Path(data["folder"]["manifest"]).resolve()
        rows = corpus.read_folder_manifest(manifest)
        check_watched(data["folder"]["recordings"], [manifest] + [Path(r["path"]) for r in rows])
        info = {"corpus": kind, "manifest": str(manifest),
                "fingerprint": corpus.fingerprint_files([manifest] + [Path(r["path"]) for r in rows]),
                "sources": [{"role": "folder", "path": s} for s in sorted({r["source"] for r in rows})]}
    (RAW / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"download: {kind} corpus ready: {info['sources']}", flush=True)


def check_watched(recordings: str, files: list[Path]) -> None:
    """DVC sees changes only inside data.folder.recordings: every file must lie there."""
    root = Path(recordings).resolve()
    outside = [str(f) for f in files if not Path(f).resolve().is_relative_to(root)]
    if outside:
        raise SystemExit(
            f"data.folder.recordings is {recordings!r}, but {len(outside)} file(s) lie outside it "
            f"(e.g. {outside[0]}): set it to the folder holding your manifest and recordings, "
            "so that DVC reruns the pipeline when they change")


if __name__ == "__main__":
    main()
