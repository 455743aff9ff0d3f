"""A Ray cluster for featurize and tune: where it is (``ray.address`` or ``RAY_ADDRESS``), whether
it answers, a Ray session joined to it (or a local Ray of our own) for a ``with`` block, and a
Ctrl-C that is remembered while Ray runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
from typing import Any, Callable, Iterator

from voicegender.errors import UserError

# Ray reads these at import time: no usage stats, the classic quiet output.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# a Ray started here (address "local") would run its workers at niceness 15: on a shared machine
# they then get a fraction of a core (measured: ~0.4) while anything else runs. They are the job.
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
def ray_session(
    address: str, timeout_s: float, num_cpus: int | None = None, log: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Ray connected to the cluster at ``address`` (checked for within ``timeout_s`` seconds) for
    the ``with`` block, quietly (no dashboard, workers' output not forwarded). ``address="local"``
    starts a Ray of our own on this machine with ``num_cpus`` CPUs (default: all) instead, its
    session folder under /tmp (Unix socket paths are capped at 107 bytes), removed afterwards, and
    says so to ``log``. A Ray this process already joined is used as it is (and left joined)."""
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
        # "local": always a fresh Ray of our own, never a `ray start` cluster that happens to run here
        scratch = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        kwargs.update(_temp_dir=scratch, num_cpus=num_cpus or os.cpu_count())
        if log is not None:
            log(f"local Ray, {kwargs['num_cpus']} CPUs, scratch in {scratch} (removed afterwards)")
    try:
        ray.init(**kwargs)
        yield
    finally:
        ray.shutdown()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def remember_ctrl_c() -> Iterator[threading.Event]:
    """Within the block, Ctrl-C (SIGINT) sets the yielded event, then is handled as before
    (KeyboardInterrupt), so that an interrupt is known even if some code caught the exception. Why:
    Ray code can swallow the KeyboardInterrupt and go on, and a local Ray's processes share our
    process group, so a terminal's Ctrl-C can break them before our KeyboardInterrupt is raised
    (a Ray error then, exit 1 instead of 130). A SIGINT the process was told to ignore (SIG_IGN,
    e.g. a background job) stays ignored; off the main thread, a no-op."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield interrupted
        return

    def on_sigint(signum, frame):
        interrupted.set()
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


__all__ = ["ClusterUnreachable", "check_reachable", "ray_session", "remember_ctrl_c", "resolve_address"]
