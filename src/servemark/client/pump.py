"""The event loop's side of the reader thread (``_pump.c``): one per event loop and transport.

Why a thread: a socket read by the event loop is read when the loop gets round to it; a loop
behind by 10 ms at 100 chunks/s per stream gets two chunks in one read, and the first loses
its own arrival (the kernel stamps a read with its latest segment). The thread only reads and
stamps, holding no GIL, and hands every read over as it came; the connection then treats each
as if the loop had just read it (see ``fasthttp._SockConn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

try:  # built with the package where a compiler is (setup.py); else sockets are read on the loop
    from servemark.client import _pump
except ImportError:  # pragma: no cover - built by every install on Linux with a compiler
    _pump = None  # type: ignore[assignment]

# (reads as (data, arrival, event: the read was one HTTP chunk with one "data: X" SSE event and
#  data is X), finished, errno or 0, eof, time of the last read)
Taken = tuple[list[tuple[bytes, float, bool]], int, int, int, float]


def pump_enabled() -> bool:
    """Whether plain-TCP connections are read by the thread (where it was built):
    SERVEMARK_PUMP=0 reads them on the event loop instead (same records: the tests run both)."""
    return _pump is not None and os.environ.get("SERVEMARK_PUMP", "1") != "0"


class PumpHub:
    """One reader thread and the event loop's side of it: its eventfd is a loop reader that
    hands what the thread read to each socket's callback, all sockets in one pass."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _pump is not None
        self.loop = loop
        self._pump = _pump.Pump()
        self._fd = self._pump.fileno()
        self._waiting: dict[int, Callable[[Taken], None]] = {}
        loop.add_reader(self._fd, self._ready)
        self.closed = False

    def add(self, fd: int, on_reads: Callable[[Taken], None]) -> int:
        """The thread reads ``fd`` from now on; ``on_reads`` gets on the loop what it read (the
        thread looks at most every half millisecond, so one wake-up serves many reads)."""
        slot = self._pump.add(fd)
        self._waiting[slot] = on_reads
        return slot

    def remove(self, slot: int) -> None:
        """The thread reads the socket no more (no read of it is under way once this returns)."""
        if self._waiting.pop(slot, None) is not None and not self.closed:
            self._pump.remove(slot)

    def _ready(self) -> None:
        waiting = self._waiting
        for slot, taken in self._pump.drain():
            callback = waiting.get(slot)
            if callback is not None:
                try:
                    callback(taken)
                except Exception as exc:  # noqa: BLE001 - one socket's failure is not the rest's
                    self.loop.call_exception_handler(
                        {"message": "reader-thread callback failed", "exception": exc})

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):  # the loop may be closed already
                self.loop.remove_reader(self._fd)
            self._pump.close()
            self._waiting.clear()
