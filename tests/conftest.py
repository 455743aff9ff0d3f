"""Shared fixtures: a copy of this repository in a temporary git repo, for end-to-end runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# stage scripts run in-process (runpy) import their bootstrap as `python stages/x.py` would find it
sys.path.insert(0, str(ROOT / "stages"))

# the real speech at hand (DESIGN: read in place, never copied in) lies beside the repository:
# ../shared/data from its root. Wherever it is absent, the tests that need it skip and say so.
SHARED_DATA = ROOT.parent / "shared" / "data"


def needs_shared(path: Path) -> pytest.MarkDecorator:
    """Skip the test, naming the path, where ``path`` (under :data:`SHARED_DATA`) is absent."""
    return pytest.mark.skipif(
        not path.exists(), reason=f"real speech not found at {path} (../shared/data beside the repository)"
    )


def run(cmd, cwd, env=None, check=True):
    """Run ``cmd`` in ``cwd`` with this interpreter's bin first on PATH; return the process."""
    env = dict(env or os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def copy_repo(dest: Path) -> Path:
    """Copy the repository's tracked and new (not ignored) files into ``dest`` and commit them
    in a fresh git repo (without the committed dvc.lock, metrics, plots or dvclive logs: a clean first run)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if not src.is_file() or f == "dvc.lock" or f.startswith(("metrics/", "plots/", "dvclive/")):
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.invalid"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "copy"],
    ):
        run(cmd, dest)
    return dest


def set_params(repo: Path, updates: dict) -> None:
    """Overwrite dotted keys of repo/params.yaml."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in updates.items():
        node = params
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


TINY = {
    "data.synthetic.train_speakers": 6,
    "data.synthetic.test_speakers": 4,
    "data.synthetic.utterances_per_speaker": 3,
    "epochs": 3,
    "tune.num_samples": 2,
    "tune.space.epochs": {"type": "choice", "values": [2]},
    "tune.cpus_per_trial": 1.0,
    "evaluate.bootstrap": 50,
}


@pytest.fixture
def tiny_repo(tmp_path):
    """A copy of the repository configured for a tiny, fast synthetic run."""
    repo = copy_repo(tmp_path / "repo")
    # downloads go to a cache of the test's own, not the user's ~/.cache
    set_params(repo, {**TINY, "data.libritts.cache_dir": str(tmp_path / "libritts-cache")})
    run(["git", "commit", "-qam", "tiny params"], repo)
    return repo


@pytest.fixture(scope="session")
def utterance():
    """(float32 samples, rate Hz, sex) of one generated eSpeak NG utterance (~2-4 s, default knobs):
    real-looking speech for tests that must not depend on any corpus on disk."""
    import numpy as np

    from voicegender.corpora.synth import corpus_speakers, render_utterance

    [speaker] = corpus_speakers(train_speakers=1, test_speakers=0, seed=7)
    _, pcm = render_utterance(speaker, 0, seed=7)
    return pcm.astype(np.float32) / 32768.0, 24000, speaker.sex


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (as the CLI and featurize set it: silero-vad's window-by-window
    ops run several times faster on one), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory):
    """One home directory for every in-process Ray of the test session: Ray >= 2.59 keeps a local
    cluster's auth token in ~/.ray, and a driver caches the first token it loads for its life, so
    a later local Ray under another HOME would never start (its GCS refuses the cached token)."""
    return tmp_path_factory.mktemp("ray-home")
