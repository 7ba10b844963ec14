"""``servemark profile nsys``: for each tensor-parallel size, start vLLM under ``nsys profile``,
benchmark it, record the window, stop nsys (it writes the report), and summarize the kernels."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servemark.deploy.local import VllmServer, stop_tree
from servemark.errors import ResultsError
from servemark.profile.nsys import (
    KernelReport,
    NsysOptions,
    kernel_report,
    profile_command,
    require_nsys,
    run_stats,
    vllm_server_args,
)
from servemark.profile.torchprof import start_profile, stop_profile
from servemark.profile.window_run import bench_with_window
from servemark.progress import BenchProgress
from servemark.spec import BenchConfig

REPORT_WAIT_S = 900.0  # nsys can take minutes to write a large report


class NsysVllmServer(VllmServer):
    """A VllmServer whose command runs under ``nsys profile``."""

    def __init__(self, model: str, nsys: NsysOptions, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.nsys = nsys

    def command(self) -> list[str]:
        return profile_command(self.nsys, super().command())

    def finish(self, timeout_s: float = REPORT_WAIT_S) -> None:
        """Ask nsys to stop (SIGINT: it stops the server and writes the report), then wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_tree(self.proc.pid)


@dataclass
class NsysConfigResult:
    tp: int
    report_path: Path
    run_dir: Path
    kernels: KernelReport


async def profile_tp(model: str, tp: int, config: BenchConfig, out_dir: Path,
                     start_after_s: float, window_s: float, top_k: int = 10,
                     server_args: Sequence[str] = (), capture: str = "api",
                     nsys: str = "nsys", delay_s: float | None = None,
                     progress: BenchProgress | None = None,
                     ready_timeout_s: float = 1800.0) -> NsysConfigResult:
    """One configuration: server under nsys at ``--tensor-parallel-size tp``. With
    ``capture="time"`` nsys records ``window_s`` seconds starting ``delay_s`` after launch
    (server start-up included), so ``delay_s`` must cover the start-up."""
    require_nsys(nsys)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / f"tp{tp}"
    opts = NsysOptions(report, capture=capture, nsys=nsys,
                       delay_s=delay_s, duration_s=None if capture == "api" else window_s)
    server = NsysVllmServer(model, opts, extra_args=["--tensor-parallel-size", str(tp),
                                                     *vllm_server_args(opts), *server_args],
                            log_path=out_dir / f"tp{tp}.server.log")
    with server:
        await asyncio.to_thread(server.start, ready_timeout_s)
        cfg = config.model_copy(update={"base_url": server.base_url,
                                        "output_dir": out_dir / f"tp{tp}-bench"})
        if capture == "api":
            result, _ = await bench_with_window(
                cfg, start_after_s, window_s, lambda: start_profile(server.base_url),
                lambda: stop_profile(server.base_url), progress)
        else:  # nsys' own --delay/--duration bound the recording
            result, _ = await bench_with_window(cfg, start_after_s, window_s,
                                                _noop, _noop, progress)
        await asyncio.to_thread(server.finish)
    path = report.with_suffix(".nsys-rep")
    if not path.exists():
        raise ResultsError(f"nsys wrote no report {path}", f"see {out_dir / f'tp{tp}.server.log'}")
    kernels = await asyncio.to_thread(run_stats, path, nsys)
    return NsysConfigResult(tp, path, result.run_dir, kernel_report(f"TP={tp}", kernels, top_k))


async def _noop() -> None:
    return None
