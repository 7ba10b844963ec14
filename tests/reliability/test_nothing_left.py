"""Nothing left running: every way a `servemark serve` / `servemark run` ends (normal exit, error,
Ctrl-C, SIGTERM, SIGHUP) stops every server process it started, checked in the process table;
after a `kill -9` of servemark, `servemark cleanup` stops the leftovers and nothing else.

The "vLLM" here is a stand-in started through `--python` (tests.deploy_helpers.fake_vllm_python);
the real vLLM case is in test_cleanup_vllm.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from servemark.deploy.local import stop_tree
from tests.deploy_helpers import (
    cli_env,
    fake_vllm_python,
    leftovers,
    run,
    servemark,
    server_pids,
    wait_for,
)


@pytest.fixture
def fake_python(tmp_path: Path) -> Iterator[Path]:
    yield fake_vllm_python(tmp_path)
    # a failed test must not leave its servers behind either
    for entry in owned(tmp_path / "state"):
        server = entry["server"]
        stop_tree(server["pid"], timeout_s=5, create_time=server["started_at"])


def owned(state: Path) -> list[dict]:
    folder = state / "owned"
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []


def start_serve(tmp_path: Path, fake_python: Path) -> tuple[subprocess.Popen[str], list[int], dict]:
    env = cli_env(tmp_path)
    out = tmp_path / "serve"
    proc = servemark("serve", "fake-model", "--python", str(fake_python), "--device", "cpu",
                     "--served-model-name", "stub", "--ready-timeout", "60",
                     "--output-dir", str(out), env=env)
    url = proc.stdout.readline().strip()  # printed once ready
    assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() else url
    (pid,) = server_pids(out)
    wait_for(lambda: len(leftovers([pid], 0)) >= 2, 30, "the server and its engine child")
    time.sleep(1)  # into the serving loop (the URL is printed just before it)
    return proc, [pid], env


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM),
                                           (signal.SIGHUP, 128 + signal.SIGHUP),
                                           (signal.SIGINT, 0)])
def test_serve_stops_everything_on_signal(tmp_path: Path, fake_python: Path, sig: int,
                                          code: int) -> None:
    proc, pgids, _ = start_serve(tmp_path, fake_python)
    assert [e["server"]["pid"] for e in owned(tmp_path / "state")] == pgids
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert leftovers(pgids) == []
    assert owned(tmp_path / "state") == []  # the owner removed its record after the stop


def _spec(tmp_path: Path, fake_python: Path, **bench: object) -> Path:
    spec = {"name": "t", "deploy": {"model": "fake-model", "python": str(fake_python),
                                    "device": "cpu", "served_model_name": "stub",
                                    "ready_timeout": 60},
            "bench": {"concurrency": [2], "input_len": 8, "output_len": 32, "server_metrics": False,
                      "output_dir": str(tmp_path / "run"), **bench}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_normal_exit_and_error_leave_nothing(tmp_path: Path, fake_python: Path) -> None:
    env = cli_env(tmp_path)
    ok = run("run", str(_spec(tmp_path, fake_python, num_requests=4)), env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    pgids = server_pids(tmp_path / "run")
    assert leftovers(pgids) == []
    # an error after the deployment is up (the bench section names a model nobody serves)
    bad = run("run", str(_spec(tmp_path, fake_python, num_requests=4, model="nope",
                               output_dir=str(tmp_path / "run2"))), env=env, timeout=120)
    assert bad.returncode != 0 and "nope" in bad.stderr, bad.stderr
    assert leftovers(server_pids(tmp_path / "run2")) == []
    assert owned(tmp_path / "state") == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_run_signal_mid_benchmark_stops_servers(tmp_path: Path, fake_python: Path,
                                                sig: int) -> None:
    env = cli_env(tmp_path)
    proc = servemark("run", str(_spec(tmp_path, fake_python, num_requests=400)), env=env)
    jsonl = tmp_path / "run" / "requests.jsonl"
    wait_for(lambda: jsonl.exists() and len(jsonl.read_text().splitlines()) >= 3, 60,
             "the first requests")
    pgids = server_pids(tmp_path / "run")
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0, stderr
    assert leftovers(pgids) == []
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] != "complete"  # and it says so: partial results kept
    assert owned(tmp_path / "state") == []


def test_kill9_then_cleanup_stops_leftovers_only(tmp_path: Path, fake_python: Path) -> None:
    proc, pgids, env = start_serve(tmp_path, fake_python)
    # a stranger whose PID a stale record names (as if the PID had been reused): never signalled
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        folder = tmp_path / "state" / "owned"
        (folder / f"1-{stranger.pid}.json").write_text(json.dumps({
            "server": {"pid": stranger.pid, "started_at": time.time() - 3600,
                       "base_url": "http://x", "log_path": "x"},
            "owner_pid": 1, "owner_started_at": 0.0, "kind": "vllm"}))
        proc.kill()
        proc.wait(10)
        time.sleep(1)
        assert len(leftovers(pgids, 0)) >= 2  # kill -9 left the server and its child running
        listed = run("cleanup", "--dry-run", env=env, timeout=60)
        assert listed.returncode == 0 and f"pid {pgids[0]}" in listed.stdout, listed.stderr
        assert len(leftovers(pgids, 0)) >= 2
        res = run("cleanup", env=env, timeout=60)
        assert res.returncode == 0, res.stderr
        assert leftovers(pgids) == []
        assert stranger.poll() is None and psutil.Process(stranger.pid).is_running()
        assert owned(tmp_path / "state") == []
        again = run("cleanup", env=env, timeout=60)
        assert "nothing left running" in again.stderr
    finally:
        stranger.kill()
        stranger.wait()
        for g in pgids:
            for p in leftovers([g], 0):
                os.kill(p.pid, signal.SIGKILL)


def test_second_signal_during_teardown_skips_no_replica(tmp_path: Path, fake_python: Path) -> None:
    """Ctrl-C, then SIGTERM while the first of two slow-to-stop replicas is stopping: the
    second signal waits until every replica is stopped."""
    env = cli_env(tmp_path, FAKE_VLLM_STOP_S="1.5")
    out = tmp_path / "serve"
    proc = servemark("serve", "fake-model", "--python", str(fake_python), "--device", "cpu",
                     "--replicas", "2", "--served-model-name", "stub", "--ready-timeout", "60",
                     "--output-dir", str(out), env=env)
    urls = [proc.stdout.readline().strip() for _ in range(2)]
    assert all(u.startswith("http://127.0.0.1:") for u in urls), proc.stderr.read()
    pgids = server_pids(out)
    assert len(pgids) == 2
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # replica 0 is stopping (it takes 1.5 s)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130, 143), stderr
    assert leftovers(pgids) == [], stderr
    assert owned(tmp_path / "state") == []
