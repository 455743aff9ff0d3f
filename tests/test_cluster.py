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
import time
from pathlib import Path

import pytest

import voicegender
from voicegender.tuning import run_search
from test_tuning import FIXED, small_data
from voicegender.params import SpaceEntry

pytestmark = pytest.mark.slow  # starts a Ray cluster and runs searches on it

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Unix socket paths <= 107 bytes
    src = str(Path(voicegender.__file__).resolve().parents[1])
    # Ray >= 2.59 clusters require a token: give the head and this driver the same one
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    # --block keeps `ray start` in the foreground, in its own process group: stopping that
    # group stops this cluster only (`ray stop` would stop every Ray on the machine)
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--temp-dir",
            temp,
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if head.poll() is not None:
                pytest.fail("ray start failed:\n" + head.stdout.read())
            time.sleep(0.5)
    else:
        os.killpg(head.pid, signal.SIGTERM)
        pytest.fail("ray start did not open its port within 60 s")
    try:
        yield address
    finally:
        os.killpg(head.pid, signal.SIGINT)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


SEARCH = """
import json, sys
sys.path.insert(0, sys.argv[3])
from test_tuning import FIXED, small_data
from voicegender.params import SpaceEntry
from voicegender.tuning import run_search

space = {"lr": SpaceEntry(type="loguniform", low=1.0e-3, high=1.0e-1),
         "batch_size": SpaceEntry(type="choice", values=[16, 32])}
result = run_search(*small_data(), space=space, fixed=FIXED, num_samples=3, address=sys.argv[1],
                    storage_path=sys.argv[2], seed=1, log=lambda m: None)
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
            address=cluster,
        )
