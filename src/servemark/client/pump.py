"""The Python side of the body-reader thread (``_pump.c``): one per event loop and transport.

Why a thread: a streamed body read on the event loop is timed by when the loop gets round to
it; behind by a read, two chunks come back in one read and share the later arrival. The thread
only reads, de-chunks and stamps, holding no GIL, and the loop replays its reads through the
usual Python SSE path afterwards, each with its own arrival (see ``_pump.c``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

try:  # built with the package where a compiler is (setup.py); else bodies are read on the loop
    from servemark.client import _pump
except ImportError:  # pragma: no cover - built by every install on Linux with a compiler
    _pump = None  # type: ignore[assignment]

PROTO_ERR = -1 if _pump is None else _pump.PROTO_ERR
# (slot, reads as (data, arrival, event: data is the X of a read that was one "data: X" SSE
#  event, else the read's payload), finished, errno or PROTO_ERR or 0, eof, bytes after the
#  body, time of the last read, arrival of the last read or None)
Taken = tuple[int, list[tuple[bytes, float, bool]], int, int, int, bytes, float, float | None]


def pump_enabled() -> bool:
    """Whether chunked bodies of plain-TCP connections are read by the thread (where it was
    built): SERVEMARK_PUMP=1. Off by default: on a 2-core VM with the client pinned to one
    core it measured no better than the C reader on the loop (README, load generation); the
    merges that remain there happen before the body starts, on the loop. Same records either
    way (the tests run both)."""
    return _pump is not None and os.environ.get("SERVEMARK_PUMP", "0") == "1"


class PumpHub:
    """One reader thread and the event loop's side of it: its eventfd is a loop reader that
    routes every slot the thread has something for to that body's callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _pump is not None
        self.loop = loop
        self._pump = _pump.Pump()
        self._fd = self._pump.fileno()
        self._waiting: dict[int, Callable[[Taken], None]] = {}
        loop.add_reader(self._fd, self._ready)
        self.closed = False

    def add(self, fd: int, pending: bytes, arrival: float,
            on_ready: Callable[[Taken], None]) -> int:
        """Hand ``fd``'s body to the thread; ``pending``: the start of a chunk already read
        (at ``arrival``); ``on_ready`` gets on the loop what the thread read, batch by batch
        (the thread looks at most every half millisecond, so one wake-up serves many reads),
        and the end. Why not only the end: the streams of a closed loop end nearly together,
        and all their per-chunk work at once would keep the loop from sending for tens of ms."""
        slot = self._pump.add(fd, pending, arrival, True)
        self._waiting[slot] = on_ready
        return slot

    def take(self, slot: int) -> Taken:
        return (slot, *self._pump.take(slot))

    def last(self, slot: int) -> float:
        return self._pump.last(slot)

    def remove(self, slot: int) -> None:
        """The socket is the event loop's again (no read of it is under way once this returns)."""
        if self._waiting.pop(slot, None) is not None and not self.closed:
            self._pump.remove(slot)

    def _ready(self) -> None:
        waiting = self._waiting
        for taken in self._pump.drain():
            callback = waiting.get(taken[0])
            if callback is not None:
                callback(taken)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self._fd)
            self._pump.close()
            self._waiting.clear()
