"""How faithful a load point's measurement is, and other tools' metric definitions (pure).

- Schedule lag (open loop): actual send − intended send. Latencies measured from the *intended*
  send time include the time a request waited because the client fell behind — the correction for
  coordinated omission; both are reported.
- Client-bound: the client, not the server, set the pace when its event loop used nearly a whole
  core over the window, when open-loop requests left late, or when its own work (at least half
  a core) made the event loop run late enough for reads of one stream to merge, or when the
  hypervisor took a noticeable share of the client's cores (steal time: the client was paused,
  and the pauses count as latency).
- Other tools' definitions, so numbers can be reconciled: TPOT as e2e / n (some tools), ITL as
  the mean of per-request means (vs pooled over all gaps), output tokens per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord
from servemark.metrics.stats import Distribution

CLIENT_CPU_BOUND = 0.90  # fraction of one core used by the client's event loop
LAG_BOUND_S = 0.010  # p99 schedule lag above which an open-loop run is client-bound
LOOP_LAG_BOUND_S = 0.005  # p99 event-loop lateness above which reads may merge (client-bound)
# ...when the client's own work made it late: a loop that is late while the client used little
# CPU was starved by other processes (a server on the same cores); recorded, not flagged
LOOP_LAG_MIN_CPU = 0.5
# share of the client cores' time the hypervisor took (steal): its pauses land in TTFT and ITL
STEAL_BOUND = 0.05


@dataclass(slots=True)
class Fidelity:
    schedule_lag_s: Distribution
    ttft_from_intended_s: Distribution
    e2e_from_intended_s: Distribution
    tpot_e2e_over_n_s: Distribution
    itl_per_request_mean_s: Distribution
    tokens_per_chunk_mean: float | None
    client_cpu_s: float | None
    client_cpu_util: float | None
    client_bound: bool = False
    client_bound_reasons: list[str] = field(default_factory=list)
    loop_lag_p99_s: float | None = None  # how late the client event loop ran (the latest worker)
    steal_share: float | None = None  # of the client cores' time, taken by the hypervisor

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.to_dict() if isinstance(value, Distribution) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fidelity:
        kwargs: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            value = data.get(name)
            if f.type in ("Distribution", Distribution):
                value = Distribution.from_dict(value or {})
            kwargs[name] = value
        kwargs["client_bound"] = bool(kwargs.get("client_bound"))
        kwargs["client_bound_reasons"] = list(kwargs.get("client_bound_reasons") or [])
        return cls(**kwargs)


def assess(ok: Sequence[RequestRecord], duration_s: float | None,
           client_cpu_s: float | None) -> Fidelity:
    """Fidelity figures of the successful records of one load point."""
    return assess_of(PointAccumulator.of(ok), duration_s, client_cpu_s)


def assess_of(acc: PointAccumulator, duration_s: float | None,
              client_cpu_s: float | None, loop_lag_p99_s: float | None = None,
              steal_share: float | None = None) -> Fidelity:
    """Fidelity figures of an accumulated load point (its successful records)."""
    util = None
    if client_cpu_s is not None and duration_s:
        util = client_cpu_s / duration_s
    lag_d = acc.sketch("lag").distribution()
    reasons: list[str] = []
    if util is not None and util >= CLIENT_CPU_BOUND:
        reasons.append(f"client CPU at {util:.0%} of a core")
    if lag_d.p99 is not None and lag_d.p99 > LAG_BOUND_S:
        reasons.append(f"p99 schedule lag {lag_d.p99 * 1000:.1f} ms")
    if (loop_lag_p99_s is not None and loop_lag_p99_s > LOOP_LAG_BOUND_S
            and util is not None and util >= LOOP_LAG_MIN_CPU):
        reasons.append(f"event loop p99 {loop_lag_p99_s * 1000:.1f} ms late (reads may merge)")
    if steal_share is not None and steal_share >= STEAL_BOUND:
        reasons.append(f"the hypervisor took {steal_share:.0%} of the client cores' time "
                       "(steal: its pauses count as latency)")
    return Fidelity(
        schedule_lag_s=lag_d,
        ttft_from_intended_s=acc.sketch("ttft_intended").distribution(),
        e2e_from_intended_s=acc.sketch("e2e_intended").distribution(),
        tpot_e2e_over_n_s=acc.sketch("tpot_e2e_over_n").distribution(),
        itl_per_request_mean_s=acc.sketch("itl_request_mean").distribution(),
        tokens_per_chunk_mean=(acc.chunk_tokens / acc.chunks) if acc.chunks else None,
        client_cpu_s=client_cpu_s,
        client_cpu_util=util,
        client_bound=bool(reasons),
        client_bound_reasons=reasons,
        loop_lag_p99_s=loop_lag_p99_s,
        steal_share=steal_share,
    )
