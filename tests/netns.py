"""Test hosts in network namespaces and Ray processes for multi-host tests.

A namespace gets a veth pair on a private /24; `nsenter --net` enters it (``ip netns exec``
fails on this sandbox's cgroup mount). Shared by the cluster and Ray-actor tests."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SRC, need


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
