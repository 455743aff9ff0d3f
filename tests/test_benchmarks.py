"""The benchmarks that need no corpus on disk still run against the library as it is (a smoke
test: tiny sizes; their figures are not checked here, only that they run to the end)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["tune.py", "--trials", "2", "--train", "600", "--val", "200"],
        ["train_step.py", "--steps", "20", "--repeat", "1", "--batch-sizes", "4"],
        ["featurize_memory.py", "--utterances", "8", "--seconds", "1"],
    ],
)
def test_benchmark_runs(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / args[0]), *args[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "ratio" in proc.stdout or "speed-up" in proc.stdout


@pytest.mark.slow
def test_featurize_cluster_benchmark_runs(tmp_path):
    """The pool vs a two-node loopback cluster on a few generated wavs: runs to the end, same features."""
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        sf.write(audio / f"a{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/featurize_cluster.py"), "--dir", str(audio)]
        + ["--only", "pool,ray-2-nodes", "--repeat", "1", "--passes", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "ratio" in proc.stdout and "features identical across configurations: True" in proc.stdout


def _pipeline_benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pipeline_benchmark", ROOT / "benchmarks" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cap, augment_cap", [(None, None), (None, 30), (30, 30), (20, 30), (30, 10), (500, None)])
def test_pipeline_projection_counts_the_per_speaker_caps_at_librittss_135(cap, augment_cap):
    """benchmarks/pipeline.py projects train-clean-100 at min(cap, ~135) recordings a speaker (its
    archive here holds ~2 a speaker, so the cap cannot show in what it measures)."""
    import yaml

    from voicegender.params import validate_params

    bench = _pipeline_benchmark()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["max_per_speaker"] = cap
    raw["features"]["augment"]["max_per_speaker"] = augment_cap
    params = validate_params(raw)
    per_speaker = 33_236 / 247
    used = per_speaker if cap is None else min(cap, per_speaker)
    hours = bench.libritts_featurized_hours(params)
    assert hours["train"] == pytest.approx(53.78 * used / per_speaker)
    assert hours["test"] == pytest.approx(8.56)
    copied = min(used, augment_cap or used)
    rows = bench.libritts_rows(params)
    assert rows["val"] == round(247 * 0.2 * used) and rows["test"] == 4_837
    assert rows["train"] == round(247 * 0.8 * (used + copied))
