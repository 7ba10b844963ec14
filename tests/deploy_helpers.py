"""Helpers for tests that start real servers through the CLI: run servemark, find leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from servemark.deploy.local import group_members
from tests.conftest import SRC

VLLM_FLAGS = ["--max-model-len", "2048", "--enforce-eager", "--dtype", "bfloat16"]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1", "SERVEMARK_STATE": str(tmp_path / "state")}
    env.update(extra)
    return env


def servemark(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "servemark", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def run(*args: str, env: dict[str, str], timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servemark", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def server_pids(run_dir: Path) -> list[int]:
    """PIDs (= process group ids) of the servers a run directory's deployment.json lists."""
    doc = json.loads((run_dir / "deployment.json").read_text())
    return [int(r["pid"]) for r in doc["replicas"]]


def leftovers(pgids: list[int], wait_s: float = 10.0) -> list[psutil.Process]:
    """Processes still alive in the given groups (our servers' trees) after up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = [p for g in pgids for p in group_members(g)
                 if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


FAKE_VLLM = f"""#!{sys.executable}
# stands in for: python -m vllm.entrypoints.openai.api_server --model M --port P ...
import os, signal, subprocess, sys, time
args = sys.argv[1:]
if os.environ.get("FAKE_VLLM_STOP_S"):  # a server slow to stop, like vLLM freeing its memory
    def _slow_exit(*_):
        time.sleep(float(os.environ["FAKE_VLLM_STOP_S"]))
        os._exit(0)
    signal.signal(signal.SIGTERM, _slow_exit)
def flag(name, default):
    return args[args.index(name) + 1] if name in args else default
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # the "engine core"
from servemark.stub.server import main
main(["--port", flag("--port", "0"), "--model", flag("--served-model-name", "stub"),
      "--itl", "0.01"])
"""


def fake_vllm_python(folder: Path) -> Path:
    """A stand-in for vLLM's Python (``servemark serve --python`` / spec ``deploy.python``): like
    vLLM it spawns a child process (the engine core), then serves the stub on the given port."""
    path = folder / "fake-vllm-python"
    path.write_text(FAKE_VLLM)
    path.chmod(0o755)
    return path
