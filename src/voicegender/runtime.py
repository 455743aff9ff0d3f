"""How work is spread over this machine: worker counts, and torch's threads.

One policy: parallelism comes from processes (feature workers, predict's jobs, Ray trials), and
torch runs on one intra-op thread in each unless a caller sets otherwise for a block. Why: the
tiny per-window ops of silero-vad and the encoder's batches of 32 run several times slower on two
threads than on one (measured on 2 cores), and answers must not depend on thread counts.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


def resolve_n_jobs(n_jobs: int) -> int:
    """n_jobs as in scikit-learn: -1 = all usable cores, -2 = all but one, positive = that many
    (never 0: the schema refuses it, as ``features.n_jobs`` and ``baselines.n_jobs``)."""
    try:
        n_cpu = len(os.sched_getaffinity(0))
    except AttributeError:
        n_cpu = os.cpu_count() or 1
    return max(1, n_jobs if n_jobs > 0 else n_cpu + 1 + n_jobs)


def use_one_thread() -> None:
    """This process's torch on one intra-op thread (the policy above), for a stage or a worker."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
