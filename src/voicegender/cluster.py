"""A Ray cluster for featurize and tune: where it is (``ray.address`` or ``RAY_ADDRESS``), whether
it answers, and a Ray session joined to it (or a local Ray of our own) for a ``with`` block."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import shutil
from typing import Any, Iterator

from voicegender.errors import UserError

# Ray reads these at import time: no usage stats, the classic quiet output.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# a Ray started here (address "local") would run its workers at niceness 15: they are the job
os.environ.setdefault("RAY_worker_niceness", "0")


class ClusterUnreachable(UserError, ConnectionError):
    """No Ray cluster answers at ray.address."""


def resolve_address(address: str | None) -> str | None:
    """ray.address, else the ``RAY_ADDRESS`` environment variable, else None (no cluster)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast, naming ``address``, when no Ray cluster answers there (``ray.init`` would wait
    for minutes). ``auto``, ``local`` and addresses without a port are left to Ray."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    if address in ("auto", "local") or ":" not in host_port:
        return
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise ClusterUnreachable(
            f"no Ray cluster reachable at {address!r} (ray.address / RAY_ADDRESS): "
            f"{e}. Start one with `ray start --head` or fix the address."
        ) from None


@contextlib.contextmanager
def ray_session(address: str, timeout_s: float, num_cpus: int | None = None) -> Iterator[None]:
    """Ray connected to the cluster at ``address`` (checked for within ``timeout_s`` seconds) for
    the ``with`` block, quietly (no dashboard, workers' output not forwarded). ``address="local"``
    starts a Ray of our own on this machine with ``num_cpus`` CPUs instead, its session folder
    under /tmp (Unix socket paths are capped at 107 bytes), removed afterwards. A Ray this process
    already joined is used as it is (and left joined)."""
    import ray

    if ray.is_initialized():
        yield
        return
    check_reachable(address, timeout_s)
    kwargs: dict[str, Any] = dict(
        address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=True
    )
    scratch = None
    if address == "local":
        scratch = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        kwargs.update(_temp_dir=scratch, num_cpus=num_cpus or os.cpu_count())
    ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["ClusterUnreachable", "check_reachable", "ray_session", "resolve_address"]
