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
