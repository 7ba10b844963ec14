"""The paced stub's wake-up: a timerfd deadline never fires early; the loop-timer fallback may
(uvloop rounds to 1 ms), so its caller re-arms and still never acts early."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from servemark.load import eventloop
from servemark.stub.timer import Timer


def lateness(fallback: bool) -> tuple[list[float], int]:
    """20 wake-ups 2.3 ms apart: how late each was, and how many came early (re-armed)."""

    async def go() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        lates: list[float] = []
        early = [0]
        due = [time.perf_counter() + 0.002]

        def fired() -> None:
            now = time.perf_counter()
            if now < due[0]:
                early[0] += 1
                timer.arm(due[0])
                return
            lates.append(now - due[0])
            if len(lates) == 20:
                done.set_result(None)
                return
            due[0] = now + 0.0023
            timer.arm(due[0])

        timer = Timer(loop, fired)
        if fallback:
            timer.close()  # no timerfd: loop timers
        timer.arm(due[0])
        try:
            await asyncio.wait_for(done, 5)
        finally:
            timer.close()
        return lates, early[0]

    return eventloop.run(go())


@pytest.mark.skipif(sys.platform != "linux", reason="timerfd is Linux's")
def test_timerfd_never_early() -> None:
    lates, early = lateness(fallback=False)
    assert early == 0 and len(lates) == 20 and min(lates) >= 0


def test_fallback_rearms_and_still_fires() -> None:
    lates, _ = lateness(fallback=True)
    assert len(lates) == 20 and min(lates) >= 0
