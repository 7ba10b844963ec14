"""What servemark started, on disk, so that it can be stopped from another shell or after a crash.

Detached deployments: one JSON file each under ``deployments/`` (``servemark ps``, ``stop``).
Owned processes: while a servemark process runs a server it will stop itself, one JSON file
per server under ``owned/`` names that server and its owner; the owner removes it after the
stop. A file whose owner is dead (``kill -9``, OOM, a lost terminal) marks a leftover that
``servemark cleanup`` stops. Every record keeps PIDs with their creation times: a PID that was
reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from platformdirs import user_state_dir

from servemark.deploy.local import group_members, stop_tree
from servemark.errors import ConfigError


def state_dir() -> Path:
    """``SERVEMARK_STATE`` if set (``SERVEMARK_STATE_DIR``, its older spelling, too), else the
    platform's user state directory."""
    return Path(os.environ.get("SERVEMARK_STATE") or os.environ.get("SERVEMARK_STATE_DIR")
                or user_state_dir("servemark"))


def registry_dir() -> Path:
    return state_dir() / "deployments"


def owned_dir() -> Path:
    return state_dir() / "owned"


@dataclass
class ServerEntry:
    """One server process of a deployment."""

    pid: int
    started_at: float  # epoch seconds, to recognise the PID later
    base_url: str
    log_path: str
    devices: dict[str, str] = field(default_factory=dict)

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited (or its PID now belongs to someone else)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started_at) > 2 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def leftovers(self) -> list[psutil.Process]:
        """Processes of this server's group still alive (its own, or orphans of a dead leader)."""
        return [] if self._reused() else group_members(self.pid)

    def _reused(self) -> bool:
        """The PID now belongs to a process that is not ours (then our group is gone too)."""
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started_at) > 2
        except psutil.Error:
            return False


@dataclass
class DeploymentRecord:
    """A detached deployment: name, model, command and its servers."""

    name: str
    model: str
    served_model_name: str
    run_dir: str
    command: list[str]
    created_at: str
    servers: list[ServerEntry]

    @property
    def base_urls(self) -> list[str]:
        return [s.base_url for s in self.servers]

    def state(self) -> str:
        """``running`` (all servers alive), ``degraded`` (some) or ``dead`` (none)."""
        alive = sum(1 for s in self.servers if s.process() is not None)
        if alive == len(self.servers):
            return "running"
        return "degraded" if alive else "dead"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentRecord:
        servers = [ServerEntry(**s) for s in data.get("servers", [])]
        return cls(**{**data, "servers": servers})


def _path(name: str, root: Path | None = None) -> Path:
    return (root or registry_dir()) / f"{name}.json"


def unique_name(base: str, root: Path | None = None) -> str:
    """A deployment name derived from ``base`` that is not taken yet."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:40] or "deployment"
    name, i = slug, 1
    while _path(name, root).exists():
        i += 1
        name = f"{slug}-{i}"
    return name


def save(record: DeploymentRecord, root: Path | None = None) -> Path:
    path = _path(record.name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2))
    os.replace(tmp, path)
    return path


def load_all(root: Path | None = None) -> list[DeploymentRecord]:
    folder = root or registry_dir()
    out = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            out.append(DeploymentRecord.from_dict(json.loads(path.read_text())))
        except (json.JSONDecodeError, TypeError, KeyError):
            continue  # a corrupt entry must not block listing the others
    return out


def get(name: str, root: Path | None = None) -> DeploymentRecord:
    path = _path(name, root)
    if not path.exists():
        names = ", ".join(r.name for r in load_all(root)) or "none"
        raise ConfigError(f"no deployment named {name!r} (running: {names})",
                          "see `servemark ps`")
    return DeploymentRecord.from_dict(json.loads(path.read_text()))


def stop(record: DeploymentRecord, root: Path | None = None, timeout_s: float = 20.0) -> int:
    """Stop every process of a deployment and forget it; returns how many servers were alive."""
    alive = 0
    for server in record.servers:
        if server.process() is not None:
            alive += 1
        stop_tree(server.pid, timeout_s=timeout_s, extra=server.leftovers(),
                  create_time=server.started_at)
    _path(record.name, root).unlink(missing_ok=True)
    return alive


# --- processes a live servemark owns (stopped by it; by `servemark cleanup` if it crashed) ---


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def me() -> tuple[int, float]:
    """This process: its PID and creation time, as records name an owner."""
    pid = os.getpid()
    return pid, _create_time(pid)


def process_alive(pid: int, started_at: float) -> bool:
    """Whether ``pid`` still is the process that started at ``started_at`` (not a reuse)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started_at) <= 2 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class OwnedProcess:
    """A server started by the servemark process ``owner_pid``, which will stop it itself."""

    server: ServerEntry
    owner_pid: int
    owner_started_at: float
    kind: str = "vllm"

    def owner_alive(self) -> bool:
        return process_alive(self.owner_pid, self.owner_started_at)

    @property
    def path(self) -> Path:
        return owned_dir() / f"{self.owner_pid}-{self.server.pid}.json"


def own(server: ServerEntry, kind: str = "vllm") -> OwnedProcess:
    """Record, durably, that this process started ``server`` (before it is waited on)."""
    me = os.getpid()
    entry = OwnedProcess(server, me, _create_time(me), kind)
    owned_dir().mkdir(parents=True, exist_ok=True)
    tmp = entry.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(entry), indent=2))
    os.replace(tmp, entry.path)
    return entry


def disown(pid: int) -> None:
    """The server ``pid`` was stopped (or handed to a detached deployment): forget it."""
    (owned_dir() / f"{os.getpid()}-{pid}.json").unlink(missing_ok=True)


def load_owned() -> list[OwnedProcess]:
    folder = owned_dir()
    out = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            data = json.loads(path.read_text())
            out.append(OwnedProcess(**{**data, "server": ServerEntry(**data["server"])}))
        except (json.JSONDecodeError, TypeError, KeyError):
            continue
    return out


def leftovers() -> list[OwnedProcess]:
    """Servers whose servemark is gone (it was killed before it could stop them)."""
    return [e for e in load_owned() if not e.owner_alive()]


def stop_leftover(entry: OwnedProcess, timeout_s: float = 20.0) -> int:
    """Stop a leftover's whole process tree and forget it; returns how many processes ran."""
    procs = entry.server.leftovers()
    live = entry.server.process()
    if live is not None:
        with contextlib.suppress(psutil.Error):
            procs += live.children(recursive=True)
    procs = list({p.pid: p for p in procs}.values())
    stop_tree(entry.server.pid, timeout_s=timeout_s, extra=procs,
              create_time=entry.server.started_at)
    entry.path.unlink(missing_ok=True)
    return len(procs)
