"""Detached-deployment registry with real processes: stop kills the whole tree, also the orphans
of a dead leader, and never a process whose PID was merely reused."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from servemark.deploy import registry
from servemark.errors import ConfigError


def spawn_tree() -> tuple[subprocess.Popen[bytes], psutil.Process]:
    """A leader in its own session with one child, like a vLLM server and its engine core."""
    proc = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True)
    leader = psutil.Process(proc.pid)
    deadline = time.monotonic() + 10
    while not leader.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, leader.children()[0]


def record_for(proc: subprocess.Popen[bytes], name: str, started_at: float | None = None) -> registry.DeploymentRecord:
    ct = psutil.Process(proc.pid).create_time()
    return registry.DeploymentRecord(
        name=name, model="m", served_model_name="m", run_dir="/tmp", command=["x"],
        created_at="2025-01-01T00:00:00+00:00",
        servers=[registry.ServerEntry(proc.pid, started_at if started_at is not None else ct,
                                      "http://127.0.0.1:1", "/tmp/log")],
    )


def gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_save_list_stop(tmp_path: Path) -> None:
    proc, child = spawn_tree()
    rec = record_for(proc, registry.unique_name("my model", tmp_path))
    assert rec.name == "my-model"
    registry.save(rec, tmp_path)
    assert registry.unique_name("my model", tmp_path) == "my-model-2"
    (listed,) = registry.load_all(tmp_path)
    assert listed.state() == "running" and listed.base_urls == ["http://127.0.0.1:1"]
    assert registry.stop(listed, tmp_path, timeout_s=5) == 1
    proc.wait(5)
    assert gone(child)
    assert registry.load_all(tmp_path) == []
    with pytest.raises(ConfigError, match="no deployment named 'my-model'"):
        registry.get("my-model", tmp_path)


def test_stop_kills_orphans_of_a_dead_leader(tmp_path: Path) -> None:
    proc, child = spawn_tree()
    rec = record_for(proc, "x")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert rec.state() == "dead" and not gone(child)  # the orphan is still there
    registry.stop(rec, tmp_path, timeout_s=5)
    time.sleep(0.2)
    assert gone(child)


def test_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    proc, child = spawn_tree()
    try:
        stale = record_for(proc, "stale", started_at=time.time() - 3600)  # "an older process"
        assert stale.state() == "dead"
        registry.stop(stale, tmp_path, timeout_s=2)
        assert proc.poll() is None and not gone(child)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
