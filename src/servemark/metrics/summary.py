"""Summary of one load point from its records (pure).

Throughput follows our users' figure of merit: (Σ input + Σ output tokens of successful
requests) / wall time of the measured window, where the window runs from the first measured
request's send to the last measured request's end. Output tokens/s and requests/s use the
same window.

For parity with Meta's on-prem vLLM benchmark (llama-recipes,
recipes/benchmarks/inference_throughput/on-prem/vllm/chat_vllm_benchmark.py) we also report:
per-GPU throughput = throughput / number of GPUs; a request's output speed = its output tokens /
its end-to-end latency, averaged (arithmetic mean) over successful requests; and the "slow
requests": successful requests whose output speed is strictly below ``threshold_tps``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.fidelity import Fidelity, assess_of
from servemark.metrics.record import RequestRecord
from servemark.metrics.stats import Distribution

LATENCY_METRICS = ("ttft_s", "tpot_s", "itl_s", "e2e_s")


@dataclass(slots=True)
class PointSummary:
    """Everything we report about one load point."""

    label: str
    concurrency: int | None
    request_rate: float | None
    completed: int
    failed: int
    cancelled: int
    duration_s: float | None
    requests_per_s: float | None
    input_tokens_per_s: float | None
    output_tokens_per_s: float | None
    total_tokens_per_s: float | None
    input_tokens_total: int
    output_tokens_total: int
    ttft_s: Distribution
    tpot_s: Distribution
    itl_s: Distribution
    e2e_s: Distribution
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    token_sources: dict[str, int] = field(default_factory=dict)
    input_len_mismatches: int = 0
    fidelity: Fidelity | None = None
    # several endpoints (client-side load balancing): the same summary per endpoint
    by_endpoint: dict[str, PointSummary] = field(default_factory=dict)
    # parity with the sites' scripts (added later: None in older summaries)
    num_gpus: int | None = None
    input_tokens_per_s_per_gpu: float | None = None
    output_tokens_per_s_per_gpu: float | None = None
    output_tokens_per_s_per_request: float | None = None  # mean over requests of out / e2e
    threshold_tps: float | None = None
    slow_requests: int | None = None  # requests whose out / e2e < threshold_tps

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "by_endpoint":
                if value:
                    out[name] = {url: s.to_dict() for url, s in value.items()}
                continue
            out[name] = value.to_dict() if isinstance(value, Distribution | Fidelity) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointSummary:
        kwargs = {k: data.get(k) for k in cls.__dataclass_fields__}
        for m in LATENCY_METRICS:
            kwargs[m] = Distribution.from_dict(data.get(m) or {})
        kwargs["errors_by_kind"] = dict(data.get("errors_by_kind") or {})
        kwargs["token_sources"] = dict(data.get("token_sources") or {})
        kwargs["input_len_mismatches"] = int(data.get("input_len_mismatches") or 0)
        fid = data.get("fidelity")
        kwargs["fidelity"] = Fidelity.from_dict(fid) if isinstance(fid, dict) else None
        kwargs["by_endpoint"] = {url: cls.from_dict(d)
                                 for url, d in (data.get("by_endpoint") or {}).items()}
        return cls(**kwargs)  # type: ignore[arg-type]


def _rate(total: float, duration: float | None) -> float | None:
    if duration is None or duration <= 0:
        return None
    return total / duration


def _per_gpu(rate: float | None, num_gpus: int | None) -> float | None:
    return None if rate is None or not num_gpus else rate / num_gpus


def summarize(
    records: Iterable[RequestRecord],
    label: str,
    concurrency: int | None = None,
    request_rate: float | None = None,
    client_cpu_s: float | None = None,
    *,
    num_gpus: int | None = None,
    threshold_tps: float | None = None,
) -> PointSummary:
    """Aggregate the records of one load point. Cancelled requests are neither successes nor
    failures and are excluded from the window. ``num_gpus`` gives the per-GPU rates and
    ``threshold_tps`` the count of slow requests; without them those stay None."""
    acc = PointAccumulator.of(records, threshold_tps)
    return summary_of(acc, label, concurrency, request_rate, client_cpu_s, num_gpus=num_gpus)


def summary_of(
    acc: PointAccumulator,
    label: str,
    concurrency: int | None = None,
    request_rate: float | None = None,
    client_cpu_s: float | None = None,
    *,
    num_gpus: int | None = None,
    loop_lag_p99_s: float | None = None,
    steal_share: float | None = None,
) -> PointSummary:
    """The summary of an accumulated load point (records folded in as they completed)."""
    duration = acc.duration_s
    input_total, output_total = acc.input_tokens, acc.output_tokens
    input_rate = _rate(input_total, duration)
    output_rate = _rate(output_total, duration)
    threshold_tps = acc.threshold_tps
    return PointSummary(
        label=label,
        concurrency=concurrency,
        request_rate=request_rate,
        completed=acc.completed,
        failed=acc.failed,
        cancelled=acc.cancelled,
        duration_s=duration,
        requests_per_s=_rate(acc.completed, duration),
        input_tokens_per_s=input_rate,
        output_tokens_per_s=output_rate,
        total_tokens_per_s=_rate(input_total + output_total, duration),
        input_tokens_total=input_total,
        output_tokens_total=output_total,
        ttft_s=acc.sketch("ttft").distribution(),
        tpot_s=acc.sketch("tpot").distribution(),
        itl_s=acc.sketch("itl").distribution(),
        e2e_s=acc.sketch("e2e").distribution(),
        errors_by_kind=dict(acc.errors),
        token_sources=dict(acc.token_sources),
        input_len_mismatches=acc.input_len_mismatches,
        fidelity=assess_of(acc, duration, client_cpu_s, loop_lag_p99_s, steal_share),
        num_gpus=num_gpus,
        input_tokens_per_s_per_gpu=_per_gpu(input_rate, num_gpus),
        output_tokens_per_s_per_gpu=_per_gpu(output_rate, num_gpus),
        output_tokens_per_s_per_request=acc.sketch("speed").mean,
        threshold_tps=threshold_tps,
        slow_requests=None if threshold_tps is None else acc.slow,
    )


def summarize_by_endpoint(
    records: Iterable[RequestRecord], endpoints: Iterable[str], label: str
) -> dict[str, PointSummary]:
    """One summary per endpoint (each over its own window), in the order the endpoints are given."""
    return by_endpoint_of(PointAccumulator.of(records, by_endpoint=True), endpoints, label)


def by_endpoint_of(acc: PointAccumulator, endpoints: Iterable[str], label: str
                   ) -> dict[str, PointSummary]:
    """Per-endpoint summaries of an accumulator built with ``by_endpoint=True``."""
    subs = acc.endpoints or {}
    return {url: summary_of(subs.get(url) or PointAccumulator(), label) for url in endpoints}
