"""vLLM's torch profiler: server flags, ``/start_profile`` and ``/stop_profile`` around a
steady-state window of a benchmark, and a summary of the trace files it writes.

vLLM 0.32 configures it with ``--profiler-config '{"profiler": "torch", "torch_profiler_dir":
DIR}'`` (``vllm/config/profiler.py``; the older ``VLLM_TORCH_PROFILER_DIR`` environment variable
is what versions before the ProfilerConfig read, so we set both). The profile routes exist only
when the profiler is configured. Each worker (and the API front end) writes a Chrome trace
(``*.pt.trace.json[.gz]``, torch's tensorboard trace handler) when profiling stops.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from servemark.errors import ConfigError, EndpointUnreachable, ResultsError
from servemark.profile.window_run import bench_with_window
from servemark.progress import BenchProgress
from servemark.spec import BenchConfig

TRACE_PATTERNS = ("*.pt.trace.json.gz", "*.pt.trace.json")


def server_args(trace_dir: Path, with_stack: bool = False) -> list[str]:
    """vLLM server flags that enable the torch profiler writing into ``trace_dir``."""
    config = {"profiler": "torch", "torch_profiler_dir": str(Path(trace_dir).resolve()),
              "torch_profiler_with_stack": with_stack}
    return ["--profiler-config", json.dumps(config)]


def server_env(trace_dir: Path) -> dict[str, str]:
    """For vLLM versions that read the directory from the environment instead."""
    return {"VLLM_TORCH_PROFILER_DIR": str(Path(trace_dir).resolve())}


async def _post(base_url: str, path: str, headers: dict[str, str], timeout_s: float) -> None:
    url = base_url.rstrip("/") + path
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s, \
                s.post(url, headers=headers) as resp:
            if resp.status == 404:
                raise ConfigError(
                    f"{base_url} has no {path} route: its profiler is not enabled",
                    "start the server with --profiler-config '{\"profiler\": \"torch\", "
                    "\"torch_profiler_dir\": \"/abs/dir\"}' (or let `servemark profile torch "
                    "--model` start it)")
            if resp.status != 200:
                body = (await resp.text())[:200]
                raise ConfigError(f"POST {path} answered HTTP {resp.status}: {body}",
                                  "see the server log")
    except aiohttp.ClientConnectionError as exc:
        raise EndpointUnreachable(f"cannot reach {url}: {exc}", "is the server running?") from exc


async def start_profile(base_url: str, headers: dict[str, str] | None = None) -> None:
    await _post(base_url, "/start_profile", headers or {}, 60.0)


async def stop_profile(base_url: str, headers: dict[str, str] | None = None) -> None:
    """Returns once the workers have written their traces (that can take a while)."""
    await _post(base_url, "/stop_profile", headers or {}, 600.0)


def find_traces(trace_dir: Path, since: float = 0.0) -> list[Path]:
    """Trace files in ``trace_dir`` (recursively) modified at or after ``since`` (epoch s)."""
    found = {p for pattern in TRACE_PATTERNS for p in Path(trace_dir).rglob(pattern)}
    return sorted(p for p in found if p.stat().st_mtime >= since)


@dataclass
class OpStat:
    name: str
    category: str
    calls: int = 0
    total_us: float = 0.0
    self_us: float = 0.0


@dataclass
class TraceSummary:
    """Operators of one trace by self time (time not spent in operators they called)."""

    path: str
    span_us: float
    ops: list[OpStat] = field(default_factory=list)

    @property
    def self_total_us(self) -> float:
        return sum(o.self_us for o in self.ops)

    def top(self, k: int) -> list[OpStat]:
        return sorted(self.ops, key=lambda o: o.self_us, reverse=True)[:k]

    def to_dict(self, k: int = 20) -> dict[str, Any]:
        total = self.self_total_us or 1.0
        return {"path": self.path, "span_us": self.span_us,
                "top": [{**asdict(o), "self_share": o.self_us / total} for o in self.top(k)]}


# Complete events of these categories are operators; kernels run on the device and do not nest.
OP_CATEGORIES = ("cpu_op", "kernel", "gpu_op", "user_annotation", "gpu_memcpy", "gpu_memset")
NESTING = ("cpu_op", "user_annotation")


def load_trace(path: Path) -> dict[str, Any]:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read trace {path}: {exc}", "is the file complete?") from exc
    if isinstance(data, list):
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ResultsError(f"{path} is not a Chrome trace", "pass a *.pt.trace.json[.gz] file")
    return data


def summarize_events(events: Sequence[dict[str, Any]], path: str = "") -> TraceSummary:
    """Self time per operator name: on each thread, an operator's duration minus the durations
    of the operators directly inside it (complete events nest by time)."""
    stats: dict[tuple[str, str], OpStat] = {}
    threads: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    lo, hi = float("inf"), float("-inf")
    for e in events:
        if e.get("ph") != "X" or e.get("cat") not in OP_CATEGORIES:
            continue
        ts, dur = float(e.get("ts", 0.0)), float(e.get("dur", 0.0))
        lo, hi = min(lo, ts), max(hi, ts + dur)
        threads.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for evs in threads.values():
        evs.sort(key=lambda e: (float(e.get("ts", 0.0)), -float(e.get("dur", 0.0))))
        stack: list[tuple[float, OpStat]] = []  # (end time, stat of the open operator)
        for e in evs:
            ts, dur = float(e.get("ts", 0.0)), float(e.get("dur", 0.0))
            key = (str(e.get("name")), str(e.get("cat")))
            st = stats.get(key)
            if st is None:
                st = stats[key] = OpStat(key[0], key[1])
            st.calls += 1
            st.total_us += dur
            st.self_us += dur
            nests = e.get("cat") in NESTING
            while stack and stack[-1][0] <= ts:
                stack.pop()
            if stack and nests:
                stack[-1][1].self_us -= min(dur, stack[-1][0] - ts)
            if nests:
                stack.append((ts + dur, st))
    span = hi - lo if hi > lo else 0.0
    return TraceSummary(path, span, list(stats.values()))


def summarize_trace(path: Path) -> TraceSummary:
    return summarize_events(load_trace(path)["traceEvents"], str(path))


@dataclass
class TorchProfileResult:
    run_dir: Path
    trace_dir: Path
    traces: list[TraceSummary]
    window_s: float

    def to_dict(self, k: int = 20) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "trace_dir": str(self.trace_dir),
                "window_s": self.window_s, "traces": [t.to_dict(k) for t in self.traces]}


async def profile_window(base_url: str, start_after_s: float, window_s: float,
                         headers: dict[str, str] | None = None) -> tuple[float, float]:
    """Sleep, start the profiler, sleep the window, stop it; returns (wall start, seconds)."""
    await asyncio.sleep(start_after_s)
    started = time.time()
    await start_profile(base_url, headers)
    t = time.perf_counter()
    await asyncio.sleep(window_s)
    await stop_profile(base_url, headers)
    return started, time.perf_counter() - t


PROFILE_JSON = "profile_torch.json"


async def run_torch_profile(config: BenchConfig, trace_dir: Path | None, start_after_s: float,
                            window_s: float, headers: dict[str, str] | None = None,
                            progress: BenchProgress | None = None, top_k: int = 20,
                            ) -> TorchProfileResult:
    """Benchmark ``config`` with the profiler on for a window; summarize the new traces found in
    ``trace_dir`` (None: the traces stay where the server wrote them, unsummarized)."""
    since = time.time() - 1.0  # file systems with coarse mtimes
    result, length = await bench_with_window(
        config, start_after_s, window_s,
        lambda: start_profile(config.base_urls[0], headers),
        lambda: stop_profile(config.base_urls[0], headers),
        progress)
    traces: list[TraceSummary] = []
    if trace_dir is not None:
        paths = find_traces(trace_dir, since)
        if not paths:
            raise ResultsError(f"the server wrote no trace files into {trace_dir}",
                               "pass the directory the server's profiler writes to (--trace-dir)")
        traces = [summarize_trace(p) for p in paths]
    out = TorchProfileResult(result.run_dir, Path(trace_dir) if trace_dir else Path(), traces,
                             length if length is not None else 0.0)
    try:
        (result.run_dir / PROFILE_JSON).write_text(json.dumps(out.to_dict(top_k), indent=2))
    except OSError as exc:
        raise ResultsError(f"cannot write {result.run_dir / PROFILE_JSON}: {exc.strerror}",
                           "pick a writable --results-root") from exc
    return out
