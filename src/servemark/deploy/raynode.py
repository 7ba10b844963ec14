"""Start one Ray node (head or worker) that we own, and stop exactly what we started.

``ray stop`` kills every Ray process of the user on the machine, including other jobs' clusters
on a shared login or compute node. So ``up`` runs ``ray start --block`` in its own session and
records the PIDs (with creation times) of that process and everything it spawned; ``down`` stops
those, verified by creation time, and nothing else.

Flags chosen here because the defaults break on clusters: the node IP (not the first address
Ray guesses), a head port outside Ray's worker port range (default 10002–19999, see
``ray start --help``: ``--min-worker-port``/``--max-worker-port``), a short temp dir (Ray's
Unix socket paths must stay under ~107 characters) and the CPU count of our affinity mask
(Ray reads ``os.cpu_count()``, which ignores the cores a batch job was given).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from servemark.deploy.jobtools import RAY_WORKER_PORTS, free_port, node_ip, wait_for_ray
from servemark.deploy.local import stop_tree
from servemark.deploy.registry import state_dir
from servemark.errors import ConfigError, ServerStartError


def ray_dir() -> Path:
    return state_dir() / "ray"


@dataclass
class RayNode:
    """What ``up`` started: the ``ray start`` process and its descendants at the time."""

    name: str
    role: str  # head | worker
    address: str  # the head's GCS address, host:port
    node_ip: str
    temp_dir: str
    log_path: str
    pid: int
    started_at: float
    children: list[tuple[int, float]] = field(default_factory=list)
    own_temp: bool = True  # we chose the temp dir, so `down` removes it

    def alive(self) -> bool:
        try:
            p = psutil.Process(self.pid)
            return abs(p.create_time() - self.started_at) <= 1 and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def processes(self) -> list[psutil.Process]:
        """Our recorded processes that still run (a reused PID is someone else's: skipped)."""
        found = []
        for pid, created in [(self.pid, self.started_at), *self.children]:
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - created) <= 1:
                    found.append(p)
            except psutil.Error:
                continue
        return found


def _path(name: str) -> Path:
    return ray_dir() / f"{name}.json"


def save(node: RayNode) -> None:
    ray_dir().mkdir(parents=True, exist_ok=True)
    tmp = _path(node.name).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(node), indent=2))
    os.replace(tmp, _path(node.name))


def load_all() -> list[RayNode]:
    out = []
    for path in sorted(ray_dir().glob("*.json")) if ray_dir().exists() else []:
        try:
            data = json.loads(path.read_text())
            data["children"] = [tuple(c) for c in data.get("children", [])]
            out.append(RayNode(**data))
        except (json.JSONDecodeError, TypeError):
            continue
    return out


def get(name: str | None) -> RayNode:
    nodes = load_all()
    if name is None:
        if len(nodes) == 1:
            return nodes[0]
        listed = ", ".join(n.name for n in nodes) or "none"
        raise ConfigError(f"{len(nodes)} Ray nodes recorded (names: {listed})",
                          "name the one to stop: servemark ray down NAME" if nodes else
                          "start one with: servemark ray up --head")
    for n in nodes:
        if n.name == name:
            return n
    raise ConfigError(f"no Ray node named {name!r} was started here",
                      "see the names with: servemark ray status")


def check_port(port: int) -> int:
    lo, hi = RAY_WORKER_PORTS
    if lo <= port <= hi:
        raise ConfigError(f"port {port} is inside Ray's worker port range {lo}-{hi}",
                          "leave --port out (a free ephemeral port is chosen) or pick one above 20000")
    return port


def _head_port() -> int:
    return free_port()  # never inside Ray's worker port range


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT", "for example 10.0.0.1:6379")
    return host, int(port)


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def up(*, head: bool, address: str | None = None, name: str | None = None, port: int | None = None,
       node_ip_address: str | None = None, interface: str | None = None,
       hostname_suffix: str | None = None, num_cpus: int | None = None,
       num_gpus: int | None = None, temp_dir: str | None = None, num_nodes: int | None = None,
       timeout_s: float = 120.0, python: str = sys.executable) -> RayNode:
    """Start the node and return once it is up (and, with ``num_nodes``, the cluster has them)."""
    if head == (address is not None):
        raise ConfigError("give exactly one of --head or --address HOST:PORT",
                          "servemark ray up --head, then on other nodes: servemark ray up --address IP:PORT")
    role = "head" if head else "worker"
    name = name or role
    if any(n.name == name and n.alive() for n in load_all()):
        raise ConfigError(f"a Ray node named {name!r} is already running",
                          f"stop it with: servemark ray down {name}, or pass --name")
    try:
        ip = node_ip_address or node_ip(interface, hostname_suffix)
    except SystemExit as exc:  # jobtools' one-line reason (no such interface or host name)
        raise ConfigError(str(exc), "check --interface / --hostname-suffix, or give --node-ip") from None
    if head:
        port = check_port(port) if port else _head_port()
        address = f"{ip}:{port}"
    else:
        assert address is not None
        _split_address(address)
    temp = temp_dir or f"/tmp/smray-{secrets.token_hex(3)}"
    if len(temp) > 40:
        raise ConfigError(f"temp dir {temp!r} is too long for Ray's socket paths",
                          "use a short path such as /tmp/smray-1")
    cpus = num_cpus if num_cpus is not None else len(os.sched_getaffinity(0))
    if num_gpus is None:
        from servemark.deploy.devices import detect

        dev = detect("auto")
        num_gpus = len(dev.ids) if dev.kind == "gpu" else 0
    cmd = [python, "-m", "ray.scripts.scripts", "start", "--block", f"--node-ip-address={ip}",
           f"--temp-dir={temp}", f"--num-cpus={cpus}", f"--num-gpus={num_gpus}"]
    # fixed default ports (client server 10001, dashboard 8265, agent 52365) collide with any
    # other Ray on the node: take free ones
    cmd += [f"--dashboard-agent-listen-port={free_port()}"]
    if head:
        cmd += [f"--port={port}", "--head", "--include-dashboard=false",
                f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    else:
        cmd += [f"--address={address}"]
    ray_dir().mkdir(parents=True, exist_ok=True)
    log = ray_dir() / f"{name}.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    node = RayNode(name, role, address, ip, temp, str(log), proc.pid,
                   psutil.Process(proc.pid).create_time(), own_temp=temp_dir is None)
    save(node)  # recorded at once: `down` works even if the wait below fails
    try:
        _wait_started(proc, node, num_nodes, num_gpus, timeout_s)
    except BaseException:
        down(node, timeout_s=5)  # ray start ignores SIGTERM while it connects
        raise
    node.children = [(c.pid, c.create_time()) for c in _descendants(proc.pid)]
    save(node)
    return node


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _wait_started(proc: subprocess.Popen[bytes], node: RayNode, num_nodes: int | None,
                  num_gpus: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    host, port = _split_address(node.address)

    def check_alive() -> None:
        if proc.poll() is not None:
            tail = Path(node.log_path).read_text(errors="replace")[-600:].strip().splitlines()
            raise ServerStartError(f"ray start exited with {proc.returncode}: "
                                   f"{tail[-1] if tail else 'no output'}", f"see {node.log_path}")
        if time.monotonic() > deadline:
            raise ServerStartError(f"Ray {node.role} not up after {timeout_s:g} s",
                                   f"see {node.log_path}")

    # up once its raylet runs (and, on the head, the GCS port answers): by then the processes
    # that `down` must stop have been spawned and are recorded
    while not (any("raylet" in c.name() for c in _descendants(proc.pid))
               and (node.role == "worker" or _port_open(host, port))):
        check_alive()
        time.sleep(0.5)
    if num_nodes:
        try:
            wait_for_ray(node.address, num_nodes, 0.0, max(1.0, deadline - time.monotonic()))
        except TimeoutError as exc:
            raise ServerStartError(str(exc), "start the other nodes with: servemark ray up "
                                   f"--address {node.address}") from None
    check_alive()


def down(node: RayNode, timeout_s: float = 10.0) -> int:
    """Stop the recorded processes (and what they spawned since); returns how many were alive.
    SIGTERM first; what still runs after ``timeout_s`` (a busy raylet can take longer to shut
    down gracefully) gets SIGKILL."""
    procs = node.processes()
    for p in list(procs):
        try:
            procs += p.children(recursive=True)
        except psutil.Error:
            continue
    procs = list({p.pid: p for p in procs}.values())
    alive = len(procs)
    stop_tree(node.pid, timeout_s=timeout_s, extra=procs, create_time=node.started_at)
    if node.own_temp:
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    _path(node.name).unlink(missing_ok=True)
    return alive


def cluster_nodes(address: str) -> int:
    """How many nodes the Ray cluster at ``address`` has alive now."""
    return wait_for_ray(address, 0, 0.0, 30.0)[0]
