"""The parallel extraction pool: features of many (id, audio bytes) items, in order, on every core.

:func:`extract_many` streams items through forked worker processes (audio handed over through
shared memory, glibc told to keep the workers' freed memory, native thread pools limited to one
thread per worker), embeds ge2e utterances in chunks of ``GE2E_CHUNK`` through the encoder
together, and yields per-item failures instead of raising. The features are byte-identical for
any ``n_jobs``. A worker process that ends abruptly (the kernel's OOM killer, a crash) never hangs
it: its unfinished chunks are redone in a new pool (``features.max_retries`` times), then
:class:`WorkerLost` says how the worker ended. :func:`resolve_n_jobs` reads ``n_jobs`` as scikit-learn does.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import itertools
import mmap
import multiprocessing
import os
import signal
import threading
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from threadpoolctl import ThreadpoolController

from voicegender.audio import decode_audio
from voicegender.errors import UserError
from voicegender.features import _compute, encoder_device
from voicegender.params import FeatureSettings, RaySettings
from voicegender.spectral import _mel_segments, resample


@functools.lru_cache(maxsize=1)
def _thread_pools() -> ThreadpoolController:
    """threadpoolctl's controller of the loaded native thread pools (OpenBLAS & co.).
    Built once in the parent (a ~30 ms library scan); forked workers inherit it."""
    return ThreadpoolController()


_SHARED: mmap.mmap | None = None  # in a worker: the parent's shared transfer buffer (fork only)
_SLOT_BYTES = 16 << 20  # audio bytes per in-flight chunk in the shared buffer; bigger chunks are pickled


# glibc mallopt parameters (malloc.h) and the values the workers set, see _keep_freed_memory
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD_BYTES = 1 << 30  # free heap kept before any is handed back: i.e. never, in practice
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's upper limit on 64-bit: smaller blocks come from the heap


def _keep_freed_memory() -> None:
    """Have glibc reuse a worker's freed memory instead of returning it to the kernel.

    A forked worker starts with glibc's default thresholds for its own allocations, so every
    FFT block and decoded file got fresh pages, each faulted in again: on the flac sample ~30k
    page faults and ~0.1 s of system CPU per run (6 % of the total). Workers are short-lived
    and hold little, so keeping their freed memory costs nothing. No-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def _worker_init(uses_blas: bool, shared: mmap.mmap | None) -> None:
    # One process per core: native thread pools would oversubscribe the cores. Only the workers
    # are limited; the caller's own settings are left alone. mean_mel uses no BLAS: there, even
    # setting OpenBLAS's thread count would cost each worker ~0.1-0.2 s of CPU (it starts its
    # thread pool anew after a fork, and the new threads busy-wait before sleeping).
    global _SHARED
    _SHARED = shared
    _keep_freed_memory()
    if uses_blas:
        _thread_pools().limit(limits=1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    # A terminal's Ctrl-C reaches the whole process group: it is the parent's to handle (it stops
    # the pool, or cancels a Ray driver's tasks). A worker dying of it first would turn the
    # interrupt into a lost worker (exit 1 instead of 130: seen in the Ctrl-C tests).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _warm_up(cfg: FeatureSettings) -> None:
    import librosa.filters  # noqa: F401  (imports numba & co.: slow, do it once)
    import soxr  # noqa: F401

    if cfg.kind == "ge2e":
        from voicegender.speaker_encoder import encoder_for

        device = encoder_device(cfg.encoder_device)
        if device == "cpu":  # built once, here: forked workers share it (CUDA is used in-process)
            encoder_for(device, cfg.ge2e_precision)
    elif cfg.sample_rate != "native":
        _mel_segments(cfg.sample_rate, cfg.n_fft, cfg.n_mels)  # and mel_filterbank


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _versions(
    y: np.ndarray, sr: int, augment_as: str | None, copies: int, cfg: FeatureSettings
) -> Iterator[tuple[int, np.ndarray]]:
    """(0, the recording) then (k, its k-th augmented copy) for k = 1 .. ``copies``, seeded by
    ``augment_as`` (the utterance id) and ``features.augment.seed``."""
    yield 0, y
    if copies:
        from voicegender.augment import augmented_signals

        yield from enumerate(augmented_signals(y, sr, augment_as, cfg.augment, copies), 1)


def _featurize_chunk(
    chunk: list[tuple], cfg: FeatureSettings, speech: dict | None
) -> list[tuple[Any, np.ndarray | None, str | None]]:
    """Features of a chunk of (id, audio bytes, augment_as, copies) items, in order: each item's
    own as (id, feature, None), then its ``copies`` augmented versions as ((id, k), feature, None);
    a failure as (id, None, reason), without copies.

    Recordings are decoded once. The speech check (``speech``: the keyword arguments of
    ``speech.require_speech``) scores the chunk's recordings together at 16 kHz
    (``speech.speech_shortfalls``); augmented copies are not checked (a copy of speech is
    speech). ge2e augments at the encoder's 16 kHz (it hears nothing above 8 kHz) and puts every
    partial of the chunk through the encoder together (the same bytes as one at a time).
    """
    if speech is None and cfg.kind != "ge2e":
        # nothing is batched: one recording at a time, so that its samples stay in the cache
        # between decoding and the features (decoding the whole chunk first was 3-7 % slower)
        return [out for item in chunk for out in _featurize_chunk_batched([item], cfg, speech)]
    return _featurize_chunk_batched(chunk, cfg, speech)


def _featurize_chunk_batched(
    chunk: list[tuple], cfg: FeatureSettings, speech: dict | None
) -> list[tuple[Any, np.ndarray | None, str | None]]:
    signals: dict[int, tuple[np.ndarray, int]] = {}
    errors: dict[tuple[int, int], str] = {}
    for i, (_, data, _, _) in enumerate(chunk):
        try:
            y, sr = decode_audio(data)
            if y.size == 0:
                raise ValueError("empty audio (0 samples)")
            signals[i] = (y, sr)
        except Exception as exc:  # noqa: BLE001 -- reported per item so the caller can skip it
            errors[i, 0] = _reason(exc)
    at_16k: dict[int, np.ndarray] = {}
    if speech is not None and signals:  # extract_many(speech=...): recordings without enough speech are skipped
        from voicegender.speech import VAD_RATE, speech_shortfalls

        at_16k = {i: resample(y, sr, VAD_RATE) for i, (y, sr) in signals.items()}
        for i, shortfall in zip(list(at_16k), speech_shortfalls(list(at_16k.values()), **speech)):
            if shortfall is not None:
                errors[i, 0] = _reason(shortfall)
                del signals[i]
    vectors: dict[tuple[int, int], np.ndarray] = {}
    if cfg.kind == "ge2e":
        from voicegender.speaker_encoder import SAMPLE_RATE, ge2e_embeddings, partial_mels

        mels, owners = [], []
        for i, (y, sr) in signals.items():
            w = at_16k[i] if i in at_16k else resample(y, sr, SAMPLE_RATE)
            for k, version in _versions(w, SAMPLE_RATE, chunk[i][2], chunk[i][3], cfg):
                try:
                    mels.append(
                        partial_mels(version, SAMPLE_RATE, cfg.ge2e_rate, cfg.ge2e_min_coverage, cfg.target_dbfs)
                    )
                    owners.append((i, k))
                except Exception as exc:  # noqa: BLE001
                    errors[i, k] = _reason(exc)
        vectors = dict(zip(owners, ge2e_embeddings(mels, encoder_device(cfg.encoder_device), cfg.ge2e_precision)))
    else:
        for i, (y, sr) in signals.items():
            for k, version in _versions(y, sr, chunk[i][2], chunk[i][3], cfg):
                try:
                    vectors[i, k] = _compute(version, sr, cfg)
                except Exception as exc:  # noqa: BLE001
                    errors[i, k] = _reason(exc)
    out: list[tuple[Any, np.ndarray | None, str | None]] = []
    for i, (item_id, _, _, copies) in enumerate(chunk):
        out.append((item_id, vectors.get((i, 0)), errors.get((i, 0))))
        if (i, 0) in vectors:
            out += [((item_id, k), vectors.get((i, k)), errors.get((i, k))) for k in range(1, copies + 1)]
    return out


def _featurize_shared(
    layout: list[tuple], cfg: FeatureSettings, speech: dict | None
) -> list[tuple[Any, np.ndarray | None, str | None]]:
    """_featurize_chunk on items the parent wrote into the shared buffer:
    (id, offset, length, augment_as, copies)."""
    assert _SHARED is not None
    return _featurize_chunk(
        [(item_id, _SHARED[start : start + n], augment_as, copies) for item_id, start, n, augment_as, copies in layout],
        cfg,
        speech,
    )


def _chunks(items: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    """Items as (id, bytes, augment_as, copies) (a plain (id, bytes) has no copies), in chunks."""
    chunk: list[tuple] = []
    for item in items:
        chunk.append(tuple(item) if len(item) == 4 else (*item, None, 0))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: ge2e: utterances per worker chunk; their ~4-8 partials each fill encoder blocks of 32
#: (speaker_encoder.ENCODER_BATCH) with little zero padding. Fixed, never timing-dependent.
GE2E_CHUNK = 32


def resolve_n_jobs(n_jobs: int) -> int:
    """n_jobs as in scikit-learn: -1 = all usable cores, -2 = all but one, positive = that many."""
    try:
        n_cpu = len(os.sched_getaffinity(0))
    except AttributeError:
        n_cpu = os.cpu_count() or 1
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0")
    return max(1, n_jobs if n_jobs > 0 else n_cpu + 1 + n_jobs)


def extract_many(
    items: Iterable[tuple],
    config: FeatureSettings,
    n_jobs: int = -1,
    chunksize: int | None = None,
    max_pending: int | None = None,
    speech: dict | None = None,
    cluster: RaySettings | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[tuple[Any, np.ndarray | None, str | None]]:
    """Featurize (id, audio bytes) items in parallel; yield (id, feature, None) or (id, None, error).

    An item (id, audio bytes, augment_as, copies) also gets ``copies`` augmented versions
    (``features.augment``, seeded by the id string ``augment_as``), yielded right after it as
    ((id, k), feature, None) for k = 1 .. copies; none if the item itself failed.
    Input order is preserved. ``items`` is consumed lazily: at most ``max_pending`` chunks of
    ``chunksize`` items (default 2 per worker; ``chunksize`` default 8, for ge2e ``GE2E_CHUNK``,
    whose partials go through the encoder in one batch) are in flight, so memory stays bounded for any
    corpus size. Per-item failures (corrupt, empty, non-audio) are yielded as error strings,
    never raised. Output is byte-identical for any n_jobs. ``speech``: the keyword arguments of
    :func:`voicegender.speech.require_speech` (``min_speech_s`` and the VAD settings): items with
    less speech are yielded as errors (``NoSpeech: ...``) too (their copies are not checked);
    None = no check.

    With n_jobs > 1 the first chunk is computed in the calling process, the rest by forked
    workers that receive the audio through shared memory (see below) and return the features.
    A lost worker's chunks are redone at most ``config.max_retries`` times (:class:`_Workers`),
    then :class:`WorkerLost` is raised.

    ``cluster`` (params.yaml's ``ray:``): with an address (``cluster.address``, else
    ``RAY_ADDRESS``), the chunks (the same as locally) are Ray tasks on that cluster instead
    (:func:`voicegender.cluster.extract_on_ray`; ``n_jobs`` does not apply; ``log`` gets which
    nodes ran them): the same bytes on the same kind of CPU.
    """
    cfg = config
    if chunksize is None:
        chunksize = GE2E_CHUNK if cfg.kind == "ge2e" else 8
    address = None
    if cluster is not None:
        from voicegender.cluster import resolve_address

        address = resolve_address(cluster.address)
    if address:
        from voicegender.cluster import extract_on_ray

        yield from extract_on_ray(
            _chunks(items, chunksize),
            cfg,
            None if speech is None else dict(speech),
            address=address,
            timeout_s=cluster.connect_timeout_s,
            max_pending=max_pending,
            num_cpus=resolve_n_jobs(n_jobs),
            log=log,
        )
        return
    # Local runs keep this process pool rather than a local Ray (one code path would be simpler):
    # measured with benchmarks/featurize_cluster.py (mean_mel, 52 min of real speech, 2-core Xeon,
    # 2026-12-06), a Ray task costs more CPU per chunk (2,400 vs 2,974 audio s per CPU s: 0.81x,
    # more than 10 % behind) and starting Ray costs seconds per run (7.8 vs 1.8 CPU s cold); on
    # ge2e's heavier chunks it is about even warm (714 vs 650) but still ~7 CPU s more per run.
    if speech is not None:
        speech = dict(speech)  # travels with cfg to the workers (_featurize_chunk)
    n_workers = resolve_n_jobs(n_jobs)
    if cfg.kind == "ge2e" and encoder_device(cfg.encoder_device) != "cpu":
        n_workers = 1  # the GPU is the parallelism; CUDA does not survive a fork either
    _warm_up(cfg)  # forked workers inherit imports and caches instead of each paying ~1 s
    items = iter(items)
    if n_workers > 1:
        # The first chunk is done here, before forking, so that the workers inherit what it set up
        # (the filterbank for a native rate, FFT plans: ~80 ms per worker otherwise). A whole
        # chunk, not one item: chunks are then the same for any n_jobs, and so are the batched
        # speech check's results (its batch is a chunk).
        for first in itertools.islice(_chunks(items, chunksize), 1):
            yield from _featurize_chunk(first, cfg, speech)
    if n_workers == 1:
        for chunk in _chunks(items, chunksize):
            yield from _featurize_chunk(chunk, cfg, speech)
        return
    max_pending = max_pending or 2 * n_workers
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    uses_blas = cfg.kind != "mean_mel"
    if uses_blas:
        _thread_pools()  # scan once, here: the workers inherit the result
    # Audio bytes go to forked workers through one anonymous shared mapping of max_pending slots
    # of _SLOT_BYTES (pages are backed only once written): one memcpy each way instead of
    # pickling, two pipe copies and unpickling; only (id, offset, length) triples are pickled.
    # Measured on 88 MB of 16-bit wavs with no feature work, pool start included: 0.18 CPU s
    # vs 0.26 s through pipes (mean_mel's own work on them: ~0.6 s). Without fork: pickled.
    shared = mmap.mmap(-1, max_pending * _SLOT_BYTES) if method == "fork" else None
    free_slots = collections.deque(range(max_pending))
    with contextlib.ExitStack() as cleanup:
        if shared is not None:
            cleanup.callback(shared.close)
        pool = cleanup.enter_context(_Workers(n_workers, method, (uses_blas, shared), cfg.max_retries, log))
        pending: collections.deque = collections.deque()  # (task, slot or None)

        def submit(chunk: list[tuple]) -> None:
            if shared is None or sum(len(item[1]) for item in chunk) > _SLOT_BYTES:
                pending.append((pool.submit(_featurize_chunk, chunk, cfg, speech), None))
                return
            slot = free_slots.popleft()
            pos, layout = slot * _SLOT_BYTES, []
            for item_id, data, augment_as, copies in chunk:
                shared[pos : pos + len(data)] = data
                layout.append((item_id, pos, len(data), augment_as, copies))
                pos += len(data)
            pending.append((pool.submit(_featurize_shared, layout, cfg, speech), slot))

        def collect() -> list[tuple[Any, np.ndarray | None, str | None]]:
            task, slot = pending[0]
            out = pool.result(task, [t for t, _ in pending])
            pending.popleft()
            if slot is not None:
                free_slots.append(slot)
            return out

        for chunk in _chunks(items, chunksize):
            submit(chunk)
            if len(pending) >= max_pending:
                yield from collect()
        while pending:
            yield from collect()


class WorkerLost(UserError, RuntimeError):
    """A feature worker process ended abruptly (killed, crashed) more often than
    ``features.max_retries`` allows."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class _Task:
    """One chunk handed to the workers: the call, kept so that it can be submitted again."""

    __slots__ = ("fn", "args", "future")

    def __init__(self, fn, args):
        self.fn, self.args, self.future = fn, args, None


class _Workers:
    """A process pool that notices a lost worker: a ``concurrent.futures.ProcessPoolExecutor``
    (which, unlike ``multiprocessing.Pool``, fails every pending call as soon as one of its
    processes ends abruptly, instead of replacing the process and waiting forever for the call
    it held), started again with the unfinished chunks at most ``max_retries`` times; then
    :class:`WorkerLost` names how the worker ended. Chunks are pure functions of their input,
    so a redone chunk gives the same bytes.
    """

    def __init__(self, n_workers: int, method: str, initargs: tuple, max_retries: int, log=None):
        self.n_workers, self.ctx, self.initargs = n_workers, multiprocessing.get_context(method), initargs
        self.retries_left = max_retries
        self.max_retries = max_retries
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._start()

    def _start(self) -> None:
        self.executor = ProcessPoolExecutor(
            self.n_workers, mp_context=self.ctx, initializer=_worker_init, initargs=self.initargs
        )
        self.processes: list = []  # the executor's worker processes, for their exit codes

    def submit(self, fn, *args) -> _Task:
        task = _Task(fn, args)
        self._send(task)
        return task

    def _send(self, task: _Task) -> None:
        try:
            task.future = self.executor.submit(task.fn, *task.args)
        except BrokenProcessPool as exc:  # a worker was lost since the last result: seen in result()
            task.future = Future()
            task.future.set_exception(exc)
        if not self.processes:
            # with fork, all workers start on the first submit (the executor's own record of
            # them is private: without it, the message just cannot name the exit code)
            self.processes = list(getattr(self.executor, "_processes", {}).values())

    def result(self, task: _Task, unfinished: list[_Task]) -> Any:
        """``task``'s result; if a worker was lost, the pool is started again and every task of
        ``unfinished`` (in order, ``task`` first) sent again, or :class:`WorkerLost` raised."""
        while True:
            try:
                return task.future.result()
            except BrokenProcessPool:
                ends = self._ends()
                self.executor.shutdown(wait=True, cancel_futures=True)
                if self.retries_left <= 0:
                    raise WorkerLost(
                        f"a feature worker process was lost {self.max_retries + 1} time(s), the last: {ends}; "
                        "this is most often the kernel's out-of-memory killer (see `dmesg`): lower "
                        "features.n_jobs, free or add memory, or raise features.max_retries if the "
                        "machine is only briefly short of it"
                    ) from None
                self.retries_left -= 1
                self.log(
                    f"featurize: a worker process was lost ({ends}); redoing the {len(unfinished)} unfinished "
                    f"chunk(s) in a new pool ({self.retries_left} more retr{'y' if self.retries_left == 1 else 'ies'} "
                    "allowed)"
                )
                self._start()
                for t in unfinished:
                    self._send(t)

    def _ends(self) -> str:
        """How the lost worker(s) ended: "pid 12 killed by signal SIGKILL (exit code -9)" or "pid 12
        exited with code 3". The executor terminates the others (SIGTERM) once one is lost."""
        for p in self.processes:
            p.join(timeout=1)
        codes = [(p.pid, p.exitcode) for p in self.processes if p.exitcode not in (None, 0)]
        lost = [(pid, c) for pid, c in codes if c != -signal.SIGTERM] or codes
        if not lost:
            return "it ended abruptly"
        return "; ".join(
            f"pid {pid} killed by signal {_signal_name(-c)} (exit code {c})"
            if c < 0
            else f"pid {pid} exited with code {c}"
            for pid, c in lost
        )

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.executor.shutdown(wait=True)
            return
        # an error, Ctrl-C or the caller stopped reading: do not wait for the chunks in flight
        for p in self.processes:
            if p.exitcode is None:
                p.terminate()
        self.executor.shutdown(wait=True, cancel_futures=True)
