"""End to end: the real pipeline, by `dvc repro` and `dvc exp run`, in a temporary git repo."""

import json
import sys

import pytest
import torch
import yaml

from conftest import run, set_params

pytestmark = pytest.mark.slow  # each test runs `dvc repro` in a fresh copy of the repository


def test_repro_then_experiment(tiny_repo):
    repo = tiny_repo
    run(["dvc", "repro"], repo)
    for name in ("data", "featurize", "tune", "train", "evaluate", "robustness"):
        assert (repo / "metrics" / f"{name}.json").is_file(), name
    data = json.loads((repo / "metrics/data.json").read_text())
    assert set(data) == {"train", "val", "test"} and all(set(data[s]) == {"F", "M"} for s in data)  # the contract
    total = json.loads((repo / "metrics/data_details.json").read_text())["total"]
    assert total["train"]["speakers"] + total["val"]["speakers"] == 6
    assert total["test"]["speakers"] == 4
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "f1", "speaker_accuracy", "n_utterances", "n_speakers"):
        assert key in evaluate
    assert evaluate["n_speakers"] == 4 and evaluate["n_utterances"] == 12
    tune = json.loads((repo / "metrics/tune.json").read_text())
    assert tune["trials"] == 2 and "config" in tune["best"]
    trials = (repo / "plots/tune/trials.csv").read_text().splitlines()
    assert len(trials) == 3 and "val_loss" in trials[0].split(",")
    for part in ("train", "val"):  # dvclive's per-epoch files: one row per epoch run, no timestamps
        rows = (repo / f"dvclive/train/plots/metrics/{part}/loss.tsv").read_text().splitlines()
        assert rows[0] == "step\tloss" and len(rows) == 1 + train_epochs_run(repo)
    live = json.loads((repo / "dvclive/train/metrics.json").read_text())
    assert live == {"val": {"loss": live["val"]["loss"]}, "step": train_epochs_run(repo)}  # `dvc exp show` lists it
    assert (repo / "dvclive/evaluate/plots/sklearn/confusion_matrix.json").is_file()
    robustness = json.loads((repo / "metrics/robustness.json").read_text())
    assert set(robustness) == set(yaml.safe_load((repo / "params.yaml").read_text())["robustness"]["conditions"])
    details = json.loads((repo / "metrics/robustness_details.json").read_text())
    for name, scores in robustness.items():  # the contract: each condition's name as the key
        assert set(scores) == {"accuracy", "balanced_accuracy", "no_speech"}, name
        assert details[name] == {"recordings": 12} and 0 <= scores["no_speech"] <= 12
    assert robustness["clean"]["accuracy"] == evaluate["accuracy"]  # clean: the test split as evaluate scores it
    assert (repo / "plots/robustness/conditions.csv").read_text().splitlines()[0].startswith("condition,accuracy")
    state = torch.load(repo / "models/model.pt", weights_only=True)
    assert isinstance(state, dict) and state
    featurize = json.loads((repo / "metrics/featurize.json").read_text())
    assert featurize["skipped"] == 0  # generated speech passes the speech check
    assert json.loads((repo / "metrics/featurize_details.json").read_text())["min_speech_s"] > 0
    card = json.loads((repo / "models/model.json").read_text())
    assert card["data"]["corpus"] == "synthetic" and card["data"]["generated"] is True
    assert card["data"]["splits"]["test"] == {
        "utterances": 12,
        "speakers": 4,
        "female_utterances": 6,
        "male_utterances": 6,
    }
    assert len(card["data"]["labels_sha256"]) == 64 and card["predict"]["min_speech_s"] > 0
    import numpy as np
    import soundfile as sf

    sf.write(repo / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    predicted = run([sys.executable, "-m", "voicegender.cli", "predict", "silence.wav"], repo, check=False)
    assert predicted.returncode == 3 and predicted.stdout == "silence.wav\tno speech\n"
    [warning] = predicted.stderr.splitlines()  # one line: the model never heard a real voice
    assert "generated" in warning and "corpus=libritts" in warning
    (repo / "silence.wav").unlink()

    again = run(["dvc", "repro"], repo)
    assert "Running stage" not in again.stdout

    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline run"], repo)
    # bit-reproducible: every stage run again (the search's trials concurrently) gives the same
    # bytes, so dvc.lock, metrics/ and plots/ are unchanged
    forced = run(["dvc", "repro", "-f"], repo)
    assert forced.stdout.count("Running stage") == 8
    status = run(["git", "status", "--porcelain"], repo).stdout
    assert status == "", f"a second `dvc repro -f` changed tracked files:\n{status}"

    # an edit reruns only the stages that run the edited code (dvc.yaml's deps follow the imports)
    for module, stale in (
        ("src/voicegender/audio/speech.py", {"featurize", "robustness"}),
        ("src/voicegender/evaluation/plots.py", {"label", "tune", "evaluate"}),
    ):
        with (repo / module).open("a") as f:
            f.write("\n# an edit\n")
        changed = json.loads(run(["dvc", "status", "--json"], repo).stdout)
        assert set(changed) == stale, (module, changed)
        run(["git", "checkout", "HEAD", "--", module], repo)

    # each seed reruns what it varies, and only that (a dry run lists the stages whose own params
    # changed; with data.seed, the others follow as the corpus and split change)
    for key, expected in (
        ("train.seed", {"tune", "train", "evaluate", "baselines"}),
        ("data.seed", {"download", "label"}),
        ("robustness.seed", {"robustness"}),
    ):
        set_params(repo, {key: 7})
        dry = run(["dvc", "repro", "--dry"], repo)
        assert stages_run(dry.stdout) == expected, (key, dry.stdout)
        run(["git", "checkout", "HEAD", "--", "params.yaml"], repo)
    exp = run(["dvc", "exp", "run", "-S", "lr=0.003"], repo)
    assert stages_run(exp.stdout) == {"train", "evaluate", "robustness"}, exp.stdout
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["lr"] == 0.003
    diff = run(["dvc", "metrics", "diff", "--json"], repo)
    assert "metrics/train.json" in json.loads(diff.stdout)
    shown = run(["dvc", "plots", "show", "--json"], repo)
    assert "loss" in shown.stdout and "accuracy" in shown.stdout


def train_epochs_run(repo):
    return json.loads((repo / "metrics/train_details.json").read_text())["epochs_run"]


def stages_run(stdout: str) -> set[str]:
    return {line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage")}


def test_bad_param_fails_before_any_work(tiny_repo):
    from conftest import set_params

    set_params(tiny_repo, {"batch_size": 0})
    proc = run(["dvc", "repro"], tiny_repo, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "download: error: invalid params:\n  batch_size: must be `tuned` or a positive integer, got 0" in out
    assert "Traceback" not in out  # an expected failure: one message, no traceback
    assert not (tiny_repo / "data/raw").exists()
