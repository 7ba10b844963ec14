"""An absolute-deadline wake-up for the paced stub: nanosecond timerfd where Linux allows."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import time
from collections.abc import Callable

_INF = float("inf")
_pc = time.perf_counter


class _TimeSpec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("value", _TimeSpec)]


class Timer:
    """Calls ``callback`` at (never before) an absolute ``perf_counter`` time. A Linux timerfd on
    CLOCK_MONOTONIC (perf_counter's clock) has nanosecond deadlines; a loop timer has a
    millisecond tick (uvloop's may fire a tick early), so without one it is re-armed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.callback = callback
        self.armed = _INF
        self.fd = -1
        self._handle: asyncio.TimerHandle | None = None
        self._spec = _ITimerSpec()
        if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._settime = libc.timerfd_settime
            fd = libc.timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC)  # CLOCK_MONOTONIC
            with contextlib.suppress(AttributeError):
                libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: 1 ns (default 50 µs)
        except (OSError, AttributeError):
            return
        if fd >= 0:
            self.fd = fd
            loop.add_reader(fd, self._fired)

    def arm(self, when: float) -> None:
        if when >= self.armed:
            return
        self.armed = when
        if self.fd >= 0:
            spec = self._spec
            sec = int(when)
            spec.value.sec = sec
            spec.value.nsec = max(1, int((when - sec) * 1e9))
            self._settime(self.fd, 1, ctypes.byref(spec), None)  # TFD_TIMER_ABSTIME
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self.loop.call_later(max(0.0, when - _pc()), self._fired)

    def _fired(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.read(self.fd, 8)
        self._handle = None
        self.armed = _INF
        self.callback()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
