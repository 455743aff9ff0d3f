"""Featurizing on a Ray cluster: :func:`extract_on_ray` is
:func:`voicegender.features.extraction.extract_many` with each chunk a Ray task (``num_cpus=1``).

The caller streams the audio (read once, as locally) in the same chunks as a local run, and the
results come back in order: the same feature bytes as a local run on the same kind of CPU. A task
whose worker or node is lost is retried by Ray (``features.max_retries``), then
:class:`voicegender.features.chunks.WorkerLost` is raised.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Iterator

from voicegender.cluster import ray_session, remember_ctrl_c
from voicegender.features.chunks import WorkerLost, featurize_chunk, init_worker, warm_up


_READY: set = set()  # in a Ray worker process: the settings it has been set up for


def _chunk_task(chunk: list[tuple], cfg, speech: dict | None) -> tuple[str, list]:
    """One chunk in a Ray worker: (the node's id, :func:`voicegender.features.chunks.featurize_chunk`).
    The first task of a worker process sets it up as the local pool's workers are (one native
    thread, glibc keeping freed memory, imports and the ge2e encoder loaded once)."""
    import ray

    key = cfg.model_dump_json()
    if key not in _READY:
        warm_up(cfg)
        init_worker(cfg.kind != "mean_mel", None)
        _READY.add(key)
    return ray.get_runtime_context().get_node_id(), featurize_chunk(chunk, cfg, speech)


def _lost(exc: BaseException) -> bool:
    """A Ray error meaning the task's worker process or node was lost (not an error of ours)."""
    from ray import exceptions as E

    lost = tuple(
        getattr(E, n)
        for n in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError", "LocalRayletDiedError")
        if hasattr(E, n)
    )
    return isinstance(exc, lost)


def extract_on_ray(
    chunks: Iterable[list[tuple]],
    cfg,
    speech: dict | None,
    *,
    address: str,
    timeout_s: float,
    max_pending: int | None = None,
    num_cpus: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[tuple[Any, Any, str | None]]:
    """Featurize ``chunks`` (lists of (id, bytes, augment_as, copies)) as Ray tasks on the
    cluster at ``address``; yield the items' results in order, as ``extract_many`` does.

    At most ``max_pending`` chunks (default: 2 per CPU of the cluster) are in flight, so memory
    stays bounded. ``log`` gets one line at the end: how many chunks ran on which node.
    """
    import ray

    # a lost worker or node: Ray runs the task again elsewhere, cfg.max_retries times
    task = ray.remote(num_cpus=1, max_retries=cfg.max_retries, retry_exceptions=False)(_chunk_task)
    nodes: collections.Counter = collections.Counter()  # chunks run per node
    with ray_session(address, timeout_s, num_cpus), remember_ctrl_c() as interrupted:
        limit = max_pending or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: collections.deque = collections.deque()
        cfg_ref = ray.put(cfg)
        try:
            for chunk in chunks:
                pending.append(task.remote(chunk, cfg_ref, speech))
                if len(pending) >= limit:
                    yield from _collect(pending.popleft(), nodes, interrupted, address, cfg.max_retries)
            while pending:
                yield from _collect(pending.popleft(), nodes, interrupted, address, cfg.max_retries)
        except BaseException:
            for ref in pending:  # Ctrl-C, an error, or the caller stopped reading: stop the rest
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 -- Ray itself may be gone (Ctrl-C reached it too)
                    pass
            if interrupted.is_set():  # Ctrl-C broke Ray before it reached us: it is still a Ctrl-C
                raise KeyboardInterrupt from None
            raise
    if log is not None:
        log(
            f"featurize: {sum(nodes.values())} chunks on {len(nodes)} Ray node(s): "
            + ", ".join(f"{node[:8]} {n}" for node, n in sorted(nodes.items()))
        )


def _collect(ref, nodes: collections.Counter, interrupted, address: str, max_retries: int) -> list:
    """One chunk's results (counted in ``nodes`` under the node that ran it). A lost worker or
    node is :class:`WorkerLost`; any Ray error after a Ctrl-C (``interrupted`` set) is the Ctrl-C."""
    import ray

    try:
        node, out = ray.get(ref)
    except Exception as exc:
        if interrupted.is_set():
            raise KeyboardInterrupt from None
        if not _lost(exc):
            raise
        raise WorkerLost(
            f"a feature task's worker on the Ray cluster at {address} was lost "
            f"{max_retries + 1} time(s) ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}); "
            "this is most often memory (Ray's memory monitor or the kernel's out-of-memory "
            "killer; see the node's raylet.out / dmesg) or a node that left the cluster: "
            "give the workers more memory, or raise features.max_retries"
        ) from None
    nodes[node] += 1
    return out
