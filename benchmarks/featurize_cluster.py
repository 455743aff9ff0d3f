"""Featurize throughput: the local process pool vs Ray (local mode, a one-node and a two-node cluster).

Every configuration featurizes the same files (``--passes`` times over them in one
``extract_many`` call, as the featurize stage makes one call over a whole corpus) in a child
process of its own (a Ray driver keeps a cluster's settings for its life), configurations
interleaved ``--repeat`` times, the best kept. Figures: x real time (seconds of audio per wall
second), of a one-pass call (cold: the pool's start or Ray's connect / start and its workers'
first imports included, as in one featurize run) and per pass of a second, ``--passes`` call
in the same Ray session (warm: Ray's workers started and set up; the pool starts again, ~0.1 s:
what a big corpus sees), and the ratios to the pool's. The clusters run on this machine (loopback): what the
cluster machinery costs, not what more machines gain.

* pool           ``features.n_jobs`` = the CPUs (``--cpus``): the forked process pool
* ray-local      ``ray.address: local``-style: a Ray started by the call with ``--cpus`` CPUs
* ray-1-node     a ``ray start --head --num-cpus CPUS`` cluster, joined by address
* ray-2-nodes    a head and a worker node of CPUS/2 CPUs each (``ray start --address``)

    PYTHONPATH=src python benchmarks/featurize_cluster.py                      # mean_mel, the flac sample
    PYTHONPATH=src python benchmarks/featurize_cluster.py --kind ge2e --limit 64 --passes 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE.parent / "src"
RAY = pathlib.Path(sys.executable).with_name("ray")
DEFAULT_DIR = HERE.parent / ".." / "shared" / "data" / "librispeech-clean100-sample" / "audio"


def child(args) -> None:
    """One configuration: two extract_many calls; prints {"cold": s, "warm": s, "seconds": audio s, "digest"}."""
    import hashlib
    import io

    import numpy as np
    import psutil
    import soundfile as sf

    from voicegender.cluster import ray_session
    from voicegender.features.extraction import extract_many
    from voicegender.params import FeatureSettings, RaySettings

    files = sorted(p for p in pathlib.Path(args.dir).iterdir() if p.suffix.lower() in (".wav", ".flac"))
    items = [(p.name, p.read_bytes()) for p in files[: args.limit]]
    seconds = sum(sf.info(io.BytesIO(b)).duration for _, b in items)
    cfg = FeatureSettings(kind=args.kind, sample_rate="native" if args.kind == "mean_mel" else 16000)
    cluster = None if args.address == "pool" else RaySettings(address=args.address)
    roots = [int(p) for p in args.node_pids.split(",") if p]

    def cpu() -> float:
        """CPU s of this process, its reaped children (the pool) and every live process under it
        or under the cluster's nodes (raylet, GCS, Ray workers)."""
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        procs = {}
        for root in [os.getpid(), *roots]:
            with contextlib.suppress(psutil.Error):
                top = psutil.Process(root)
                procs.update({p.pid: p for p in top.children(recursive=True)})
                if root != os.getpid():
                    procs[root] = top
        for p in procs.values():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + (0 if p.ppid() == os.getpid() else t.children_user + t.children_system)
        return total

    session = contextlib.nullcontext() if cluster is None else ray_session(args.address, 30, args.cpus)
    t, c = time.perf_counter(), cpu()
    with session:  # one Ray session for both calls: the second finds the workers warm
        out = list(extract_many(iter(items), cfg, n_jobs=args.cpus, cluster=cluster))
        cold, cold_cpu = time.perf_counter() - t, cpu() - c
        t, c = time.perf_counter(), cpu()
        out = list(extract_many(iter(items * args.passes), cfg, n_jobs=args.cpus, cluster=cluster))
        warm, warm_cpu = (time.perf_counter() - t) / args.passes, (cpu() - c) / args.passes
    digest = hashlib.sha256(np.stack([x for _, x, _ in out[: len(items)]]).tobytes()).hexdigest()
    print(
        json.dumps(
            {
                "cold": cold,
                "warm": warm,
                "cold_cpu": cold_cpu,
                "warm_cpu": warm_cpu,
                "seconds": seconds,
                "digest": digest,
            }
        )
    )


class Cluster:
    """Ray nodes on loopback, each `ray start --block` in its own process group (stopped by it)."""

    def __init__(self, cpus_per_node: list[int], env: dict):
        self.temp = tempfile.mkdtemp(prefix="rayb", dir="/tmp")  # short: Unix socket paths <= 107 bytes
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address, self.nodes = f"127.0.0.1:{port}", []
        for i, cpus in enumerate(cpus_per_node):
            role = ["--head", "--port", str(port), "--temp-dir", self.temp, "--include-dashboard", "false"]
            node = subprocess.Popen(
                [str(RAY), "start", "--block", "--num-cpus", str(cpus), "--disable-usage-stats"]
                + ["--node-ip-address", "127.0.0.1"]
                + (role if i == 0 else ["--address", self.address]),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            self.nodes.append(node)
            seen: list[str] = []
            threading.Thread(target=lambda n=node, s=seen: s.extend(n.stdout), daemon=True).start()
            deadline = time.monotonic() + 120
            while not any("Ray runtime started" in line for line in list(seen)):
                if node.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    sys.exit("ray start failed:\n" + "".join(seen))
                time.sleep(0.2)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            os.killpg(node.pid, signal.SIGINT)
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        import shutil

        shutil.rmtree(self.temp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=str(DEFAULT_DIR), help="folder of wav/flac files (default: the real sample)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many files")
    ap.add_argument("--kind", default="mean_mel", help="features.kind (default mean_mel: per-task overhead shows most)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs for every configuration (even: 2 nodes)")
    ap.add_argument("--passes", type=int, default=3, help="passes over the files in the second call (>= 2)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="pool,ray-local,ray-1-node,ray-2-nodes", help="comma-separated configurations")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--node-pids", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",  # Ray >= 2.59 clusters: nodes and drivers share a token
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    wanted = args.only.split(",")
    clusters = {}
    try:
        if "ray-1-node" in wanted:
            clusters["ray-1-node"] = Cluster([args.cpus], env)
        if "ray-2-nodes" in wanted:
            clusters["ray-2-nodes"] = Cluster([args.cpus // 2, args.cpus - args.cpus // 2], env)
        addresses = {"pool": "pool", "ray-local": "local", **{k: c.address for k, c in clusters.items()}}
        pids = {k: ",".join(str(n.pid) for n in c.nodes) for k, c in clusters.items()}
        best: dict[str, dict] = {}
        for r in range(args.repeat):
            for name in wanted if r % 2 == 0 else wanted[::-1]:  # interleaved, alternating order
                cmd = [sys.executable, __file__, "--child", "1", "--address", addresses[name]]
                cmd += ["--node-pids", pids.get(name, "")]
                cmd += ["--dir", args.dir, "--kind", args.kind, "--cpus", str(args.cpus), "--passes", str(args.passes)]
                cmd += ["--limit", str(args.limit)] if args.limit else []
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                print(
                    f"round {r + 1} {name:<12} cold {got['cold']:6.2f} s ({got['cold_cpu']:6.2f} CPU s)  "
                    f"warm {got['warm']:6.2f} s/pass ({got['warm_cpu']:6.2f} CPU s)",
                    flush=True,
                )
                old = best.setdefault(name, got)
                assert old["digest"] == got["digest"], f"{name}: features differ between runs"
                for k in ("cold", "warm", "cold_cpu", "warm_cpu"):
                    old[k] = min(old[k], got[k])
    finally:
        for c in clusters.values():
            c.stop()
    digests = {b["digest"] for b in best.values()}
    seconds = next(iter(best.values()))["seconds"]
    base = best.get("pool")
    print(f"\n{args.kind}, {seconds / 60:.1f} min of audio, {args.cpus} CPUs; best of {args.repeat} interleaved rounds")
    print("x RT = audio seconds per wall second; per CPU s: audio seconds per CPU second (all processes)")
    print("ratio = pool's time / this one's (above 1: faster than the pool)")
    print(f"{'configuration':<14} {'cold':>8} {'warm':>8} {'warm':>9} {'ratio':>10} {'ratio':>10}")
    print(f"{'':<14} {'x RT':>8} {'x RT':>8} {'per CPU s':>9} {'warm wall':>10} {'warm CPU':>10}")
    for name, b in best.items():
        rel = f"{base['warm'] / b['warm']:10.2f} {base['warm_cpu'] / b['warm_cpu']:10.2f}" if base else ""
        print(f"{name:<14} {seconds / b['cold']:8.0f} {seconds / b['warm']:8.0f} {seconds / b['warm_cpu']:9.0f} {rel}")
    print(f"features identical across configurations: {len(digests) == 1}")


if __name__ == "__main__":
    main()
