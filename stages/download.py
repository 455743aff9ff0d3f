"""download stage: put the corpus's audio where the pipeline can read it.

synthetic: generate the eSpeak NG corpus as LibriTTS-layout archives in data/raw/.
libritts:  download and verify {base_url}/{subset}.tar.gz into the machine's LibriTTS cache
           (data.libritts.cache_dir, default ~/.cache/voicegender/libritts: outside the
           repository, so a rerun, an experiment or another clone finds the archives there,
           verifies them and fetches nothing), or point at a copy the user already has
           (data.libritts.local_dir). data/raw/ then only names the archives (corpus.json).
folder:    check the user's manifest of recordings and fingerprint them.
Always writes data/raw/corpus.json: which archive or folder holds the train and test audio.
"""

import sys
from pathlib import Path

# this repository's library first, whatever is installed where: DVC runs queued and temporary
# experiments in copies of the repository, each with its own src/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json
import shutil

from voicegender import corpus, download, synth
from voicegender.params import load_params
from voicegender.errors import run_command

RAW = Path("data/raw")


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("data/raw",)


def main() -> None:
    params = load_params()
    data = params["data"]
    if RAW.exists():
        shutil.rmtree(RAW)
    RAW.mkdir(parents=True)
    kind = params["corpus"]
    if kind == "synthetic":
        cfg = dict(data["synthetic"])
        archives = synth.generate_corpus(RAW, seed=data["seed"], **cfg)
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
            cache = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else download.default_cache_dir()
            print(f"download: LibriTTS archives in {cache.resolve()} (data.libritts.cache_dir)", flush=True)
            paths = download.fetch_libritts(cfg["base_url"], subsets, cache.resolve(), checksums=cfg["checksums"])
        sources = [{"role": role, "subset": s, "path": str(Path(paths[s]).resolve())}
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
    run_command(main, name="download", outputs=OUTPUTS)
