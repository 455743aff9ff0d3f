"""voicegender.extraction: the parallel pool (order, errors, byte-identical for any n_jobs, laziness)."""

import numpy as np
import pytest

from feature_settings import fs
from voicegender import extraction as X
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
    monkeypatch.setattr(X, "_SLOT_BYTES", 100_000)
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
