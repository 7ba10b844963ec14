"""Other tools' conventions computed from the same records, against hand-computed values."""

from __future__ import annotations

import pytest

from servemark.metrics.profiles import profile_rows
from servemark.metrics.record import RequestRecord

# ttft 0.1; chunks at 0.1, 0.2, 0.4 (3 chunks, 5 tokens); last byte at 0.5
REC = RequestRecord(0, "p", "e", "completions", 0.0, 0.5, chunk_times_s=[0.1, 0.2, 0.4],
                    output_tokens=5, input_tokens=3, ok=True, token_source="usage")


def rows(profile: str) -> dict[str, float | None]:
    return dict(profile_rows([REC], profile))


def test_vllm_conventions() -> None:
    r = rows("vllm")
    assert r["Mean TTFT (ms)"] == pytest.approx(100)
    assert r["Mean TPOT (ms)"] == pytest.approx((0.5 - 0.1) / 4 * 1000)
    assert r["Mean ITL (ms)"] == pytest.approx(150)  # pooled gaps 100 and 200 ms


def test_guidellm_conventions_exclude_the_tail() -> None:
    r = rows("guidellm")
    assert r["inter_token_latency_ms mean"] == pytest.approx((0.4 - 0.1) / 4 * 1000)
    assert r["time_per_output_token_ms mean"] == pytest.approx((0.4 - 0.1) / 5 * 1000)
    assert r["request_latency (s) mean"] == pytest.approx(0.5)


def test_aiperf_conventions() -> None:
    r = rows("aiperf")
    assert r["Inter Token Latency (ms) mean"] == pytest.approx(100)
    assert r["Output Token Throughput Per User (tokens/sec/user) mean"] == pytest.approx(10.0)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown metrics profile"):
        profile_rows([REC], "llmperf")
