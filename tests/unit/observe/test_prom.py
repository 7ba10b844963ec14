"""Prometheus exposition parsing and the per-window summary, on texts from two vLLM versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from servemark.profile.prom import Histogram, parse_exposition
from servemark.profile.window import summarize_window

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"


def test_vllm_0_6_names_map_to_canonical_ones() -> None:
    s = parse_exposition((FIX / "vllm_0_6_gpu.txt").read_text())
    assert s.values["kv_cache_usage"] == pytest.approx(0.9634)
    assert s.names["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"
    assert s.values["requests_running"] == 37 and s.values["requests_waiting"] == 11
    assert s.values["requests_swapped"] == 2
    assert s.values["preemptions_total"] == 14
    assert s.values["prompt_tokens_total"] == 1048576
    assert s.values["requests_finished_total"] == 1200 + 848  # summed over finished_reason
    assert s.names["tpot_s"] == "vllm:time_per_output_token_seconds"
    # unknown metrics are kept raw with their labels; _sum/_count of unknown histograms too
    assert any(k.startswith("vllm:avg_prompt_throughput_toks_per_s{") for k in s.raw)
    assert any(k.startswith("vllm:request_prompt_tokens_count{") for k in s.raw)
    assert not any("_bucket" in k for k in s.raw)


def test_vllm_0_32_names_map_to_canonical_ones() -> None:
    s = parse_exposition((FIX / "vllm_0_32_cpu.txt").read_text())
    assert s.names["kv_cache_usage"] == "vllm:kv_cache_usage_perc"
    assert s.names["tpot_s"] == "vllm:request_time_per_output_token_seconds"
    assert s.names["itl_s"] == "vllm:inter_token_latency_seconds"
    for key in ("requests_running", "requests_waiting", "prompt_tokens_total",
                "generation_tokens_total", "preemptions_total"):
        assert key in s.values
    ttft = s.histograms["ttft_s"]
    assert ttft.count == s.values["requests_finished_total"]  # one TTFT per finished request
    assert ttft.buckets[-1][1] == ttft.count  # +Inf bucket holds every observation
    assert not any(k.endswith("_created") or "_created{" in k for k in s.raw)
    assert "process_resident_memory_bytes" in s.raw


def test_histogram_quantile_interpolates_like_promql() -> None:
    s = parse_exposition((FIX / "vllm_0_6_gpu.txt").read_text())
    h = s.histograms["ttft_s"]
    # rank 1024 falls in (0.08, 0.1] holding 600 observations after the first 900
    assert h.quantile(0.5) == pytest.approx(0.08 + 0.02 * (1024 - 900) / 600)
    assert h.mean == pytest.approx(409.6 / 2048)
    assert Histogram().quantile(0.5) is None


ENGINES = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 5.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} %d
vllm:prompt_tokens_total{engine="1",model_name="m"} 100.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} %d
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} %d
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} %d
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.0
"""


def test_engines_are_combined_and_windows_use_deltas() -> None:
    first = parse_exposition(ENGINES % (1000, 10, 10, 10))
    assert first.values["requests_running"] == 8  # summed over data-parallel engines
    assert first.values["kv_cache_usage"] == pytest.approx(0.4)  # averaged
    last = parse_exposition(ENGINES % (1500, 10, 30, 30))
    w = summarize_window("http://x", "c=1", [(0.0, first), (1.0, last)], client_prompt_tokens=480)
    assert w.prompt_tokens is not None
    assert w.prompt_tokens.server == 500 and w.prompt_tokens.diff == 20
    assert w.prompt_tokens.rel_diff == pytest.approx(20 / 480)
    # the window saw 20 new TTFTs, all above 0.1 s: the median is the last finite bound
    assert w.server_ttft_p50_s == pytest.approx(0.1)
    assert w.peak_running == 8 and w.duration_s == 1.0
    assert w.generation_tokens is None  # the client total was not given


def test_garbage_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_exposition("<html>not metrics</html>\n")
