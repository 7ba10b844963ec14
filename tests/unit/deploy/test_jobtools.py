"""jobtools on a node: where the node IP comes from (interface, high-speed network host name)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from servemark.deploy import jobtools
from tests.conftest import SRC


def test_node_ip_from_high_speed_network_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The short host name plus the suffix, resolved; of several addresses the lowest (as the
    sites' `getent hosts $(hostname).hsn... | sort | head -1`)."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def fake(name: str, *args: object, **kw: object) -> list:
        asked.append(name)
        if name == "x4000c0s0b0n0.hsn.cm.aurora.alcf.anl.gov":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0))
                    for ip in ("10.115.9.27", "10.115.10.3", "10.115.9.200")]
        return real(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "gethostname", lambda: "x4000c0s0b0n0.hostmgmt.example")
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert jobtools.node_ip(hostname_suffix=".hsn.cm.aurora.alcf.anl.gov") == "10.115.9.27"
    assert asked == ["x4000c0s0b0n0.hsn.cm.aurora.alcf.anl.gov"]
    # the suffix wins over an interface (the spec allows only one of them anyway)
    assert jobtools.node_ip("no-such-if0", ".hsn.cm.aurora.alcf.anl.gov") == "10.115.9.27"


def test_unresolvable_host_name_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "servemark.deploy.jobtools", "node-ip",
                        "--hostname-suffix", ".no-such-network.invalid"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, check=False,
                       timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith(".no-such-network.invalid does not resolve to an IPv4 address")
    assert len(r.stderr.strip().splitlines()) == 1


def test_free_port_is_outside_rays_worker_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A site whose ephemeral range overlaps 10002-19999: those ports are skipped."""
    ports = iter([12345, 19999, 10002, 40001])

    class FakeSocket:
        def __init__(self, *a: object) -> None:
            self.port = next(ports)

        def __enter__(self) -> FakeSocket:
            return self

        def __exit__(self, *a: object) -> None:
            return None

        def bind(self, addr: object) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("0.0.0.0", self.port)

    monkeypatch.setattr(socket, "socket", FakeSocket)
    assert jobtools.free_port() == 40001


def test_ray_up_with_unresolvable_suffix_starts_nothing(tmp_path: object) -> None:
    r = subprocess.run([sys.executable, "-m", "servemark", "ray", "up", "--head", "--num-gpus", "0",
                        "--hostname-suffix", ".no-such-network.invalid"],
                       capture_output=True, text=True, check=False, timeout=60,
                       env={"PYTHONPATH": str(SRC), "SERVEMARK_STATE": str(tmp_path)})
    assert r.returncode == 2 and "does not resolve" in r.stderr and "Traceback" not in r.stderr
