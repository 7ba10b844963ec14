"""Statistics and derived metrics against numpy and hand-computed values."""

from __future__ import annotations

import random

import numpy as np
import pytest

from servemark.metrics import derive
from servemark.metrics.record import RequestRecord
from servemark.metrics.stats import describe, percentile
from servemark.metrics.summary import summarize


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
def test_describe_matches_numpy(n: int) -> None:
    rng = random.Random(n)
    values = [rng.lognormvariate(0, 1) for _ in range(n)]
    d = describe(values)
    arr = np.array(values)
    assert d.count == n
    assert d.mean == pytest.approx(arr.mean())
    assert d.std == pytest.approx(arr.std())
    assert d.min == arr.min() and d.max == arr.max()
    for q in (50, 90, 95, 99):
        assert getattr(d, f"p{q}") == pytest.approx(np.percentile(arr, q))
    assert d.median == d.p50


def test_empty_sample_is_undefined_not_zero() -> None:
    d = describe([])
    assert d.count == 0
    assert d.mean is None and d.p99 is None and d.std is None
    assert percentile([], 50) is None


def rec(start: float, chunks: list[float], out: int | None, ok: bool = True, inp: int = 10,
        end_extra: float = 0.0, **kw: object) -> RequestRecord:
    end = start + (chunks[-1] if chunks else 0.5) + end_extra
    return RequestRecord(request_id=0, load_point="p", endpoint="e", api="completions",
                         start_s=start, end_s=end, chunk_times_s=chunks, input_tokens=inp,
                         output_tokens=out, ok=ok, token_source="usage", **kw)


def test_derived_metrics_by_hand() -> None:
    r = rec(1.0, [0.1, 0.15, 0.35], out=3, end_extra=0.05)
    assert derive.ttft_s(r) == pytest.approx(0.1)
    assert derive.itl_s(r) == pytest.approx([0.05, 0.2])
    assert derive.e2e_s(r) == pytest.approx(0.4)
    assert derive.tpot_s(r) == pytest.approx((0.4 - 0.1) / 2)


def test_tpot_undefined_for_one_token_and_ttft_undefined_without_chunks() -> None:
    assert derive.tpot_s(rec(0, [0.1], out=1)) is None
    assert derive.ttft_s(rec(0, [], out=0)) is None
    non_streamed = rec(0, [], out=5, streamed=False)
    assert derive.ttft_s(non_streamed) is None and derive.itl_s(non_streamed) == []


def test_summary_throughput_uses_window_and_successes_only() -> None:
    records = [
        rec(0.0, [0.1, 0.2], out=2, inp=10),  # ends 0.2
        rec(0.5, [0.1, 0.3], out=2, inp=20),  # ends 0.8
        rec(0.6, [], out=None, ok=False, error_kind="http_status"),  # ends 1.1: widens window
        RequestRecord(request_id=9, load_point="p", endpoint="e", api="completions", start_s=5.0,
                      end_s=9.0, error_kind="cancelled"),
    ]
    s = summarize(records, "p", concurrency=2)
    assert s.completed == 2 and s.failed == 1 and s.cancelled == 1
    assert s.duration_s == pytest.approx(1.1)
    assert s.input_tokens_total == 30 and s.output_tokens_total == 4
    assert s.total_tokens_per_s == pytest.approx(34 / 1.1)
    assert s.output_tokens_per_s == pytest.approx(4 / 1.1)
    assert s.requests_per_s == pytest.approx(2 / 1.1)
    assert s.errors_by_kind == {"http_status": 1}
    assert s.itl_s.count == 2
    assert s.ttft_s.mean == pytest.approx(0.1)


def test_summary_of_nothing_is_undefined() -> None:
    s = summarize([], "p")
    assert s.completed == 0 and s.duration_s is None and s.total_tokens_per_s is None


def test_summary_round_trips_through_dict() -> None:
    s = summarize([rec(0.0, [0.1, 0.2], out=2)], "c=1", concurrency=1)
    from servemark.metrics.summary import PointSummary

    assert PointSummary.from_dict(s.to_dict()) == s


def test_input_length_mismatch_counted() -> None:
    good = rec(0, [0.1, 0.2], out=2, inp=10, requested_input_tokens=10)
    bad = rec(0, [0.1, 0.2], out=2, inp=11, requested_input_tokens=10)
    assert summarize([good, bad], "p").input_len_mismatches == 1
