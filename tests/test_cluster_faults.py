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
from voicegender import extraction as X
from voicegender.params import RaySettings

pytestmark = pytest.mark.slow  # starts a Ray instance per test

LOCAL = RaySettings(address="local")


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
