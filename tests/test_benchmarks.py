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
