"""voicegender.features.extraction: the parallel pool (order, errors, byte-identical for any n_jobs, laziness)."""

import multiprocessing
import os
import signal
import threading

import numpy as np
import pytest

from feature_settings import fs
from voicegender.features import chunks as C
from voicegender.features import extraction as X
from signals import tone, wav_bytes


def _items():
    good = [(f"u{i}", wav_bytes(tone(100 + 20 * i, 0.5, noise=0.01, seed=i))) for i in range(9)]
    bad = [
        ("empty_wav", wav_bytes(np.zeros(0, np.float32))),
        ("empty_bytes", b""),
        ("not_audio", b"this is a text file, not audio" * 10),
        ("truncated", good[0][1][:30]),
    ]
    return good[:3] + bad[:2] + good[3:6] + bad[2:] + good[6:]


@pytest.mark.parametrize("kind", ["mean_mel", "pitch_mel"])
def test_extract_many_order_errors_and_determinism(kind):
    cfg = fs({"kind": kind})
    items = _items()
    one = list(X.extract_many(iter(items), cfg, n_jobs=1))
    two = list(X.extract_many((it for it in items), cfg, n_jobs=2, chunksize=2, max_pending=2))
    assert [r[0] for r in one] == [r[0] for r in two] == [i for i, _ in items]
    for (i, x1, e1), (_, x2, e2) in zip(one, two):
        if i in ("empty_wav", "empty_bytes", "not_audio", "truncated"):
            assert x1 is None and x2 is None and e1 and e1 == e2
        else:
            assert e1 is None and e2 is None
            assert x1.tobytes() == x2.tobytes()  # byte-identical across processes


def test_extract_many_shared_memory_and_pickled_chunks_agree(monkeypatch):
    """Chunks go to the workers through shared memory, or pickled when bigger than a slot."""
    items = _items() + [("long", wav_bytes(tone(140, 3.0, noise=0.01)))]  # 144 kB: over the slot
    cfg = fs({"kind": "mean_mel", "sample_rate": "native"})
    one = list(X.extract_many(iter(items), cfg, n_jobs=1))
    monkeypatch.setattr(X, "SLOT_BYTES", 100_000)
    two = list(X.extract_many(iter(items), cfg, n_jobs=2, chunksize=2, max_pending=3))
    assert [(i, e) for i, _, e in one] == [(i, e) for i, _, e in two]
    assert all((x1 is None and x2 is None) or x1.tobytes() == x2.tobytes() for (_, x1, _), (_, x2, _) in zip(one, two))


def test_extract_many_is_lazy():
    consumed = []

    def gen():
        for i in range(100):
            consumed.append(i)
            yield f"u{i}", wav_bytes(tone(150, 0.1))

    it = X.extract_many(gen(), fs({"kind": "mean_mel", "sample_rate": "native"}), n_jobs=2, chunksize=2, max_pending=2)
    next(it)
    assert len(consumed) <= 2 * 2 + 2  # bounded window, not the whole generator
    assert len(list(it)) == 99


# -- a lost worker (killed by the OOM killer, crashed) never hangs the pool ----------------------


def _many(n=24):
    return [(f"u{i}", wav_bytes(tone(100 + 7 * i, 0.3, noise=0.01, seed=i))) for i in range(n)]


def _killing_chunks(monkeypatch, flag_dir=None):
    """Make worker processes SIGKILL themselves on a chunk: once in all (the first worker to
    create ``flag_dir``/killed), or on every chunk (``flag_dir`` None)."""
    parent, real = os.getpid(), X.featurize_chunk

    def chunk(*args):
        if os.getpid() != parent:
            if flag_dir is None:
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                os.close(os.open(flag_dir / "killed", os.O_CREAT | os.O_EXCL))
                os.kill(os.getpid(), signal.SIGKILL)
            except FileExistsError:
                pass
        return real(*args)

    monkeypatch.setattr(X, "featurize_chunk", chunk)  # chunks the pool hands over pickled
    monkeypatch.setattr(C, "featurize_chunk", chunk)  # and through shared memory


def _run_guarded(fn, limit_s=120):
    """fn() in a thread; fails the test (instead of hanging it) if fn has not returned within limit_s."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"extract_many hung for {limit_s} s after a worker was lost"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_a_lost_worker_chunk_is_redone_with_the_same_bytes(monkeypatch, tmp_path, capfd):
    cfg = fs({"kind": "mean_mel", "sample_rate": "native"})
    items = _many()
    one = list(X.extract_many(iter(items), cfg, n_jobs=1))
    _killing_chunks(monkeypatch, tmp_path)
    two = _run_guarded(lambda: list(X.extract_many(iter(items), cfg, n_jobs=2, chunksize=2, max_pending=3)))
    assert (tmp_path / "killed").exists()  # a worker was killed
    assert [(i, e) for i, _, e in one] == [(i, e) for i, _, e in two]
    assert all(x1.tobytes() == x2.tobytes() for (_, x1, _), (_, x2, _) in zip(one, two))
    assert "SIGKILL" in capfd.readouterr().err  # said what happened and that it was redone


def test_a_worker_that_keeps_dying_fails_with_its_end_and_the_likely_cause(monkeypatch):
    cfg = fs({"kind": "mean_mel", "sample_rate": "native", "max_retries": 2})
    _killing_chunks(monkeypatch)
    with pytest.raises(X.WorkerLost) as lost:
        _run_guarded(lambda: list(X.extract_many(iter(_many()), cfg, n_jobs=2, chunksize=2)))
    message = str(lost.value)
    assert "lost 3 time(s)" in message and "killed by signal SIGKILL (exit code -9)" in message
    assert "out-of-memory" in message and "features.n_jobs" in message


@pytest.mark.parametrize("max_retries", [0, 1])
def test_sigkill_of_a_worker_mid_run(max_retries):
    """What the OOM killer does: SIGKILL to the workers from outside while chunks are in flight (every
    worker of the pool: with one killed, a busy run once finished without WorkerLost; cause not found)."""
    cfg = fs({"kind": "mean_mel", "sample_rate": "native", "max_retries": max_retries})
    items = _many(40)
    one = list(X.extract_many(iter(items), cfg, n_jobs=1))

    def run():
        # this run's workers only: a child left by an earlier test must not be the one killed
        earlier = {p.pid for p in multiprocessing.active_children()}
        out, it = [], X.extract_many(iter(items), cfg, n_jobs=2, chunksize=2, max_pending=2)
        for result in it:
            out.append(result)
            if len(out) == 4:
                workers = [p for p in multiprocessing.active_children() if p.pid not in earlier]
                assert workers
                for worker in workers:  # every worker of the pool: whichever holds a chunk is lost
                    os.kill(worker.pid, signal.SIGKILL)
        return out

    if max_retries == 0:
        with pytest.raises(X.WorkerLost, match=r"killed by signal SIGKILL.*out-of-memory"):
            _run_guarded(run)
    else:
        two = _run_guarded(run)
        assert [i for i, _, _ in two] == [i for i, _, _ in one]
        assert all(x1.tobytes() == x2.tobytes() for (_, x1, _), (_, x2, _) in zip(one, two))


CTRL_C = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever launched us
sys.path.insert(0, sys.argv[1])
from feature_settings import fs
from signals import tone, wav_bytes
from voicegender.features import extraction as X
# encoded before the Ctrl-C: one arriving inside soundfile's cffi write callback is swallowed there
clips = [wav_bytes(tone(100 + i, 3.0, noise=0.01, seed=i)) for i in range(50)]
items = ((f"u{i}", clips[i % 50]) for i in range(100000))
try:
    for n, _ in enumerate(X.extract_many(items, fs({"kind": "mean_mel", "sample_rate": "native"}), n_jobs=2)):
        if n == 20:
            print("running", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_the_pool_and_its_workers():
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        restore_signals=True,
    )
    try:
        assert proc.stdout.readline().strip() == "running"
        workers = psutil.Process(proc.pid).children()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted" in out, err[-2000:]
    time.sleep(0.5)
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
