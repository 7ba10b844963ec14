"""Small helpers a rendered job script runs on the compute nodes (``python -m servemark.deploy.jobtools``):
a free port, the node's IP, waiting for a Ray cluster to reach N nodes and G GPUs, waiting for HTTP.

Standard library only except ``wait-ray`` (imports ray), so they start fast on any node.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

RAY_WORKER_PORTS = (10002, 19999)  # Ray's default --min-worker-port / --max-worker-port


def free_port() -> int:
    """A port the OS reports free now, from the ephemeral range, never inside Ray's worker port
    range (the ephemeral range normally lies above 32768; loop in case a site changed it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        if not RAY_WORKER_PORTS[0] <= port <= RAY_WORKER_PORTS[1]:
            return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (see ``free_port``)."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def host_ip(name: str) -> str:
    """The lowest IPv4 address ``name`` resolves to (as the sites' scripts do with
    ``getent hosts NAME | sort | head -1``)."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise SystemExit(f"host name {name} does not resolve to an IPv4 address") from None
    addrs = sorted({str(i[4][0]) for i in infos}, key=lambda a: tuple(int(x) for x in a.split(".")))
    if not addrs:
        raise SystemExit(f"host name {name} does not resolve to an IPv4 address")
    return addrs[0]


def node_ip(interface: str | None = None, hostname_suffix: str | None = None) -> str:
    """The IPv4 address of an interface; or of this node's short host name plus a suffix (the
    high-speed network's name, e.g. ``x1c0s0b0n0.hsn.cm.aurora.alcf.anl.gov``); or the address
    used to reach other hosts."""
    if hostname_suffix:
        return host_ip(socket.gethostname().split(".")[0] + hostname_suffix)
    if interface:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", interface],
                             capture_output=True, text=True, check=False).stdout.split()
        if "inet" in out:
            return out[out.index("inet") + 1].split("/")[0]
        raise SystemExit(f"no IPv4 address on interface {interface}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing address
            return str(s.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def count_ray_resources(nodes: Iterable[Mapping[str, Any]]) -> tuple[int, float]:
    """(alive nodes, GPUs on them) from ``ray.nodes()`` entries."""
    alive = [n for n in nodes if n.get("Alive") or n.get("alive")]
    gpus = sum(float(n.get("Resources", {}).get("GPU", 0.0)) for n in alive)
    return len(alive), gpus


def wait_for_ray(address: str, want_nodes: int, want_gpus: float, timeout_s: float,
                 on_update: Callable[[int, float], None] | None = None) -> tuple[int, float]:
    """Block until the Ray cluster at ``address`` has the nodes and GPUs; TimeoutError otherwise."""
    import ray

    from servemark.rayinit import init_keeping_signals

    deadline = time.monotonic() + timeout_s
    host, _, port = address.rpartition(":")
    while True:  # ray.init blocks for minutes on a silent address: probe the GCS port first
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            init_keeping_signals(ray, address=address, log_to_driver=False,
                                 logging_level=logging.ERROR)
            break
        except (ConnectionError, RuntimeError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Ray head answers at {address}") from None
            time.sleep(2)
    try:
        last = (-1, -1.0)
        while True:
            seen = count_ray_resources(ray.nodes())
            if seen != last and on_update is not None:
                on_update(*seen)
            last = seen
            if seen[0] >= want_nodes and seen[1] >= want_gpus:
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray has {seen[0]}/{want_nodes} nodes and "
                                   f"{seen[1]:g}/{want_gpus:g} GPUs after {timeout_s:g} s")
            time.sleep(1)
    finally:
        ray.shutdown()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_http(url: str, timeout_s: float, watch_pid: int | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when the watched launcher process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (cluster URL)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if not _alive(watch_pid):
            raise RuntimeError(f"the server process (pid {watch_pid}) exited before {url} answered")
        time.sleep(2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m servemark.deploy.jobtools")
    sub = p.add_subparsers(dest="cmd", required=True)
    fp = sub.add_parser("free-port")
    fp.add_argument("--count", type=int, default=1, help="this many distinct ports, one line")
    ip = sub.add_parser("node-ip")
    ip.add_argument("--interface")
    ip.add_argument("--hostname-suffix")
    r = sub.add_parser("wait-ray")
    r.add_argument("--address", required=True)
    r.add_argument("--nodes", type=int, required=True)
    r.add_argument("--gpus", type=float, default=0.0)
    r.add_argument("--timeout", type=float, default=600.0)
    h = sub.add_parser("wait-http")
    h.add_argument("url")
    h.add_argument("--timeout", type=float, default=1800.0)
    h.add_argument("--watch-pid", type=int)
    sub.add_parser("vllm-pythonpath", help="PYTHONPATH for vLLM processes (servemark's start-up hook first)")
    a = p.parse_args(argv)
    try:
        if a.cmd == "free-port":
            print(" ".join(str(p) for p in free_ports(a.count)))
        elif a.cmd == "vllm-pythonpath":
            from servemark.deploy.vllmenv import with_vllm_site

            print(with_vllm_site(os.environ)["PYTHONPATH"])
        elif a.cmd == "node-ip":
            print(node_ip(a.interface, a.hostname_suffix))
        elif a.cmd == "wait-ray":
            def show(n: int, g: float) -> None:
                print(f"servemark: ray has {n}/{a.nodes} nodes, {g:g}/{a.gpus:g} GPUs", flush=True)

            wait_for_ray(a.address, a.nodes, a.gpus, a.timeout, show)
        else:
            wait_for_http(a.url, a.timeout, a.watch_pid)
    except (TimeoutError, RuntimeError) as exc:
        print(f"servemark: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
