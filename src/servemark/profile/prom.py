"""Prometheus exposition text → one flat sample of canonical server metrics (pure, no I/O).

Parsing is prometheus_client's text parser. Names differ across servers and vLLM versions, so
each canonical name lists its known spellings (first present wins); everything else that is a
counter or gauge (and the _sum/_count of other histograms) is kept raw under its own name.
Sources for the names: vLLM V0 ``vllm/engine/metrics.py`` as listed in
https://docs.vllm.ai/en/v0.5.3/serving/metrics.html (gpu_cache_usage_perc, num_requests_swapped,
time_per_output_token_seconds); vLLM 0.32 ``vllm/v1/metrics/loggers.py`` (kv_cache_usage_perc,
request_time_per_output_token_seconds, inter_token_latency_seconds); SGLang
``sglang/srt/metrics/collector.py`` (num_running_reqs, num_queue_reqs, token_usage).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# canonical name -> (kind, spellings). "sum": summed across label sets (engines, reasons);
# "mean": averaged across label sets (a fraction per engine).
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "requests_running": ("sum", ("vllm:num_requests_running", "sglang:num_running_reqs")),
    "requests_waiting": ("sum", ("vllm:num_requests_waiting", "sglang:num_queue_reqs")),
    "requests_swapped": ("sum", ("vllm:num_requests_swapped",)),
    # both spellings are a fraction (1 = 100 %) despite the "_perc" suffix
    "kv_cache_usage": ("mean", ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                                "sglang:token_usage")),
    "cpu_cache_usage": ("mean", ("vllm:cpu_cache_usage_perc",)),
    "prefix_cache_hit_rate": ("mean", ("vllm:gpu_prefix_cache_hit_rate", "sglang:cache_hit_rate")),
}
COUNTERS: dict[str, tuple[str, ...]] = {
    "prompt_tokens_total": ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
    "generation_tokens_total": ("vllm:generation_tokens_total", "sglang:generation_tokens_total"),
    "preemptions_total": ("vllm:num_preemptions_total",),
    "requests_finished_total": ("vllm:request_success_total", "sglang:num_requests_total"),
    "prefix_cache_queries_total": ("vllm:prefix_cache_queries_total",
                                   "vllm:gpu_prefix_cache_queries_total"),
    "prefix_cache_hits_total": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
}
HISTOGRAMS: dict[str, tuple[str, ...]] = {
    "ttft_s": ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds"),
    "e2e_s": ("vllm:e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds"),
    "tpot_s": ("vllm:request_time_per_output_token_seconds", "vllm:time_per_output_token_seconds",
               "sglang:time_per_output_token_seconds"),
    "itl_s": ("vllm:inter_token_latency_seconds", "sglang:inter_token_latency_seconds"),
    "queue_s": ("vllm:request_queue_time_seconds",),
}
KNOWN = ({n for _, names in GAUGES.values() for n in names}
         | {n for names in COUNTERS.values() for n in names}
         | {n for names in HISTOGRAMS.values() for n in names})


@dataclass
class Histogram:
    """A cumulative histogram summed across label sets: buckets are (upper bound, count ≤ it)."""

    sum: float = 0.0
    count: float = 0.0
    buckets: list[tuple[float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "count": self.count,
                "buckets": [[_le_json(le), c] for le, c in self.buckets]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        return cls(float(data["sum"]), float(data["count"]),
                   [(math.inf if le == "+Inf" else float(le), float(c)) for le, c in data["buckets"]])

    def minus(self, earlier: Histogram) -> Histogram:
        """The observations made between two scrapes (counters are cumulative)."""
        before = dict(earlier.buckets)
        return Histogram(self.sum - earlier.sum, self.count - earlier.count,
                         [(le, c - before.get(le, 0.0)) for le, c in self.buckets])

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket, as PromQL's histogram_quantile does;
        None without observations. The +Inf bucket answers with the last finite bound."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        prev_le, prev_c = 0.0, 0.0
        for le, c in self.buckets:
            if c >= rank:
                if math.isinf(le):
                    return prev_le
                if c == prev_c:
                    return le
                return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
            prev_le, prev_c = le, c
        return prev_le

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None


def _le_json(le: float) -> float | str:
    return "+Inf" if math.isinf(le) else le


@dataclass
class Scrape:
    """One /metrics reading: canonical values, histograms, and unknown metrics by raw name."""

    values: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # canonical -> the spelling found

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values,
                "histograms": {k: h.to_dict() for k, h in self.histograms.items()},
                "raw": self.raw, "names": self.names}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scrape:
        return cls(dict(data.get("values") or {}),
                   {k: Histogram.from_dict(h) for k, h in (data.get("histograms") or {}).items()},
                   dict(data.get("raw") or {}), dict(data.get("names") or {}))


def _label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def parse_exposition(text: str) -> Scrape:
    """Parse exposition text (raises ValueError on text the parser rejects)."""
    from prometheus_client.parser import text_string_to_metric_families

    by_name: dict[str, list[float]] = {}
    hist_parts: dict[str, Histogram] = {}
    bucket_sums: dict[str, dict[float, float]] = {}
    raw: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            value = float(s.value)
            if family.type in ("histogram", "gaugehistogram") and family.name in KNOWN:
                h = hist_parts.setdefault(family.name, Histogram())
                if s.name.endswith("_bucket"):
                    le = float(s.labels.get("le", "+Inf"))
                    sums = bucket_sums.setdefault(family.name, {})
                    sums[le] = sums.get(le, 0.0) + value
                elif s.name.endswith("_sum"):
                    h.sum += value
                elif s.name.endswith("_count"):
                    h.count += value
                continue
            if s.name in KNOWN:
                by_name.setdefault(s.name, []).append(value)
                continue
            if s.name.endswith(("_bucket", "_created")) or family.type == "info":
                continue  # bucket series and creation times are noise in a time series
            if math.isfinite(value):
                raw[s.name + _label_text(dict(s.labels))] = value
    for name, sums in bucket_sums.items():
        hist_parts[name].buckets = sorted(sums.items())

    scrape = Scrape(raw=raw)
    for canon, (how, names) in GAUGES.items():
        for n in names:
            if n in by_name:
                vals = by_name[n]
                scrape.values[canon] = sum(vals) if how == "sum" else sum(vals) / len(vals)
                scrape.names[canon] = n
                break
    for canon, names in COUNTERS.items():
        for n in names:
            if n in by_name:
                scrape.values[canon] = sum(by_name[n])
                scrape.names[canon] = n
                break
    for canon, names in HISTOGRAMS.items():
        for n in names:
            if n in hist_parts:
                scrape.histograms[canon] = hist_parts[n]
                scrape.names[canon] = n
                break
    return scrape


def known_spellings() -> Iterable[str]:
    return sorted(KNOWN)
