"""The runner: closed-loop concurrency, open-loop schedules, stopping and cancelling."""

from __future__ import annotations

import asyncio
import time

import pytest

from servemark.client.openai import RequestSpec
from servemark.load.runner import RunControl, run_point
from servemark.load.schedule import LoadPoint
from servemark.metrics.record import RequestRecord


def specs(n: int):
    return iter(RequestSpec(i, "completions", prompt="x") for i in range(n))


class FakeSender:
    """Sends nothing: sleeps ``delay`` and tracks how many were in flight at most."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.sent_at: list[float] = []
        self.scheduled: list[float | None] = []

    async def __call__(self, spec: RequestSpec, scheduled: float | None) -> RequestRecord:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        start = time.perf_counter()
        self.sent_at.append(start)
        self.scheduled.append(scheduled)
        try:
            await asyncio.sleep(self.delay)
            return RequestRecord(spec.request_id, "p", "e", "completions", start,
                                 time.perf_counter(), ok=True, output_tokens=1)
        except asyncio.CancelledError:
            return RequestRecord(spec.request_id, "p", "e", "completions", start,
                                 time.perf_counter(), error_kind="cancelled")
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("c", [1, 4, 16])
async def test_closed_loop_keeps_exactly_c_in_flight(c: int) -> None:
    send = FakeSender(0.01)
    got: list[RequestRecord] = []
    out = await run_point(LoadPoint(concurrency=c), specs(100), send, got.append,
                          num_requests=40, duration_s=None, control=RunControl())
    assert out.sent == 40 and len(got) == 40
    assert send.max_in_flight == min(c, 40)
    assert sorted(r.request_id for r in got) == list(range(40))


async def test_open_loop_follows_the_constant_schedule() -> None:
    send = FakeSender(0.05)
    await run_point(LoadPoint(request_rate=100, arrival="constant"), specs(50), send, lambda r: None,
                    num_requests=30, duration_s=None, control=RunControl())
    assert len(send.sent_at) == 30
    lags = [a - s for a, s in zip(send.sent_at, send.scheduled, strict=True)]  # type: ignore[operator]
    assert max(lags) < 0.02  # sent when due, not after the previous finished
    assert send.max_in_flight >= 4  # open loop: requests overlap (0.05 s each, 10 ms apart)


async def test_open_loop_max_concurrency_caps_in_flight() -> None:
    send = FakeSender(0.05)
    await run_point(LoadPoint(request_rate=500, arrival="constant", max_concurrency=3), specs(50),
                    send, lambda r: None, num_requests=20, duration_s=None, control=RunControl())
    assert send.max_in_flight == 3


async def test_duration_bounds_the_point() -> None:
    send = FakeSender(0.01)
    t = time.perf_counter()
    await run_point(LoadPoint(concurrency=2), specs(10**6), send, lambda r: None,
                    num_requests=None, duration_s=0.2, control=RunControl())
    assert 0.18 < time.perf_counter() - t < 0.5


async def test_interrupt_stops_sending_and_lets_in_flight_finish() -> None:
    send = FakeSender(0.1)
    control = RunControl(grace_period_s=5)
    control.bind(asyncio.get_running_loop())
    got: list[RequestRecord] = []
    asyncio.get_running_loop().call_later(0.05, control.interrupt)
    out = await run_point(LoadPoint(concurrency=4), specs(100), send, got.append,
                          num_requests=None, duration_s=None, control=control)
    assert out.interrupted and len(got) == 4 and all(r.ok for r in got)


async def test_second_interrupt_cancels_in_flight_and_keeps_their_records() -> None:
    send = FakeSender(10)
    control = RunControl(grace_period_s=30)
    control.bind(asyncio.get_running_loop())
    got: list[RequestRecord] = []
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, control.interrupt)
    loop.call_later(0.1, control.interrupt)
    t = time.perf_counter()
    await run_point(LoadPoint(concurrency=3), specs(100), send, got.append,
                    num_requests=None, duration_s=None, control=control)
    assert time.perf_counter() - t < 2
    assert len(got) == 3 and all(r.error_kind == "cancelled" for r in got)


async def test_grace_period_expiry_cancels() -> None:
    send = FakeSender(10)
    control = RunControl(grace_period_s=0.1)
    control.bind(asyncio.get_running_loop())
    got: list[RequestRecord] = []
    asyncio.get_running_loop().call_later(0.05, control.interrupt)
    t = time.perf_counter()
    await run_point(LoadPoint(concurrency=2), specs(10), send, got.append,
                    num_requests=None, duration_s=None, control=control)
    assert time.perf_counter() - t < 2 and len(got) == 2
