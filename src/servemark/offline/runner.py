"""Run one offline measurement in a fresh worker process and turn what happened into data.

The worker runs in its own session; whatever it leaves behind (engine cores, TP workers) is
killed with its process group. A crash, a signal, a timeout or an error inside vLLM becomes a
failed Measurement with a one-line reason — never an exception, except Ctrl-C, which stops the
worker and propagates.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil

from servemark.deploy import registry
from servemark.deploy.local import stop_tree
from servemark.deploy.vllmenv import with_vllm_site
from servemark.suites.hardware import child_env
from servemark.suites.measurement import Measurement, failed, one_line
from servemark.suites.point import Point, RunSettings

WORKER_MODULE = "servemark.offline.worker"
OOM_MARKERS = ("out of memory", "outofmemoryerror", "cuda error: out of memory")


def engine_args(point: Point, settings: RunSettings) -> dict[str, Any]:
    """What vllm.LLM receives: the pass-through arguments, then the point's parallelism."""
    args = dict(settings.engine_args)
    args["tensor_parallel_size"] = point.tensor_parallel
    args["pipeline_parallel_size"] = point.pipeline_parallel
    if point.max_model_len is not None:
        args["max_model_len"] = point.max_model_len
    if settings.dtype is not None:
        args["dtype"] = settings.dtype
    args.setdefault("seed", settings.seed)
    return args


def precheck(point: Point) -> str | None:
    """A reason the point cannot run, known without starting an engine (saves minutes)."""
    if point.max_model_len is not None and point.input_len > point.max_model_len:
        return (f"input length {point.input_len} is longer than max-model-len "
                f"{point.max_model_len}")
    return None


def explain_exit(returncode: int, log_tail: list[str]) -> str:
    """Why a worker ended without writing its result (pure)."""
    text = "\n".join(log_tail).lower()
    if any(m in text for m in OOM_MARKERS):
        line = next((ln for ln in reversed(log_tail) if "out of memory" in ln.lower()), "")
        return one_line(f"out of memory: {line.strip()}")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of host memory? the kernel's OOM killer sends SIGKILL)" if (
            -returncode == signal.SIGKILL) else ""
        return f"worker killed by {name}{hint}"
    errors = [ln for ln in log_tail if "Error" in ln or "error" in ln]
    last = errors[-1].strip() if errors else (log_tail[-1].strip() if log_tail else "no output")
    return one_line(f"worker exited with code {returncode}: {last}")


def _tail(path: Path, n: int = 60) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return list(deque((ln.rstrip("\n") for ln in fh), maxlen=n))
    except OSError:
        return []


def run_offline(point: Point, settings: RunSettings, log_path: Path | None = None,
                python: str = sys.executable) -> Measurement:
    """Measure ``point`` with vllm.LLM in a fresh process; failures come back as data."""
    assert settings.model is not None
    model = settings.model
    reason = precheck(point)
    if reason is not None:
        return failed(point, "offline", model, reason, precision=settings.dtype)
    job = {
        "model": model, "engine_args": engine_args(point, settings),
        "batch_size": point.batch_size, "input_len": point.input_len,
        "output_len": point.output_len, "num_iters_warmup": settings.num_iters_warmup,
        "num_iters": settings.num_iters, "seed": settings.seed,
    }
    env = with_vllm_site(child_env({
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), **settings.env}))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="servemark-offline-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        log = log_path or Path(tmp) / "worker.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [python, "-m", WORKER_MODULE, str(job_path), str(out_path)],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )
        with contextlib.suppress(OSError, psutil.Error):  # so `servemark cleanup` finds it after a kill -9
            registry.own(registry.ServerEntry(proc.pid, psutil.Process(proc.pid).create_time(),
                                              "", str(log)), kind="vllm-offline")
        timed_out = False
        try:
            proc.wait(timeout=settings.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # Ctrl-C, timeout or done: nothing of the worker outlives this block
            if proc.poll() is None:
                stop_tree(proc.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # engine processes left in its group
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            with contextlib.suppress(OSError):
                registry.disown(proc.pid)
        wall = time.perf_counter() - started
        result: dict[str, Any] | None = None
        with contextlib.suppress(OSError, ValueError):
            result = json.loads(out_path.read_text())
        tail = _tail(log)
    common: dict[str, Any] = {"num_iters_warmup": settings.num_iters_warmup, "wall_s": wall,
                              "precision": settings.dtype}
    if timed_out and (result is None or result.get("status") != "ok"):
        return failed(point, "offline", model,
                      f"timed out after {settings.timeout_s:g} s (--point-timeout)", **common)
    if result is None:
        return failed(point, "offline", model, explain_exit(proc.returncode or 0, tail), **common)
    if result.get("status") != "ok":
        return failed(point, "offline", model, str(result.get("error") or "failed"), **common)
    common["precision"] = settings.dtype or result.get("dtype")
    return Measurement(
        point=point, mode="offline", model=model, status="ok",
        latencies_s=[float(x) for x in result["latencies_s"]],
        input_tokens=[int(x) for x in result["input_tokens"]],
        output_tokens=[int(x) for x in result["output_tokens"]],
        framework_version=result.get("vllm_version"), max_model_len=result.get("max_model_len"),
        **common,
    )
