"""Featurize as Ray tasks (a local Ray: the cluster code path): a worker killed mid-task is
retried with the same bytes, or fails the run within seconds naming the likely cause."""

import os
import signal
import threading
import time

import psutil
import pytest

from feature_settings import fs
from signals import tone, wav_bytes
from voicegender.features import extraction as X
from voicegender.params import RaySettings

pytestmark = pytest.mark.slow  # starts a Ray instance per test

LOCAL = RaySettings(address="local")


@pytest.fixture(autouse=True)
def _ray_home(ray_home, monkeypatch):
    monkeypatch.setenv("HOME", str(ray_home))  # the session's one home for in-process Rays (conftest)


def _items(n=64):
    # long enough that a chunk's task runs for a while (tens of ms): the killer can catch one
    return [(f"u{i}", wav_bytes(tone(100 + 3 * i, 8.0, noise=0.01, seed=i))) for i in range(n)]


def _kill_a_running_task(killed: list, stop: threading.Event) -> None:
    """SIGKILL one Ray worker process while it runs a chunk (its title is ray::_chunk_task)."""
    me = psutil.Process()
    while not stop.is_set():
        for p in me.children(recursive=True):
            try:
                if p.cmdline()[:1] == ["ray::_chunk_task"]:
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)
                    return
            except (psutil.Error, IndexError):
                continue
        time.sleep(0.005)


def _run_with_a_kill(cfg, items):
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_a_running_task, args=(killed, stop), daemon=True)
    killer.start()
    try:
        return list(X.extract_many(iter(items), cfg, n_jobs=2, chunksize=2, cluster=LOCAL)), killed
    finally:
        stop.set()
        killer.join()
        assert killed, "no running chunk task was found to kill"


def test_a_killed_ray_worker_is_retried_with_the_same_bytes():
    cfg = fs({"kind": "mean_mel", "sample_rate": "native", "max_retries": 1})
    items = _items()
    local = list(X.extract_many(iter(items), cfg, n_jobs=1))
    on_ray, _ = _run_with_a_kill(cfg, items)
    assert [i for i, _, _ in on_ray] == [i for i, _, _ in local]
    assert all(a.tobytes() == b.tobytes() for (_, a, _), (_, b, _) in zip(local, on_ray))


def test_a_killed_ray_worker_without_retries_fails_naming_the_likely_cause():
    cfg = fs({"kind": "mean_mel", "sample_rate": "native", "max_retries": 0})
    with pytest.raises(X.WorkerLost, match=r"lost 1 time\(s\) \(WorkerCrashedError.*memory"):
        _run_with_a_kill(cfg, _items())


def test_featurize_stage_with_a_killed_worker_fails_in_seconds_and_records_nothing(tmp_path):
    """The issue's case: SIGKILL to one worker of the featurize stage's pool (what the OOM killer
    does). With features.max_retries 0 the stage fails with one message (the signal, the likely
    cause) and leaves no features; it used to hang forever."""
    import subprocess
    import sys

    from conftest import TINY, copy_repo, set_params

    repo = copy_repo(tmp_path / "repo")
    set_params(
        repo,
        {
            **TINY,
            "data.synthetic.utterances_per_speaker": 8,  # 80 recordings: 3 ge2e chunks, 2 of them in workers
            "data.libritts.cache_dir": str(tmp_path / "cache"),
            "features.n_jobs": 2,
            "features.max_retries": 0,
        },
    )
    for name in ("download", "label"):
        subprocess.run([sys.executable, f"stages/{name}.py"], cwd=repo, check=True, capture_output=True)
    stage = subprocess.Popen(
        [sys.executable, "stages/featurize.py"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    me = psutil.Process(stage.pid)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and stage.poll() is None and time.monotonic() < deadline:
        with_parent_cmdline = []
        for p in me.children():
            try:
                if p.cmdline() == me.cmdline():  # a forked worker (not the resource tracker)
                    with_parent_cmdline.append(p)
            except psutil.Error:
                continue
        if with_parent_cmdline:
            killed = with_parent_cmdline[0].pid
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    assert killed is not None, "no worker process was seen"
    try:
        out, err = stage.communicate(timeout=120)  # used to hang forever here
    except subprocess.TimeoutExpired:
        stage.kill()
        pytest.fail("featurize hung after a worker was killed")
    assert stage.returncode == 1, err[-2000:]
    assert (
        f"featurize: error: a feature worker process was lost 1 time(s), the last: pid {killed} killed by signal SIGKILL"
        in err
    )
    assert "out-of-memory" in err and "Traceback" not in err
    assert not (repo / "data/features").exists() and not (repo / "metrics/featurize.json").exists()


CTRL_C = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever launched us
sys.path.insert(0, sys.argv[1])
from feature_settings import fs
from signals import tone, wav_bytes
from voicegender.features import extraction as X
from voicegender.params import RaySettings
items = ((f"u{i}", wav_bytes(tone(100 + i % 50, 3.0, noise=0.01, seed=i))) for i in range(100000))
cfg = fs({"kind": "mean_mel", "sample_rate": "native"})
try:
    for n, _ in enumerate(X.extract_many(items, cfg, n_jobs=2, cluster=RaySettings(address="local"))):
        if n == 20:
            print("running", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_the_ray_tasks():
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "running"
        ray_processes = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted" in out
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(p.is_running() for p in ray_processes):
        time.sleep(0.5)
    assert not [p for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
