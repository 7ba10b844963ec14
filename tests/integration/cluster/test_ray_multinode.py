"""A real two-node Ray cluster: the head in this network namespace, a worker in a second one
(veth pair on a private /24), joined and counted with the same ``jobtools wait-ray`` the job
scripts run. The multi-node vLLM server on such a cluster is test_slurm_multinode.py."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from servemark.deploy.jobtools import free_port
from servemark.deploy.local import stop_tree
from tests.conftest import need
from tests.netns import NetNS, ray_start, wait_ray

pytestmark = pytest.mark.slow


def test_two_node_ray_cluster_forms(netns: NetNS, tmp_path: Path) -> None:  # noqa: F811
    need(importlib.util.find_spec("ray") is not None, "ray not installed")
    port = free_port()  # ephemeral range: clear of Ray's worker ports 10002-19999
    address = f"{netns.host_ip}:{port}"
    short = f"/tmp/ray-sm{os.getpid()}"  # Ray's socket paths must stay short
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(ray_start([], ["--head", f"--node-ip-address={netns.host_ip}",
                                    f"--port={port}", f"--temp-dir={short}h",
                                    "--include-dashboard=false", "--num-cpus=1", "--num-gpus=1"],
                               tmp_path / "head.log"))
        procs.append(ray_start(netns.enter(), [f"--address={address}",
                                               f"--node-ip-address={netns.peer_ip}",
                                               f"--temp-dir={short}w", "--num-cpus=1",
                                               "--num-gpus=1"], tmp_path / "worker.log"))
        r = wait_ray(address, nodes=2, gpus=2, timeout=120)
        logs = "".join((tmp_path / f).read_text()[-2000:] for f in ("head.log", "worker.log"))
        assert r.returncode == 0, r.stderr + logs
        assert "ray has 2/2 nodes, 2/2 GPUs" in r.stdout
        # asking for more than exists fails within its timeout, with a message
        r = wait_ray(address, nodes=3, gpus=3, timeout=8)
        assert r.returncode == 1 and "2/3 nodes" in r.stderr
    finally:
        with ThreadPoolExecutor() as pool:  # both nodes at once: Ray takes a while to stop
            list(pool.map(lambda p: stop_tree(p.pid, timeout_s=15), procs))
    left = [p for p in psutil.process_iter(["cmdline"])
            if any(short in a for a in (p.info["cmdline"] or []))]
    assert not left
    for suffix in ("h", "w"):
        shutil.rmtree(short + suffix, ignore_errors=True)


def test_wait_ray_gives_up_on_a_silent_address() -> None:
    need(importlib.util.find_spec("ray") is not None, "ray not installed")
    r = wait_ray(f"127.0.0.1:{free_port()}", nodes=1, gpus=0, timeout=4)
    assert r.returncode == 1 and "no Ray head answers" in r.stderr
