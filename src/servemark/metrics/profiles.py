"""Other tools' metric conventions, computed from our raw records (pure), so users can put
servemark's numbers beside a number from vLLM's ``bench serve``, GuideLLM or AIPerf.

- ``vllm`` (vllm/benchmarks/serve.py): TPOT per request = (e2e − ttft)/(n − 1), averaged over
  requests; ITL pooled over all gaps between chunks; percentiles over requests. Same as ours.
- ``guidellm`` (guidellm request statistics): ITL per request = (last token − first token)/(n − 1),
  TPOT per request = (last token − first token)/n — both exclude the tail after the last token.
- ``aiperf`` (aiperf InterTokenLatencyMetric): ITL per request = (request latency − ttft)/(n − 1),
  i.e. our TPOT; output token throughput per user = (n − 1)/(e2e − ttft).
"""

from __future__ import annotations

from collections.abc import Sequence

from servemark.metrics import derive
from servemark.metrics.record import RequestRecord
from servemark.metrics.stats import Distribution, describe

PROFILES = ("vllm", "guidellm", "aiperf")


def _ms(d: Distribution) -> list[tuple[str, float | None]]:
    def conv(v: float | None) -> float | None:
        return None if v is None else v * 1000.0

    return [("mean", conv(d.mean)), ("median", conv(d.p50)), ("p99", conv(d.p99))]


def profile_rows(records: Sequence[RequestRecord], profile: str) -> list[tuple[str, float | None]]:
    """(metric name in that tool's words, value) rows for the successful records."""
    if profile not in PROFILES:
        raise ValueError(f"unknown metrics profile {profile!r}; choose one of {', '.join(PROFILES)}")
    ok = [r for r in records if r.ok]
    rows: list[tuple[str, float | None]] = []
    ttft = describe([t for r in ok if (t := derive.ttft_s(r)) is not None])
    if profile == "vllm":
        tpot = describe([t for r in ok if (t := derive.tpot_s(r)) is not None])
        itl = describe([g for r in ok for g in derive.itl_s(r)])
        for name, d in (("TTFT", ttft), ("TPOT", tpot), ("ITL", itl)):
            rows += [(f"{stat.capitalize()} {name} (ms)", v) for stat, v in _ms(d)]
        return rows
    if profile == "guidellm":
        itl_g, tpot_g = [], []
        for r in ok:
            times, n = r.chunk_times_s, r.output_tokens or 0
            if times and n >= 2:
                itl_g.append((times[-1] - times[0]) / (n - 1))
                tpot_g.append((times[-1] - times[0]) / n)
        lat = describe([derive.e2e_s(r) for r in ok])
        for name, d in (("time_to_first_token_ms", ttft), ("inter_token_latency_ms", describe(itl_g)),
                        ("time_per_output_token_ms", describe(tpot_g))):
            rows += [(f"{name} {stat}", v) for stat, v in _ms(d)]
        rows += [(f"request_latency (s) {stat}", None if v is None else v / 1000) for stat, v in _ms(lat)]
        return rows
    itl_a = [t for r in ok if (t := derive.tpot_s(r)) is not None]
    per_user = [1.0 / t for t in itl_a if t > 0]
    for name, d in (("Time to First Token (ms)", ttft), ("Inter Token Latency (ms)", describe(itl_a)),
                    ("Request Latency (ms)", describe([derive.e2e_s(r) for r in ok]))):
        rows += [(f"{name} {stat}", v) for stat, v in _ms(d)]
    pu = describe(per_user)
    rows += [("Output Token Throughput Per User (tokens/sec/user) mean", pu.mean),
             ("Output Token Throughput Per User (tokens/sec/user) median", pu.p50)]
    return rows
