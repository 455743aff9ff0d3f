"""featurize stage: one feature array per utterance, read straight from the archives.

Reads data/labels.csv and the audio it points at; writes data/features/ (train / val / test
arrays, labels, ids, speakers), metrics/featurize.json (utterances, augmented copies, recordings
skipped) and metrics/featurize_details.json (feature kind and shape, each skipped recording with
the reason: unreadable, or less speech than predict.min_speech_s).
"""

from pathlib import Path

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

import shutil
import time


from voicegender.runtime import use_one_thread
from voicegender.features.featurize import build_features, empty_split_message
from voicegender.corpora.labels import read_labels
from voicegender.features.kinds import feature_shape
from voicegender.params import RaySettings, load_params
from voicegender.evaluation.reports import write_json
from voicegender.audio.speech import check_settings
from voicegender.errors import CorpusError, run_command

OUT = Path("data/features")


# what this stage writes (dvc.yaml's outs, metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("data/features", "metrics/featurize.json", "metrics/featurize_details.json")


def main() -> None:
    params = load_params()
    use_one_thread()  # the speech check's silero-vad here; the workers set theirs
    config = params.features
    speech = check_settings(params.predict)
    check = speech if speech["min_speech_s"] > 0 else None  # 0: no speech check (the VAD is not run)
    rows = read_labels("data/labels.csv")
    if OUT.exists():
        shutil.rmtree(OUT)
    started = time.perf_counter()
    # on a Ray cluster when ray.address (or RAY_ADDRESS) names one: the same bytes as locally.
    # ray.storage is tune's alone: changing it does not rerun featurize
    cluster = RaySettings(address=params.ray.address, connect_timeout_s=params.ray.connect_timeout_s)
    report = build_features(rows, config, OUT, log=lambda m: print(m, flush=True), speech=check, cluster=cluster)
    wall = time.perf_counter() - started
    print(
        f"featurize: {report['utterances']} utterances, {report['seconds'] / 3600:.2f} h of audio in "
        f"{wall:.1f} s ({report['seconds'] / max(wall, 1e-9):.0f}x real time); "
        f"{len(report['skipped'])} skipped",
        flush=True,
    )
    empty = empty_split_message(report)
    if empty:  # no stage after this one should meet empty arrays
        raise CorpusError(empty)
    # no timings here: the same inputs must give the same bytes (dvc.lock unchanged on a rerun)
    counts = {k: report[k] for k in ("utterances", "augmented")}
    write_json("metrics/featurize.json", {**counts, "skipped": len(report["skipped"])})  # what one compares
    write_json(
        "metrics/featurize_details.json",
        {
            "kind": config.kind,
            "shape": list(feature_shape(config)),
            "min_speech_s": speech["min_speech_s"],
            "skipped_ids": report["skipped"],  # id -> reason
        },
    )


if __name__ == "__main__":
    run_command(main, name="featurize", outputs=OUTPUTS)
