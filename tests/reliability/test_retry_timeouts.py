"""Timeouts (first token) and the retry policy against the stub's faults: one record per
logical request whatever the attempts, attempts counted, timing from the first attempt."""

from __future__ import annotations

from pathlib import Path

import pytest

import servemark
from servemark.client.request import retry_delay
from servemark.metrics.derive import ttft_s
from servemark.store.rundir import load_records


def _bench(url: str, out: Path, **kw: object) -> servemark.BenchResult:
    args = {"num_requests": 6, "input_len": 8, "output_len": 8, "concurrency": [3],
            "server_metrics": False, "output_dir": out, **kw}
    return servemark.bench(servemark.BenchConfig(base_url=url, **args))


@pytest.mark.parametrize(("fault", "client"), [("http503", "fast"), ("http429", "aiohttp")])
def test_retry_after_once_then_success(stub_server, tmp_path: Path, fault: str,
                                       client: str) -> None:
    # every 2nd request the stub sees is refused with Retry-After: 1; one at a time, so each
    # refused request's resend is the next one the stub sees, which it serves
    stub = stub_server("--fault", fault, "--fault-every", "2")
    result = _bench(stub.base_url, tmp_path / "r", retries=2, http_client=client,
                    concurrency=[1], num_requests=4)
    recs = load_records(tmp_path / "r").records
    assert sorted(r.request_id for r in recs) == list(range(4))  # each request recorded once
    assert result.points[0].completed == 4 and result.points[0].failed == 0
    retried = [r for r in recs if r.attempts == 2]
    assert retried and all(r.attempts in (1, 2) for r in recs)
    for r in retried:  # the wait the server asked for is inside the request's timing
        assert ttft_s(r) is not None and ttft_s(r) >= 0.95
        assert r.end_s - r.start_s >= 0.95


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
def test_retries_exhausted_is_one_failure(stub_server, tmp_path: Path, client: str) -> None:
    stub = stub_server("--fault", "http503")
    result = _bench(stub.base_url, tmp_path / "r", retries=1, retry_max_wait_s=0.2,
                    http_client=client)
    recs = load_records(tmp_path / "r").records
    assert len(recs) == 6 and {r.attempts for r in recs} == {2}
    assert result.points[0].errors_by_kind == {"http_status": 6}
    assert all(r.status == 503 for r in recs)
    # Retry-After: 1 was capped to retry_max_wait
    assert all(0.15 <= r.end_s - r.start_s < 0.9 for r in recs)


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
def test_connection_reset_before_any_byte_is_retried(stub_server, tmp_path: Path,
                                                     client: str) -> None:
    stub = stub_server("--fault", "reset")
    result = _bench(stub.base_url, tmp_path / "r", retries=2, retry_max_wait_s=0.05,
                    http_client=client)
    recs = load_records(tmp_path / "r").records
    assert len(recs) == 6 and {r.attempts for r in recs} == {3}
    assert result.points[0].errors_by_kind == {"connection": 6}


def test_mid_stream_drop_is_never_retried(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--fault", "drop")
    result = _bench(stub.base_url, tmp_path / "r", retries=3, output_len=16)
    recs = load_records(tmp_path / "r").records
    assert len(recs) == 6 and {r.attempts for r in recs} == {1}
    assert result.points[0].errors_by_kind == {"connection": 6}


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
def test_first_token_timeout(stub_server, tmp_path: Path, client: str) -> None:
    stub = stub_server("--ttft", "3")
    result = _bench(stub.base_url, tmp_path / "r", first_token_timeout_s=0.3,
                    read_timeout_s=30, http_client=client)
    recs = load_records(tmp_path / "r").records
    assert result.points[0].errors_by_kind == {"timeout": 6}
    for r in recs:
        assert "first token" in (r.error or "")
        assert 0.25 <= r.end_s - r.start_s < 1.5


def test_first_token_timeout_does_not_cut_a_long_stream(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.05", "--itl", "0.05")
    result = _bench(stub.base_url, tmp_path / "r", first_token_timeout_s=0.5, output_len=20,
                    num_requests=3)
    assert result.points[0].completed == 3  # each took ~1 s, twice the first-token bound


def test_retry_delay() -> None:
    assert retry_delay({"retry-after": "2"}, 1, 30) == 2
    assert retry_delay({"Retry-After": "120"}, 1, 30) == 30
    assert retry_delay({}, 1, 30) == 0.5 and retry_delay({}, 3, 30) == 2
    assert retry_delay({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1, 30) == 0  # past
    assert retry_delay({"retry-after": "soon"}, 2, 30) == 1.0  # unreadable: backoff
