"""Fidelity figures: schedule lag, latencies from intended send, client-bound detection."""

from __future__ import annotations

import pytest

from servemark.metrics.fidelity import assess
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import PointSummary, summarize


def rec(i: int, start: float, scheduled: float | None, chunks: list[float], out: int) -> RequestRecord:
    return RequestRecord(i, "p", "e", "completions", start, start + chunks[-1] + 0.01,
                         chunk_times_s=chunks, scheduled_s=scheduled, output_tokens=out,
                         input_tokens=4, ok=True, token_source="usage")


def test_open_loop_lag_and_intended_latencies() -> None:
    recs = [rec(0, 1.000, 1.000, [0.1, 0.2], 2), rec(1, 2.050, 2.000, [0.1, 0.2], 2)]
    f = assess(recs, duration_s=1.5, client_cpu_s=0.3)
    assert f.schedule_lag_s.max == pytest.approx(0.05)
    assert f.schedule_lag_s.min == pytest.approx(0.0)
    assert f.ttft_from_intended_s.max == pytest.approx(0.15)
    assert f.e2e_from_intended_s.max == pytest.approx(0.26)
    assert f.client_cpu_util == pytest.approx(0.2)
    assert f.client_bound and "schedule lag" in f.client_bound_reasons[0]


def test_closed_loop_not_client_bound_unless_cpu_saturated() -> None:
    recs = [rec(i, float(i), None, [0.1, 0.2, 0.4], 4) for i in range(5)]
    calm = assess(recs, duration_s=5.0, client_cpu_s=1.0)
    assert not calm.client_bound and calm.schedule_lag_s.count == 0
    busy = assess(recs, duration_s=5.0, client_cpu_s=4.9)
    assert busy.client_bound and "client CPU at 98%" in busy.client_bound_reasons[0]


def test_other_tools_definitions() -> None:
    recs = [rec(0, 0.0, None, [0.1, 0.2, 0.5], 6)]  # e2e 0.51, 3 chunks, 6 tokens
    f = assess(recs, duration_s=1.0, client_cpu_s=None)
    assert f.tpot_e2e_over_n_s.mean == pytest.approx(0.51 / 6)
    assert f.itl_per_request_mean_s.mean == pytest.approx(0.2)  # mean of 0.1 and 0.3
    assert f.tokens_per_chunk_mean == pytest.approx(2.0)
    assert f.client_cpu_util is None and not f.client_bound


def test_fidelity_survives_summary_round_trip() -> None:
    s = summarize([rec(0, 1.0, 0.99, [0.1, 0.2], 2)], "rate=1", request_rate=1.0, client_cpu_s=0.1)
    back = PointSummary.from_dict(s.to_dict())
    assert back == s and back.fidelity is not None
    assert back.fidelity.schedule_lag_s.p50 == pytest.approx(0.01)


def test_a_late_event_loop_marks_the_point_client_bound() -> None:
    from servemark.metrics.accumulate import PointAccumulator
    from servemark.metrics.fidelity import assess_of

    acc = PointAccumulator.of([rec(i, float(i), None, [0.1, 0.2, 0.4], 4) for i in range(5)])
    late = assess_of(acc, 5.0, 3.0, loop_lag_p99_s=0.012)  # 60% of a core
    assert late.client_bound and late.client_bound_reasons == [
        "event loop p99 12.0 ms late (reads may merge)"]
    assert late.loop_lag_p99_s == pytest.approx(0.012)
    on_time = assess_of(acc, 5.0, 3.0, loop_lag_p99_s=0.001)
    assert not on_time.client_bound
    # late at 20% of a core: starved by other processes (a server on the same cores), not
    # bound by its own work; the lag is still recorded
    starved = assess_of(acc, 5.0, 1.0, loop_lag_p99_s=0.167)
    assert not starved.client_bound and starved.loop_lag_p99_s == pytest.approx(0.167)
    back = type(late).from_dict(late.to_dict())
    assert back.loop_lag_p99_s == pytest.approx(0.012) and back.client_bound


def test_loop_lag_sees_a_blocked_loop() -> None:
    import asyncio
    import time

    from servemark.load.looplag import LoopLag

    async def main() -> tuple[float | None, int]:
        lag = LoopLag(period_s=0.002).start()
        await asyncio.sleep(0.02)
        for _ in range(3):
            time.sleep(0.03)  # the loop is stuck: the timer fires ~30 ms late
            await asyncio.sleep(0.005)
        lag.stop()
        count = lag.samples
        await asyncio.sleep(0.02)
        assert lag.samples == count  # stopped means stopped
        return lag.p99_s, count

    p99, count = asyncio.run(main())
    assert count >= 5
    assert p99 is not None and p99 >= 0.02


def test_hypervisor_steal_marks_the_point_client_bound() -> None:
    from servemark.metrics.accumulate import PointAccumulator
    from servemark.metrics.fidelity import assess_of

    acc = PointAccumulator.of([rec(i, float(i), None, [0.1, 0.2, 0.4], 4) for i in range(5)])
    paused = assess_of(acc, 5.0, 1.0, steal_share=0.26)  # 20% of a core, but paused often
    assert paused.client_bound and paused.client_bound_reasons == [
        "the hypervisor took 26% of the client cores' time (steal: its pauses count as latency)"]
    calm = assess_of(acc, 5.0, 1.0, steal_share=0.004)
    assert not calm.client_bound and calm.steal_share == pytest.approx(0.004)
    back = type(paused).from_dict(paused.to_dict())
    assert back.steal_share == pytest.approx(0.26) and back.client_bound
