"""A deployment: K vLLM servers of one model on one node, on distinct ports and disjoint devices.

All replicas start at once and are polled together (a replica that dies while the others load
fails the deployment at once); every exit path stops every process of every replica.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from servemark.deploy import registry
from servemark.deploy.devices import Devices, ReplicaDevices, detect, parallel_sizes, plan_replicas
from servemark.deploy.local import VllmServer, free_port, signals_deferred
from servemark.deploy.readiness import LoadProgress
from servemark.errors import ServerStartError
from servemark.experiment import SECRET_WORDS, DeployConfig
from servemark.store.provenance import REDACTED, SECRET_FLAGS, redact_argv, redact_text

ReplicaProgress = Callable[[int, LoadProgress], None]


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``--flag V`` or ``--flag=V`` in a vLLM argument list."""
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name == flag:
            return value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return None


def secret_values(vllm_args: list[str], env: dict[str, str]) -> list[str]:
    """Values that must not survive in a log: secret flags' values and secret-looking env."""
    values = [v for flag in SECRET_FLAGS if (v := flag_value(vllm_args, flag))]
    values += [v for k, v in env.items() if any(w in k.upper() for w in SECRET_WORDS)]
    return [v for v in values if len(v) >= 4]


def scrub_file(path: Path, secrets: list[str]) -> None:
    """Replace secrets (these and those in our environment) in a finished log file."""
    if not path.exists():
        return
    text = path.read_text(errors="replace")
    clean = redact_text(text)
    for value in secrets:
        clean = clean.replace(value, REDACTED)
    if clean != text:
        path.write_text(clean)


class Deployment:
    """The servers of one deployment. Use as a context manager; ``start()`` returns when all serve."""

    def __init__(self, config: DeployConfig, run_dir: Path, devices: Devices | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self._devices = devices
        self.servers: list[VllmServer] = []
        self.plan: list[ReplicaDevices] = []

    @property
    def served_model_name(self) -> str:
        return (self.config.served_model_name
                or flag_value(self.config.vllm_args, "--served-model-name") or self.config.model)

    @property
    def base_urls(self) -> list[str]:
        return [s.base_url for s in self.servers]

    def _plan(self) -> list[ReplicaDevices]:
        cfg = self.config
        if cfg.replicas == 1 and cfg.cores_per_replica is None:
            return [ReplicaDevices(0, (), {})]  # one server: leave device choice to vLLM
        tp, pp = parallel_sizes(cfg.vllm_args)
        devices = self._devices or detect(cfg.device)
        return plan_replicas(cfg.replicas, devices, tp * pp, cfg.cores_per_replica)

    def _make_servers(self) -> None:
        cfg = self.config
        self.plan = self._plan()
        taken: set[int] = set()
        for rep in self.plan:
            if cfg.port is not None:
                port = cfg.port + rep.index
            else:
                port = free_port(cfg.host)
                while port in taken:
                    port = free_port(cfg.host)
            taken.add(port)
            name = "server.log" if len(self.plan) == 1 else f"server-{rep.index}.log"
            self.servers.append(VllmServer(
                cfg.model, port=port, host=cfg.host, served_model_name=cfg.served_model_name,
                extra_args=cfg.vllm_args, env={**cfg.env, **rep.env},
                log_path=self.run_dir / name, python=cfg.python or sys.executable,
            ))

    def start(self, on_progress: ReplicaProgress | None = None) -> Deployment:
        """Launch every replica and wait until all are ready (``ready_timeout`` for the whole)."""
        self._make_servers()
        try:
            for server in self.servers:
                server.launch()
            deadline = time.monotonic() + self.config.ready_timeout
            pending = set(range(len(self.servers)))
            while pending:
                for i in sorted(pending):
                    cb = None if on_progress is None else (lambda u, i=i: on_progress(i, u))
                    try:
                        if self.servers[i].poll_ready(cb):
                            pending.discard(i)
                    except ServerStartError as exc:
                        raise self._label(exc, i) from None
                if pending and time.monotonic() > deadline:
                    i = min(pending)
                    raise self._label(self.servers[i].not_ready_error(self.config.ready_timeout), i)
                if pending:
                    time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def _label(self, exc: ServerStartError, index: int) -> ServerStartError:
        if len(self.servers) == 1:
            return exc
        return ServerStartError(f"replica {index}: {exc.message}", exc.hint, log_tail=exc.log_tail)

    def dead(self) -> list[int]:
        """Indices of replicas whose server process has exited."""
        return [i for i, s in enumerate(self.servers) if not s.alive()]

    def failure(self, index: int) -> ServerStartError:
        """The error describing replica ``index`` having died while serving."""
        return self._label(self.servers[index].died_error(), index)

    def stop(self) -> None:
        """Stop every replica's whole process tree (idempotent), then scrub secrets from logs.
        Signals wait until every replica is stopped (a second Ctrl-C cannot skip one)."""
        with signals_deferred():
            for server in self.servers:
                with contextlib.suppress(Exception):
                    server.stop()
        secrets = secret_values(self.config.vllm_args, self.config.env)
        for server in self.servers:
            if server.log_path is not None:
                with contextlib.suppress(OSError):
                    scrub_file(server.log_path, secrets)

    def detach(self, name: str | None = None) -> registry.DeploymentRecord:
        """Leave the servers running and record them so ``servemark stop`` can stop them later."""
        cfg = self.config
        record = registry.DeploymentRecord(
            name=registry.unique_name(name or Path(self.served_model_name).name),
            model=cfg.model,
            served_model_name=self.served_model_name,
            run_dir=str(self.run_dir),
            command=redact_argv(self.servers[0].command()) if self.servers else [],
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            servers=[
                registry.ServerEntry(pid=s.pid or 0, started_at=s.started_at or 0.0,
                                     base_url=s.base_url, log_path=str(s.log_path),
                                     devices=rep.env)
                for s, rep in zip(self.servers, self.plan, strict=True)
            ],
        )
        registry.save(record)
        for server in self.servers:
            server.detach()
        self.servers = []
        return record

    def describe(self) -> dict[str, object]:
        """What was deployed, for the run directory (no secrets: flags are redacted)."""
        return {
            "model": self.config.model,
            "served_model_name": self.served_model_name,
            "replicas": [
                {"base_url": s.base_url, "pid": s.pid, "log": str(s.log_path), "devices": rep.env,
                 "command": redact_argv(s.command())}
                for s, rep in zip(self.servers, self.plan, strict=True)
            ],
        }

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
