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
