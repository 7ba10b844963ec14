"""How the library reports progress: a small protocol the CLI implements (the library never prints)."""

from __future__ import annotations

from typing import Protocol

from servemark.load.runner import LiveCounters
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import PointSummary


class BenchProgress(Protocol):
    def message(self, text: str) -> None: ...

    def point_started(self, label: str, total: int | None, duration_s: float | None,
                      live: LiveCounters) -> None: ...

    def request_done(self, record: RequestRecord, live: LiveCounters) -> None: ...

    def point_finished(self, summary: PointSummary) -> None: ...


class NullProgress:
    """Reports nothing (library default)."""

    def message(self, text: str) -> None:
        pass

    def point_started(self, label: str, total: int | None, duration_s: float | None,
                      live: LiveCounters) -> None:
        pass

    def request_done(self, record: RequestRecord, live: LiveCounters) -> None:
        pass

    def point_finished(self, summary: PointSummary) -> None:
        pass
