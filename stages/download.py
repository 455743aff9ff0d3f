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

from pathlib import Path

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

import json
import shutil

from voicegender.corpora import switch as corpus
from voicegender.params import load_params
from voicegender.errors import run_command

RAW = Path("data/raw")


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("data/raw",)


def main() -> None:
    params = load_params()
    data = params.data
    if RAW.exists():
        shutil.rmtree(RAW)
    RAW.mkdir(parents=True)
    kind = params.corpus
    info = corpus.prepare(
        kind,
        RAW,
        seed=data.seed,
        synthetic=data.synthetic,
        libritts_cfg=data.libritts,
        manifest=data.folder.manifest,
        recordings=data.folder.recordings,
    )
    (RAW / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"download: {kind} corpus ready: {info['sources']}", flush=True)


if __name__ == "__main__":
    run_command(main, name="download", outputs=OUTPUTS)
