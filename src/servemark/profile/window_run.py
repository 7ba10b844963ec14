"""Run a benchmark and act on the server during a steady-state window of it: the window opens
``start_after_s`` after the first load point starts sending and lasts ``window_s``; the
benchmark keeps going until the window has closed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from servemark.api import BenchResult, abench
from servemark.load.runner import LiveCounters, RunControl
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import PointSummary
from servemark.progress import BenchProgress, NullProgress
from servemark.spec import BenchConfig


class _Tap:
    """Forwards progress and tells us when load starts."""

    def __init__(self, inner: BenchProgress) -> None:
        self.inner = inner
        self.started = asyncio.Event()

    def message(self, text: str) -> None:
        self.inner.message(text)

    def point_started(self, label: str, total: int | None, duration_s: float | None,
                      live: LiveCounters) -> None:
        self.started.set()
        self.inner.point_started(label, total, duration_s, live)

    def request_done(self, record: RequestRecord, live: LiveCounters) -> None:
        self.inner.request_done(record, live)

    def point_finished(self, summary: PointSummary) -> None:
        self.inner.point_finished(summary)


async def bench_with_window(config: BenchConfig, start_after_s: float, window_s: float,
                            on_open: Callable[[], Awaitable[Any]],
                            on_close: Callable[[], Awaitable[Any]],
                            progress: BenchProgress | None = None,
                            ) -> tuple[BenchResult, float | None]:
    """Run ``config`` (its duration should cover the window) and call ``on_open`` /
    ``on_close`` around the window; returns the result and the window's actual length (s;
    None when the benchmark ended before the window was complete).
    If opening fails the benchmark is stopped and the error raised."""
    tap = _Tap(progress or NullProgress())
    control = RunControl(config.grace_period_s)
    bench_task = asyncio.create_task(abench(config, tap, control))

    async def window() -> float:
        await tap.started.wait()
        await asyncio.sleep(start_after_s)
        loop = asyncio.get_running_loop()
        await on_open()
        t = loop.time()
        try:
            await asyncio.sleep(window_s)
        finally:
            await on_close()
        return loop.time() - t

    window_task = asyncio.create_task(window())
    done, _ = await asyncio.wait({bench_task, window_task}, return_when=asyncio.FIRST_EXCEPTION)
    if window_task in done and window_task.exception() is not None:
        control.cancel()
        await asyncio.gather(bench_task, return_exceptions=True)
        raise window_task.exception()  # type: ignore[misc]
    if bench_task in done and bench_task.exception() is not None:
        window_task.cancel()
        await asyncio.gather(window_task, return_exceptions=True)
        raise bench_task.exception()  # type: ignore[misc]
    result = await bench_task
    if not window_task.done():  # the benchmark ended first: the window closes now (finally)
        window_task.cancel()
        await asyncio.gather(window_task, return_exceptions=True)
        return result, None
    return result, window_task.result()
