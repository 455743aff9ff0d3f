"""The parallel extraction pool: features of many (id, audio bytes) items, in order, on every core.

:func:`extract_many` streams items through forked worker processes (audio handed over through
shared memory, glibc told to keep the workers' freed memory, native thread pools limited to one
thread per worker), embeds ge2e utterances in chunks of ``GE2E_CHUNK`` through the encoder
together, and yields per-item failures instead of raising. The features are byte-identical for
any ``n_jobs``. A worker process that ends abruptly (the kernel's OOM killer, a crash) never hangs
it: its unfinished chunks are redone in a new pool (``features.max_retries`` times), then
:class:`WorkerLost` says how the worker ended.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import mmap
import multiprocessing
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from voicegender.features.kinds import encoder_device
from voicegender.params import FeatureSettings, RaySettings
from voicegender.runtime import resolve_n_jobs

from voicegender.features.chunks import (
    GE2E_CHUNK,
    WorkerLost,
    SLOT_BYTES,
    featurize_shared,
    in_chunks,
    featurize_chunk,
    init_worker,
    thread_pools,
    warm_up,
)


def extract_many(
    items: Iterable[tuple],
    config: FeatureSettings,
    *,
    n_jobs: int,
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
    :func:`voicegender.audio.speech.require_speech` (``min_speech_s`` and the VAD settings): items with
    less speech are yielded as errors (``NoSpeech: ...``) too (their copies are not checked);
    None = no check.

    With n_jobs > 1 the first chunk is computed in the calling process, the rest by forked
    workers that receive the audio through shared memory (see below) and return the features.
    A lost worker's chunks are redone at most ``config.max_retries`` times (:class:`_Workers`),
    then :class:`WorkerLost` is raised.

    ``cluster`` (params.yaml's ``ray:``): with an address (``cluster.address``, else
    ``RAY_ADDRESS``), the chunks (the same as locally) are Ray tasks on that cluster instead
    (:func:`voicegender.features.extraction_ray.extract_on_ray`; ``n_jobs`` does not apply; ``log`` gets which
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
        from voicegender.features.extraction_ray import extract_on_ray

        yield from extract_on_ray(
            in_chunks(items, chunksize),
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
        speech = dict(speech)  # travels with cfg to the workers (featurize_chunk)
    n_workers = resolve_n_jobs(n_jobs)
    if cfg.kind == "ge2e" and encoder_device(cfg.encoder_device) != "cpu":
        n_workers = 1  # the GPU is the parallelism; CUDA does not survive a fork either
    warm_up(cfg)  # forked workers inherit imports and caches instead of each paying ~1 s
    items = iter(items)
    if n_workers > 1:
        # The first chunk is done here, before forking, so that the workers inherit what it set up
        # (the filterbank for a native rate, FFT plans: ~80 ms per worker otherwise). A whole
        # chunk, not one item: chunks are then the same for any n_jobs, and so are the batched
        # speech check's results (its batch is a chunk).
        for first in itertools.islice(in_chunks(items, chunksize), 1):
            yield from featurize_chunk(first, cfg, speech)
    if n_workers == 1:
        for chunk in in_chunks(items, chunksize):
            yield from featurize_chunk(chunk, cfg, speech)
        return
    yield from _extract_in_workers(
        in_chunks(items, chunksize), cfg, speech, n_workers, max_pending or 2 * n_workers, log
    )


def _extract_in_workers(
    chunks: Iterable[list[tuple]],
    cfg: FeatureSettings,
    speech: dict | None,
    n_workers: int,
    max_pending: int,
    log: Callable[[str], None] | None,
) -> Iterator[tuple[Any, np.ndarray | None, str | None]]:
    """:func:`featurize_chunk` of each chunk in ``n_workers`` forked worker processes (spawned
    where fork is missing), at most ``max_pending`` chunks in flight; results in input order."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    uses_blas = cfg.kind != "mean_mel"
    if uses_blas:
        thread_pools()  # scan once, here: the workers inherit the result
    # Audio bytes go to forked workers through one anonymous shared mapping of max_pending slots
    # of SLOT_BYTES (pages are backed only once written): one memcpy each way instead of
    # pickling, two pipe copies and unpickling; only (id, offset, length) triples are pickled.
    # Measured on 88 MB of 16-bit wavs with no feature work, pool start included: 0.18 CPU s
    # vs 0.26 s through pipes (mean_mel's own work on them: ~0.6 s). Without fork: pickled.
    shared = mmap.mmap(-1, max_pending * SLOT_BYTES) if method == "fork" else None
    free_slots = collections.deque(range(max_pending))
    with contextlib.ExitStack() as cleanup:
        if shared is not None:
            cleanup.callback(shared.close)
        pool = cleanup.enter_context(_Workers(n_workers, method, (uses_blas, shared), cfg.max_retries, log))
        pending: collections.deque = collections.deque()  # (task, slot or None)

        def submit(chunk: list[tuple]) -> None:
            if shared is None or sum(len(item[1]) for item in chunk) > SLOT_BYTES:
                pending.append((pool.submit(featurize_chunk, chunk, cfg, speech), None))
                return
            slot = free_slots.popleft()
            pos, layout = slot * SLOT_BYTES, []
            for item_id, data, augment_as, copies in chunk:
                shared[pos : pos + len(data)] = data
                layout.append((item_id, pos, len(data), augment_as, copies))
                pos += len(data)
            pending.append((pool.submit(featurize_shared, layout, cfg, speech), slot))

        def collect() -> list[tuple[Any, np.ndarray | None, str | None]]:
            task, slot = pending[0]
            out = pool.result(task, [t for t, _ in pending])
            pending.popleft()
            if slot is not None:
                free_slots.append(slot)
            return out

        for chunk in chunks:
            submit(chunk)
            if len(pending) >= max_pending:
                yield from collect()
        while pending:
            yield from collect()


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
            self.n_workers, mp_context=self.ctx, initializer=init_worker, initargs=self.initargs
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
