"""--ray-address: client workers as Ray actors on a real two-node Ray cluster (the head here, a
worker node in a second network namespace), one central schedule, exact merged totals."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from servemark.deploy.jobtools import free_port
from servemark.deploy.local import stop_tree
from servemark.store.rundir import load_records
from servemark.stub.process import StubProcess
from tests.conftest import SRC, need
from tests.netns import NetNS, netns, ray_start, wait_ray  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

N = 120
RATE = 100.0


def test_bench_on_two_ray_nodes(netns: NetNS, tmp_path: Path,  # noqa: F811 (fixture)
                                monkeypatch: pytest.MonkeyPatch) -> None:
    need(importlib.util.find_spec("ray") is not None, "ray not installed")
    # the actors' processes (spawned by each node's raylet) import this checkout's servemark
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    port = free_port()
    address = f"{netns.host_ip}:{port}"
    short = f"/tmp/ray-sw{os.getpid()}"  # Ray's socket paths must stay short
    procs: list[subprocess.Popen[bytes]] = []
    stub = StubProcess("--host", "0.0.0.0", "--ttft", "0.005", "--itl", "0.002")  # both nodes reach it
    try:
        procs.append(ray_start([], ["--head", f"--node-ip-address={netns.host_ip}", f"--port={port}",
                                    f"--temp-dir={short}h", "--include-dashboard=false",
                                    "--num-cpus=1", "--num-gpus=0"], tmp_path / "head.log"))
        procs.append(ray_start(netns.enter(), [f"--address={address}",
                                               f"--node-ip-address={netns.peer_ip}",
                                               f"--temp-dir={short}w", "--num-cpus=1",
                                               "--num-gpus=0"], tmp_path / "worker.log"))
        r = wait_ray(address, nodes=2, gpus=0, timeout=90)
        assert r.returncode == 0, r.stderr
        run = tmp_path / "run"
        bench = subprocess.run(
            [sys.executable, "-m", "servemark", "bench", "--base-url",
             f"http://{netns.host_ip}:{stub.port}", "--request-rate", str(RATE), "--arrival",
             "constant", "--num-requests", str(N), "--input-len", "16", "--output-len", "8",
             "--workers", "2", "--ray-address", address, "--output-dir", str(run), "--json",
             "--no-server-metrics"],
            capture_output=True, text=True, timeout=150, check=False)
        assert bench.returncode == 0, bench.stderr[-3000:]
        point = json.loads(bench.stdout)["points"][0]
        recs = load_records(run).records
    finally:
        stub.stop()
        with ThreadPoolExecutor() as pool:  # both nodes at once: Ray takes a while to stop
            list(pool.map(lambda p: stop_tree(p.pid, timeout_s=15), procs))
    # exact totals: every request of the schedule sent once, merged from both actors
    assert point["completed"] == N and point["failed"] == 0 and len(recs) == N
    assert sorted(r.request_id for r in recs) == sorted({r.request_id for r in recs})
    # sent from both nodes: the records name each actor and its node's IP
    nodes = {(r.worker or "").rpartition("@")[2] for r in recs}
    assert nodes == {netns.host_ip, netns.peer_ip}, nodes
    # one central schedule: the union of both nodes' intended send times is the constant one
    starts = sorted(r.scheduled_s for r in recs if r.scheduled_s is not None)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == N and all(g == pytest.approx(1 / RATE, abs=1e-9) for g in gaps)
    assert point["fidelity"]["schedule_lag_s"]["p50"] < 0.02
    assert point["fidelity"]["loop_lag_p99_s"] is not None  # both actors timed their loops
    assert point["output_tokens_total"] == sum(r.output_tokens or 0 for r in recs) == 8 * N
    left = [p for p in psutil.process_iter(["cmdline"])
            if any(short in a for a in (p.info["cmdline"] or []))]
    assert not left
    for suffix in ("h", "w"):
        shutil.rmtree(short + suffix, ignore_errors=True)
