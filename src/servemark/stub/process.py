"""Run the stub server in its own process (so its timing is not the client's event loop's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from servemark.deploy.local import free_port

SRC = Path(__file__).resolve().parents[2]


def pin_beside_stub() -> int | None:
    """Benchmarks: pin this process to core 0 and return the core for the stub (the last one),
    so client and stub never share a core; None (nothing pinned) on a one-core machine."""
    ncpu = os.cpu_count() or 1
    if ncpu < 2:
        return None
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    return ncpu - 1


class StubProcess:
    """``python -m servemark.stub ARGS`` on a free port; ``cpu`` pins it with taskset; ``engine``
    ``"fast"`` is the paced engine (exact timing at scale, no faults)."""

    def __init__(self, *args: str, cpu: int | None = None, engine: str | None = None) -> None:
        self.port = free_port()
        if engine is not None:
            args = ("--engine", engine, *args)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "servemark.stub", "--port", str(self.port), *args]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu), *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.base_url + "/health", timeout=1).read()  # noqa: S310
                return
            except OSError:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else "stub died"
                    raise RuntimeError(err) from None
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("stub server did not start within 20 s")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """User + system CPU seconds the stub has used (Linux /proc; 0 elsewhere), so a benchmark
        can tell whether the stub, not the client, was the limit."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> StubProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
