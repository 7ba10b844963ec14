"""A real two-node Ray cluster: the head in this network namespace, a worker in a second one
(veth pair on a private /24), joined and counted with the same ``jobtools wait-ray`` the job
scripts run. vLLM's Ray executor refuses the CPU platform, so the multi-node server itself is
covered by the render tests; this checks the part the script waits on."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from servemark.deploy.jobtools import free_port
from servemark.deploy.local import stop_tree
from tests.conftest import SRC, need

pytestmark = pytest.mark.slow


class NetNS:
    """A namespace ``name`` reachable at ``peer_ip`` from ``host_ip`` on this side."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randint(0, 99)}"
        self.name, self.host_if, self.ns_if = f"sm{tag}", f"smh{tag}", f"smn{tag}"
        net = random.randint(16, 250)
        self.host_ip, self.peer_ip = f"10.213.{net}.1", f"10.213.{net}.2"

    def up(self) -> NetNS:
        cmds = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.name],
            ["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            [*self.enter(), "ip", "addr", "add", f"{self.peer_ip}/24", "dev", self.ns_if],
            [*self.enter(), "ip", "link", "set", self.ns_if, "up"],
            [*self.enter(), "ip", "link", "set", "lo", "up"],
        ]
        for cmd in cmds:
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                self.down()
                raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return self

    def enter(self) -> list[str]:
        # `ip netns exec` fails on this sandbox's cgroup mount; nsenter only switches the network
        return ["nsenter", f"--net=/var/run/netns/{self.name}"]

    def down(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)


@pytest.fixture
def netns() -> Iterator[NetNS]:
    need(os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nsenter") is not None,
         "network namespaces need root, iproute2 and nsenter")
    try:
        ns = NetNS().up()
    except RuntimeError as exc:
        need(False, f"cannot create a network namespace here: {exc}")
        raise
    yield ns
    ns.down()


def ray_start(prefix: list[str], args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "wb") as fh:
        return subprocess.Popen([*prefix, sys.executable, "-m", "ray.scripts.scripts", "start",
                                 "--block", *args], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def wait_ray(address: str, nodes: int, gpus: int, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "servemark.deploy.jobtools", "wait-ray",
                           "--address", address, "--nodes", str(nodes), "--gpus", str(gpus),
                           "--timeout", str(timeout)], capture_output=True, text=True, env=env,
                          timeout=timeout + 60, check=False)


def test_two_node_ray_cluster_forms(netns: NetNS, tmp_path: Path) -> None:
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
