"""Kernel receive timestamps (``SO_TIMESTAMPNS``: CLOCK_REALTIME) on the ``perf_counter`` clock.

Why a careful offset: taking it from one ``time.time()`` and one ``perf_counter()`` read back to
back is off by however long the process was preempted between the two — on a loaded machine a
chunk was stamped 0.13 ms before it could have been sent. The offset is taken from the tightest
of a few bracketed readings and refreshed every :data:`REFRESH_S` (so NTP slewing, at most
500 ppm, moves it by no more than 50 µs), which also spares a ``time.time()`` call per read.
"""

from __future__ import annotations

import time

REFRESH_S = 0.1
_TRIES = 3

_offset = 0.0  # CLOCK_REALTIME minus perf_counter
_taken_at = float("-inf")


def _measure() -> float:
    best_width, best = float("inf"), 0.0
    for _ in range(_TRIES):
        a = time.perf_counter()
        r = time.time()
        b = time.perf_counter()
        if b - a < best_width:
            best_width, best = b - a, r - (a + b) / 2
    return best


def to_perf(sec: int, ns: int, now: float) -> float:
    """A kernel timestamp (seconds, nanoseconds of CLOCK_REALTIME) as a perf_counter reading;
    ``now``: perf_counter read just before (it decides when the offset is refreshed)."""
    global _offset, _taken_at
    if now - _taken_at > REFRESH_S:
        _offset, _taken_at = _measure(), now
    return sec + ns * 1e-9 - _offset
