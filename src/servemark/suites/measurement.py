"""The result of one point (pure): per-iteration latencies and token counts, and what follows.

Throughput is our users' figure of merit: Σ (input + output) tokens / Σ iteration latencies.
When every iteration generated exactly what was asked this equals B × (I + O) / mean latency
(the offline definition) and total tokens / end-to-end time (the online one). Latency
percentiles are p10 p25 p50 p75 p90 p99, linearly interpolated (servemark.metrics.stats).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from servemark.metrics.stats import describe, percentile
from servemark.suites.point import Point

LATENCY_PERCENTILES: tuple[int, ...] = (10, 25, 50, 75, 90, 99)
Status = Literal["ok", "failed"]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Seconds. ``None`` everywhere for an empty sample."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    p10: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p90: float | None
    p99: float | None


def latency_stats(latencies_s: list[float]) -> LatencyStats:
    d = describe(latencies_s)
    pct = {f"p{q}": percentile(latencies_s, q) for q in LATENCY_PERCENTILES}
    return LatencyStats(mean=d.mean, std=d.std, min=d.min, max=d.max, **pct)


@dataclass
class Measurement:
    """One measured (or failed) point, as written to a sweep's journal and CSV."""

    point: Point
    mode: str
    model: str
    status: Status
    error: str | None = None
    latencies_s: list[float] = field(default_factory=list)
    input_tokens: list[int] = field(default_factory=list)  # per timed iteration, whole batch
    output_tokens: list[int] = field(default_factory=list)
    num_iters_warmup: int = 0
    hardware: str = "unknown"
    num_hardware: int | None = None
    framework: str = "vllm"
    framework_version: str | None = None
    precision: str | None = None
    max_model_len: int | None = None  # the engine's (or server's) effective value when known
    flops_prefill: float | None = None  # FLOP-rate form, per iteration (see suites.flops)
    flops_decode: float | None = None
    base_url: str | None = None
    started_at: str | None = None
    wall_s: float | None = None  # whole point, engine start included

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def latency(self) -> LatencyStats:
        return latency_stats(self.latencies_s)

    @property
    def tokens_exact(self) -> bool:
        """Every timed iteration processed exactly B × I prompt and B × O generated tokens."""
        p = self.point
        return bool(self.latencies_s) and all(
            i == p.batch_size * p.input_len and o == p.batch_size * p.output_len
            for i, o in zip(self.input_tokens, self.output_tokens, strict=True))

    def _per_s(self, tokens: int) -> float | None:
        total = sum(self.latencies_s)
        return tokens / total if self.latencies_s and total > 0 else None

    @property
    def throughput_tokens_per_s(self) -> float | None:
        return self._per_s(sum(self.input_tokens) + sum(self.output_tokens))

    @property
    def output_tokens_per_s(self) -> float | None:
        return self._per_s(sum(self.output_tokens))

    @property
    def flop_rate_per_s(self) -> float | None:
        """(C_prefill + C_decode) / mean latency, FLOP/s; None without the model's shape."""
        mean = self.latency.mean
        if self.flops_prefill is None or self.flops_decode is None or not mean:
            return None
        return (self.flops_prefill + self.flops_decode) / mean

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["point"] = self.point.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Tolerant of fields added by newer versions (ignored)."""
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["point"] = Point(**data["point"])
        return cls(**kwargs)


def failed(point: Point, mode: str, model: str, reason: str, **extra: Any) -> Measurement:
    """A point that produced no measurement, with the reason in one line."""
    return Measurement(point=point, mode=mode, model=model, status="failed",
                       error=one_line(reason), **extra)


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace so a reason fits one CSV cell / terminal line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
