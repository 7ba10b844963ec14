"""How late the client's event loop runs during a load point.

Why: reads carry the kernel's receive time, so a loop that is merely busy measures the same TTFT
and ITL; it stops doing so when it falls so far behind that two chunks of one stream wait in the
socket together (the kernel then stamps both with the later arrival). A timer every
:data:`PERIOD_S` that notes how late it fired shows that directly, also when the client's CPU
share stays just under the client-bound threshold (bursts from streams that run in step).
"""

from __future__ import annotations

import asyncio
import time

from servemark.metrics.sketch import QuantileSketch

PERIOD_S = 0.005


class LoopLag:
    """Start it inside the running loop, stop it at the end of the point, read :attr:`p99_s`."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self.sketch = QuantileSketch()
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> LoopLag:
        self._loop = asyncio.get_running_loop()
        self._arm()
        return self

    def _arm(self) -> None:
        assert self._loop is not None
        self._due = time.perf_counter() + self.period_s
        self._handle = self._loop.call_later(self.period_s, self._fired)

    def _fired(self) -> None:
        self.sketch.add(max(0.0, time.perf_counter() - self._due))
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def samples(self) -> int:
        """How many times the timer fired (the sketch counts values only as it folds them)."""
        return self.sketch.distribution().count

    @property
    def p99_s(self) -> float | None:
        """p99 of how late the timer fired (None before it fired once)."""
        return self.sketch.distribution().p99
