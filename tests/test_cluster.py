"""The search on an existing Ray cluster: a local head node started (and stopped) here."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import voicegender
from conftest import TINY, copy_repo, set_params
from voicegender.models.tuning import run_search
from test_tuning import FIXED, settings, small_data
from voicegender.params import SpaceEntry

pytestmark = pytest.mark.slow  # starts a Ray cluster and runs searches on it

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_node(args: list[str], env: dict) -> subprocess.Popen:
    # --block keeps `ray start` in the foreground, in its own process group: stopping that
    # group stops this node only (`ray stop` would stop every Ray on the machine)
    return subprocess.Popen(
        [str(RAY), "start", "--block", "--num-cpus", "1", "--disable-usage-stats", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_started(node: subprocess.Popen, what: str, limit_s: float = 90) -> None:
    """Wait until ``ray start`` says the node runs (or fail, naming ``what``); its output is
    read on by a thread from then on, so that the pipe never fills."""
    seen: list[str] = []
    threading.Thread(target=lambda: seen.extend(node.stdout), daemon=True).start()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if any("Ray runtime started" in line for line in list(seen)):
            return
        if node.poll() is not None:
            time.sleep(0.5)
            pytest.fail(f"{what}: ray start failed:\n" + "".join(seen))
        time.sleep(0.2)
    pytest.fail(f"{what}: ray start did not start within {limit_s} s:\n" + "".join(seen))


def stop(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGINT)
    try:
        node.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster on loopback, one CPU each: a head node and a worker node that joins
    it with `ray start --address`, as a user's cluster is built."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Unix socket paths <= 107 bytes
    src = str(Path(voicegender.__file__).resolve().parents[1])
    # Ray >= 2.59 clusters require a token: give the nodes and this driver the same one
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    address = f"127.0.0.1:{port}"
    nodes = []
    try:
        nodes.append(
            ray_node(
                ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--temp-dir", temp]
                + ["--include-dashboard", "false"],
                env,
            )
        )
        wait_started(nodes[0], "head node")
        nodes.append(ray_node(["--address", address, "--node-ip-address", "127.0.0.1"], env))
        wait_started(nodes[1], "worker node")
        yield address
    finally:
        for node in reversed(nodes):
            stop(node)
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


SEARCH = """
import json, sys
sys.path.insert(0, sys.argv[3])
from test_tuning import FIXED, settings, small_data
from voicegender.params import SpaceEntry
from voicegender.models.tuning import run_search

space = {"lr": SpaceEntry(type="loguniform", low=1.0e-3, high=1.0e-1),
         "batch_size": SpaceEntry(type="choice", values=[16, 32])}
result = run_search(*small_data(), space=space, fixed=FIXED, num_samples=3,
                    **settings(address=sys.argv[1], storage_path=sys.argv[2], seed=1), log=lambda m: None)
print(json.dumps([t["error"] for t in result["trials"]]))
"""


def test_search_runs_unchanged_on_a_cluster(cluster, tmp_path):
    # in a process of its own, as the tune stage runs: a Ray driver keeps the cluster's auth
    # settings for the rest of its life, which would leak into later local searches here
    storage = tmp_path / "shared"  # stands in for NFS / s3://: every node sees it
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", SEARCH, cluster, str(storage), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(errors) == 3 and not any(errors)
    assert (storage / "search").is_dir()  # trial results went to the shared storage
    assert not (tmp_path / "ray_results").exists()


def test_a_cluster_needs_shared_storage(cluster):
    with pytest.raises(ValueError, match="shared storage"):
        run_search(
            *small_data(),
            space={"lr": SpaceEntry(type="choice", values=[0.01])},
            fixed=FIXED,
            num_samples=1,
            **settings(address=cluster, seed=0),
        )


def _stage(name: str, repo: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, f"stages/{name}.py"], cwd=repo, capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_featurize_and_tune_stages_on_two_nodes(cluster, tmp_path):
    """featurize on the cluster gives the local run's bytes, and its chunks ran on both nodes; the
    tune stage then searches on the same cluster (ray.address, ray.storage)."""
    repo = copy_repo(tmp_path / "repo")
    # 80 recordings (+ 48 augmented copies): 3 ge2e chunks of 32, the speech check on
    set_params(
        repo,
        {
            **TINY,
            "data.synthetic.utterances_per_speaker": 8,
            "data.libritts.cache_dir": str(tmp_path / "cache"),
            "features.n_jobs": 2,
        },
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    for name in ("download", "label", "featurize"):
        _stage(name, repo, env)
    local = _files(repo / "data/features")
    local_metrics = (repo / "metrics/featurize.json").read_bytes()

    set_params(repo, {"ray.address": cluster, "ray.storage": str(tmp_path / "shared")})
    on_cluster = _stage("featurize", repo, env)
    assert _files(repo / "data/features") == local  # the same bytes, file by file
    assert (repo / "metrics/featurize.json").read_bytes() == local_metrics
    [line] = [x for x in on_cluster.stdout.splitlines() if "Ray node(s)" in x]
    assert "on 2 Ray node(s)" in line, line  # the work landed on both nodes

    tuned = _stage("tune", repo, env)
    assert f"cluster {cluster}" in tuned.stdout
    assert (repo / "models/tuned.yaml").is_file() and (tmp_path / "shared" / "search").is_dir()
