"""`servemark ray up/down` on a real Ray head: the node count, and afterwards no process of ours."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from servemark.deploy.raynode import RAY_WORKER_PORTS
from tests.conftest import SRC, need

pytestmark = pytest.mark.slow


def cli(*args: str, state: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SERVEMARK_STATE": str(state),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "servemark", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def mentioning(text: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(text in a for a in (p.info["cmdline"] or [])):
            found.append(p)
    return found


def test_head_up_count_down(tmp_path: Path) -> None:
    need(importlib.util.find_spec("ray") is not None, "ray not installed")
    state = tmp_path / "state"
    temp = f"/tmp/smrt{os.getpid()}"
    r = cli("ray", "up", "--head", "--num-cpus", "1", "--num-gpus", "0", "--temp-dir", temp,
            "--num-nodes", "1", "--wait", "--node-ip", "127.0.0.1", state=state)
    assert r.returncode == 0, r.stderr
    address = r.stdout.strip()
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1"
    assert not RAY_WORKER_PORTS[0] <= int(port) <= RAY_WORKER_PORTS[1]
    try:
        ours = mentioning(temp)
        assert any("raylet" in p.name() for p in ours) and any("gcs_server" in p.name() for p in ours)
        st = cli("ray", "status", state=state)
        assert st.returncode == 0 and "alive, cluster has 1 nodes" in st.stdout, st.stderr
        again = cli("ray", "up", "--head", "--num-gpus", "0", state=state)  # same name
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        d = cli("ray", "down", state=state)
    assert d.returncode == 0, d.stderr
    assert "stopped Ray head" in d.stderr
    assert not [p for p in mentioning(temp) if p.is_running()]
    assert not any((state / "ray").glob("*.json"))
    gone = cli("ray", "down", state=state)
    assert gone.returncode == 2 and "0 Ray nodes recorded" in gone.stderr


def test_bad_flags_start_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = cli("ray", "up", "--head", "--port", "12000", state=state)
    assert r.returncode == 2 and "worker port range" in r.stderr and "Traceback" not in r.stderr
    r = cli("ray", "up", "--head", "--address", "1.2.3.4:6379", state=state)
    assert r.returncode == 2 and "exactly one of" in r.stderr
    r = cli("ray", "up", "--address", "nohostport", state=state)
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    assert not any((state / "ray").glob("*.json")) if (state / "ray").exists() else True


def test_worker_without_head_fails_and_leaves_nothing(tmp_path: Path) -> None:
    """A worker pointed at a silent address: ray start gives up, `up` says so, nothing stays."""
    need(importlib.util.find_spec("ray") is not None, "ray not installed")
    from servemark.deploy.jobtools import free_port

    state = tmp_path / "state"
    temp = f"/tmp/smrw{os.getpid()}"
    r = cli("ray", "up", "--address", f"127.0.0.1:{free_port()}", "--num-gpus", "0",
            "--temp-dir", temp, "--timeout", "8", state=state)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "ray start exited" in r.stderr or "not up after" in r.stderr, r.stderr
    assert not [p for p in mentioning(temp) if p.is_running()]
    assert not any((state / "ray").glob("*.json"))


def test_sigterm_while_waiting_for_nodes_stops_the_head(tmp_path: Path) -> None:
    """`ray up --wait` stopped by SIGTERM (a batch system's stop) before the cluster formed:
    the head it started is stopped, its record removed, exit 143."""
    import signal
    import time

    need(importlib.util.find_spec("ray") is not None, "ray not installed")
    state = tmp_path / "state"
    temp = f"/tmp/smrs{os.getpid()}"
    env = {**os.environ, "SERVEMARK_STATE": str(state),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "servemark", "ray", "up", "--head",
                             "--num-cpus", "1", "--num-gpus", "0", "--temp-dir", temp,
                             "--num-nodes", "2", "--wait", "--timeout", "300",
                             "--node-ip", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not any("gcs_server" in p.name() for p in mentioning(temp)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.5)
        time.sleep(2)  # in the wait for a second node
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    time.sleep(1)
    assert not [p for p in mentioning(temp) if p.is_running()]
    assert not any((state / "ray").glob("*.json"))
