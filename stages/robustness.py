"""robustness stage: the trained model on the test split under degraded conditions.

Reads models/, data/labels.csv and the test recordings it points at; writes
metrics/robustness.json (per condition of params.yaml's `robustness.conditions`: accuracy,
balanced accuracy, recordings answered `no speech`), metrics/robustness_details.json (the
recordings scored per condition) and plots/robustness/conditions.csv. Each
degraded recording is featurized and speech-checked with the settings the model was trained
with (its card), as `voicegender predict` would answer it.
"""

import bootstrap  # noqa: F401 -- this repository's src/ first on sys.path

import time


from voicegender.runtime import use_one_thread
from voicegender.audio.decode import decode_audio
from voicegender.corpora.labels import read_labels
from voicegender.errors import run_command
from voicegender.corpora.libritts import iter_audio
from voicegender.models.networks import load_trained
from voicegender.params import FeatureSettings, load_params, validate_predict
from voicegender.evaluation.reports import write_json, write_table
from voicegender.evaluation.robustness import choose_recordings, score_conditions
from voicegender.audio.speech import check_settings
from voicegender.models.training import predict_proba

# what this stage writes (dvc.yaml's metrics, plots): removed if it fails or is interrupted
OUTPUTS = ("metrics/robustness.json", "metrics/robustness_details.json", "plots/robustness")


def main() -> None:
    params = load_params()
    settings = params.robustness
    use_one_thread()
    model, card = load_trained("models")
    features = FeatureSettings.model_validate(card["features"])
    predict = validate_predict(card["predict"])
    speech = check_settings(predict) if predict.min_speech_s > 0 else None
    rows = choose_recordings(
        [r for r in read_labels("data/labels.csv") if r["split"] == "test"], settings.max_per_speaker, settings.seed
    )
    recordings, unreadable = [], []
    for source in sorted({r["source"] for r in rows}):
        members = {r["member"]: r for r in rows if r["source"] == source}
        for member, data in iter_audio(source, members):
            r = members[member]
            try:
                y, sr = decode_audio(data, name=r["id"])
            except Exception as exc:  # noqa: BLE001 -- reported and left out, as featurize does
                unreadable.append(r["id"])
                print(f"skipped {r['id']}: {exc}", flush=True)
                continue
            recordings.append((r["id"], r["speaker"], y, sr))
    recordings.sort(key=lambda rec: rec[0])
    females = {r["id"]: r["sex"] == "F" for r in rows}
    started = time.perf_counter()
    scores = score_conditions(
        recordings,
        females,
        settings,
        features,
        lambda X: predict_proba(model, X),
        card["threshold"],
        speech=speech,
        log=lambda m: print(m, flush=True),
    )
    wall = time.perf_counter() - started
    # the contract's keys, what one compares; the count scored is the same for every condition
    compared = ("accuracy", "balanced_accuracy", "no_speech")
    write_json("metrics/robustness.json", {name: {k: s[k] for k in compared} for name, s in scores.items()})
    write_json(
        "metrics/robustness_details.json",
        {name: {k: v for k, v in s.items() if k not in compared} for name, s in scores.items()},
    )
    write_table(
        "plots/robustness/conditions.csv",
        [{"condition": name, **{k: s[k] for k in compared}} for name, s in scores.items()],
    )
    seconds = sum(y.size / sr for _, _, y, sr in recordings) * len(settings.conditions)
    print(
        f"robustness: {len(recordings)} recordings x {len(settings.conditions)} conditions "
        f"({seconds / 3600:.2f} h of audio) in {wall:.0f} s; "
        + ", ".join(f"{name} {s['accuracy']:.3f}" for name, s in scores.items()),
        flush=True,
    )


if __name__ == "__main__":
    run_command(main, name="robustness", outputs=OUTPUTS)
