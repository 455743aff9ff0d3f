"""The tune stage: the same inputs give the same files with trials running concurrently, and
Ctrl-C in the middle of a search fails, records nothing and leaves no Ray processes or folders."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from voicegender.features.store import save_features

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = [
    "models/tuned.yaml",
    "metrics/tune.json",
    "metrics/tune_details.json",
    "plots/tune/trials.csv",
    "plots/tune/curves.png",
]


def workdir(path: Path, num_samples: int, epochs: int) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(name="mlp", hidden=8)
    params["tune"].update(
        num_samples=num_samples,
        cpus_per_trial=0.5,  # 4 trials at once on 2 cores
        space={
            "lr": {"type": "loguniform", "low": 1.0e-4, "high": 3.0e-1},
            "batch_size": {"type": "choice", "values": [8, 32]},
            "epochs": {"type": "choice", "values": [epochs]},
        },
    )
    path.mkdir(parents=True)
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    for split, n in (("train", 240), ("val", 80)):
        y = (rng.random(n) < 0.5).astype(np.float32)
        X = rng.normal(size=(n, 16)).astype(np.float32) + 0.4 * y[:, None]
        save_features(
            path / "data/features", split, X, y, [f"{split}{i}" for i in range(n)], [f"s{i % 20}" for i in range(n)]
        )
    return path


def start(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "stages/tune.py")],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Ctrl-C as in a terminal: a shell that starts a job in the background may have it (and
        # so this child) ignore SIGINT, and the stage rightly keeps ignoring it then
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow  # Ray searches: ~40 s
def test_same_inputs_same_files_with_concurrent_trials(tmp_path):
    runs = []
    for k in range(2):
        d = workdir(tmp_path / f"run{k}", num_samples=12, epochs=8)
        proc = start(d)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        runs.append({f: (d / f).read_bytes() for f in OUTPUTS})
    for f in OUTPUTS:
        assert runs[0][f] == runs[1][f], f"{f} differs between two runs of the same search"
    trials = runs[0]["plots/tune/trials.csv"].decode().splitlines()[1:]
    epochs = [int(line.split(",")[4]) for line in trials]
    assert len(epochs) == 12 and min(epochs) < 8 and max(epochs) == 8  # early stopping did stop some
    assert b"wall" not in runs[0]["metrics/tune.json"]


def ray_processes(session: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if session in cmd:
            found.append(f"{pid}: {cmd[:200]}")
    return found


@pytest.mark.slow
def test_ctrl_c_mid_search_fails_and_leaves_nothing(tmp_path):
    d = workdir(tmp_path / "run", num_samples=40, epochs=8)
    proc = start(d)
    lines, session = [], None
    for line in proc.stdout:  # wait until the search is under way: a trial has finished
        lines.append(line)
        m = re.search(r"scratch in (\S+)", line)
        session = session or (m and m.group(1))
        if re.search(r"\b1/40 done", line):
            break
    else:
        pytest.fail("the search ended before it could be interrupted:\n" + "".join(lines))
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode != 0, out
    assert "interrupted" in out and "Traceback" not in out, out
    for f in OUTPUTS:
        assert not (d / f).exists(), f"{f} written by an interrupted search"
    assert not (d / "data/ray").exists()
    assert session and not Path(session).exists(), f"Ray's scratch folder {session} left behind"
    deadline = time.time() + 20
    while ray_processes(session) and time.time() < deadline:
        time.sleep(0.5)
    assert not ray_processes(session), ray_processes(session)
