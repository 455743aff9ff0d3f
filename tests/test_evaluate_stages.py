"""The baselines and evaluate stages and the README results script, end to end on small arrays."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from voicegender.features.store import save_features
from voicegender.models.networks import build_model
from voicegender.params import ModelSettings

ROOT = Path(__file__).resolve().parents[1]


def _write_split(d, split, rng, n_speakers, per_speaker=5, female_share=0.5):
    n_f = round(female_share * n_speakers)
    sex = np.array([1] * n_f + [0] * (n_speakers - n_f), dtype=np.float32)
    y = np.repeat(sex, per_speaker)
    X = rng.normal(size=(len(y), 16)).astype(np.float32)
    X[:, :3] += 1.5 * (2 * y[:, None] - 1)
    speakers = np.repeat([f"{split}{k}" for k in range(n_speakers)], per_speaker)
    save_features(d, split, X, y, [f"{s}_{i}" for i, s in enumerate(speakers)], speakers.tolist())


@pytest.fixture
def workdir(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name"] = "mlp"  # as the saved card says
    params["evaluate"]["bootstrap"] = 100
    params["baselines"]["random_forest"]["n_estimators"] = 20
    params["baselines"]["hist_gradient_boosting"]["max_iter"] = 20
    params["baselines"]["mlp"]["max_iter"] = 50
    params["baselines"]["n_jobs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    _write_split(tmp_path / "data/features", "train", rng, 20)
    _write_split(tmp_path / "data/features", "val", rng, 6)
    _write_split(tmp_path / "data/features", "test", rng, 10, female_share=0.6)
    shape = (16,)
    model = build_model(ModelSettings(name="mlp", hidden=8), shape, np.zeros(shape), np.ones(shape), seed=0)
    with torch.no_grad():  # a fixed "trained" model: logit = sum of the first three features
        model.model.head[1].weight.zero_()
        model.model.head[1].weight[:, :3] = 1.0
        model.model.head[1].bias.fill_(0.1)
        model.model.head[4].weight.fill_(1.0)
        model.model.head[4].bias.fill_(-0.1)
    (tmp_path / "models").mkdir()
    torch.save(model.state_dict(), tmp_path / "models/model.pt")
    (tmp_path / "models/model.json").write_text(
        json.dumps(
            {
                "model": {"name": "mlp", "channels": [8], "hidden": 8, "dropout": 0.0},
                "features": params["features"],
                "input_shape": [16],
                "standardized": True,
                "threshold": 0.5,
                "positive_class": "female",
            }
        )
    )
    return tmp_path


def _run(stage, cwd, monkeypatch):
    # in-process (as `python stages/<stage>.py` from the repo root): torch and sklearn are imported once
    monkeypatch.chdir(cwd)
    runpy.run_path(str(ROOT / "stages" / f"{stage}.py"), run_name="__main__")


def test_stages_write_their_metrics_and_plots_and_the_readme_table(workdir, monkeypatch):
    _run("evaluate", workdir, monkeypatch)
    _run("baselines", workdir, monkeypatch)
    ev = json.loads((workdir / "metrics/evaluate.json").read_text())
    contract = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "speaker_accuracy", "n_utterances", "n_speakers")
    assert set(ev) == {*contract, "val"} and set(ev["val"]) == {"balanced_accuracy"}  # what one compares, only
    details = json.loads((workdir / "metrics/evaluate_details.json").read_text())
    assert not set(details) & set(contract) and {"ci95", "per_class", "at_threshold_0.5"} <= set(details)
    assert ev["n_speakers"] == 10 and details["majority_class_accuracy"] == pytest.approx(0.6)
    assert details["ci95"]["accuracy"][0] <= ev["accuracy"] <= details["ci95"]["accuracy"][1]
    assert ev["accuracy"] > 0.8 and details["val"]["n_speakers"] == 6
    for name in ("speakers.csv", "summary.png"):
        assert (workdir / "plots/evaluate" / name).stat().st_size > 0
    sklearn_plots = workdir / "dvclive/evaluate/plots/sklearn"
    assert sorted(p.name for p in sklearn_plots.iterdir()) == [
        "calibration.json",
        "confusion_matrix.json",
        "precision_recall.json",
        "roc.json",
    ]
    confusion = json.loads((sklearn_plots / "confusion_matrix.json").read_text())
    assert len(confusion) == 50 and {r["actual"] for r in confusion} == {"female", "male"}  # one row per utterance
    roc = json.loads((sklearn_plots / "roc.json").read_text())["roc"]
    assert roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1
    assert not (workdir / "dvclive/evaluate/metrics.json").exists()  # nothing undeclared left behind
    base = json.loads((workdir / "metrics/baselines.json").read_text())
    assert set(base) == {"logistic", "mlp", "random_forest", "hist_gradient_boosting"}
    assert all(
        r == {s: {"balanced_accuracy": r[s]["balanced_accuracy"]} for s in ("val", "test")} for r in base.values()
    )
    base_details = json.loads((workdir / "metrics/baselines_details.json").read_text())
    assert all(set(r) == {"threshold", "val", "test"} for r in base_details.values())
    header = (workdir / "plots/baselines/comparison.csv").read_text().splitlines()[0]
    assert header.startswith("model,val_accuracy,") and "test_balanced_accuracy" in header

    readme = workdir / "README.md"
    readme.write_text("# title\n\nintro\n<!-- results:start -->\nSTALE TABLE\n<!-- results:end -->\n\ntail\n")
    results_table = _results_table()
    script = ["--root", str(workdir)]
    assert results_table.main(script) == 0
    text = readme.read_text()
    assert "STALE TABLE" not in text and text.startswith("# title\n\nintro\n<!-- results:start -->\n")
    assert text.endswith("<!-- results:end -->\n\ntail\n")
    assert "| hist_gradient_boosting (baseline) |" in text and "**mlp** (trained" in text
    assert results_table.main(script + ["--check"]) == 0  # idempotent
    readme.write_text(text.replace("(baseline)", "(edited)", 1))
    assert results_table.main(script + ["--check"]) == 1


def _results_table():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import results_table
    finally:
        sys.path.pop(0)
    return results_table


def test_results_script_refuses_a_readme_without_markers(tmp_path):
    results_table = _results_table()
    with pytest.raises(ValueError, match="markers"):
        results_table.replace_between("no markers here", "x")
    assert "Data" not in results_table.render(tmp_path / "metrics")  # no metrics yet: just the note
