"""The terminal progress display for a benchmark: bar, done, in flight, errors, live tokens/s."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from servemark.load.runner import LiveCounters
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import PointSummary


class RichBenchProgress:
    """Implements servemark.progress.BenchProgress on a rich Progress (stderr)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            refresh_per_second=8,
        )
        self._task: TaskID | None = None
        self._started = 0.0
        self._last = 0.0

    def __enter__(self) -> RichBenchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{escape(text)}[/dim]")

    def point_started(self, label: str, total: int | None, duration_s: float | None,
                      live: LiveCounters) -> None:
        self._started = time.perf_counter()
        self._task = self.progress.add_task(label, total=total, info="")

    def request_done(self, record: RequestRecord, live: LiveCounters) -> None:
        now = time.perf_counter()
        if self._task is None or (now - self._last < 0.1 and live.in_flight):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        info = (f"in flight {live.in_flight}  errors {live.failed}  "
                f"{live.output_tokens / elapsed:,.0f} out tok/s")
        self.progress.update(self._task, completed=live.done, info=info)

    def point_finished(self, summary: PointSummary) -> None:
        if self._task is not None:
            done = summary.completed + summary.failed + summary.cancelled
            self.progress.update(self._task, completed=done, total=done)
        self._task = None
