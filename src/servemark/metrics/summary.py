"""Summary of one load point from its records (pure).

Throughput follows our users' figure of merit: (Σ input + Σ output tokens of successful
requests) / wall time of the measured window, where the window runs from the first measured
request's send to the last measured request's end. Output tokens/s and requests/s use the
same window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servemark.metrics import derive
from servemark.metrics.fidelity import Fidelity, assess
from servemark.metrics.record import RequestRecord
from servemark.metrics.stats import Distribution, describe

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

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
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
        return cls(**kwargs)  # type: ignore[arg-type]


def _rate(total: float, duration: float | None) -> float | None:
    if duration is None or duration <= 0:
        return None
    return total / duration


def summarize(
    records: Iterable[RequestRecord],
    label: str,
    concurrency: int | None = None,
    request_rate: float | None = None,
    client_cpu_s: float | None = None,
) -> PointSummary:
    """Aggregate the records of one load point. Cancelled requests are neither successes nor
    failures and are excluded from the window."""
    everything = list(records)
    recs = [r for r in everything if r.error_kind != "cancelled"]
    cancelled = len(everything) - len(recs)
    ok = [r for r in recs if r.ok]
    failed = [r for r in recs if not r.ok]

    duration: float | None = None
    if recs:
        duration = max(r.end_s for r in recs) - min(r.start_s for r in recs)

    input_total = sum(r.input_tokens or 0 for r in ok)
    output_total = sum(r.output_tokens or 0 for r in ok)

    ttft = [v for r in ok if (v := derive.ttft_s(r)) is not None]
    tpot = [v for r in ok if (v := derive.tpot_s(r)) is not None]
    e2e = [derive.e2e_s(r) for r in ok]
    itl_parts = [np.diff(np.asarray(r.chunk_times_s)) for r in ok if r.streamed and len(r.chunk_times_s) > 1]
    itl = np.concatenate(itl_parts) if itl_parts else np.empty(0)

    mismatches = sum(
        1
        for r in ok
        if r.requested_input_tokens is not None
        and r.input_tokens is not None
        and r.token_source == "usage"
        and r.input_tokens != r.requested_input_tokens
    )

    return PointSummary(
        label=label,
        concurrency=concurrency,
        request_rate=request_rate,
        completed=len(ok),
        failed=len(failed),
        cancelled=cancelled,
        duration_s=duration,
        requests_per_s=_rate(len(ok), duration),
        input_tokens_per_s=_rate(input_total, duration),
        output_tokens_per_s=_rate(output_total, duration),
        total_tokens_per_s=_rate(input_total + output_total, duration),
        input_tokens_total=input_total,
        output_tokens_total=output_total,
        ttft_s=describe(ttft),
        tpot_s=describe(tpot),
        itl_s=describe(itl),
        e2e_s=describe(e2e),
        errors_by_kind=dict(Counter(r.error_kind or "unknown" for r in failed)),
        token_sources=dict(Counter(r.token_source or "none" for r in ok)),
        input_len_mismatches=mismatches,
        fidelity=assess(ok, duration, client_cpu_s),
    )
