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

from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord
from servemark.metrics.stats import Distribution

PROFILES = ("vllm", "guidellm", "aiperf")


def _ms(d: Distribution) -> list[tuple[str, float | None]]:
    def conv(v: float | None) -> float | None:
        return None if v is None else v * 1000.0

    return [("mean", conv(d.mean)), ("median", conv(d.p50)), ("p99", conv(d.p99))]


def profile_rows(records: Sequence[RequestRecord], profile: str) -> list[tuple[str, float | None]]:
    """(metric name in that tool's words, value) rows for the successful records."""
    if profile not in PROFILES:
        raise ValueError(f"unknown metrics profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile_rows_of(PointAccumulator.of(records), profile)


def profile_rows_of(acc: PointAccumulator, profile: str) -> list[tuple[str, float | None]]:
    """The same rows from an accumulated load point."""
    if profile not in PROFILES:
        raise ValueError(f"unknown metrics profile {profile!r}; choose one of {', '.join(PROFILES)}")

    def dist(name: str) -> Distribution:
        return acc.sketch(name).distribution()

    rows: list[tuple[str, float | None]] = []
    ttft = dist("ttft")
    if profile == "vllm":
        for name, d in (("TTFT", ttft), ("TPOT", dist("tpot")), ("ITL", dist("itl"))):
            rows += [(f"{stat.capitalize()} {name} (ms)", v) for stat, v in _ms(d)]
        return rows
    if profile == "guidellm":
        lat = dist("e2e")
        for name, d in (("time_to_first_token_ms", ttft),
                        ("inter_token_latency_ms", dist("guidellm_itl")),
                        ("time_per_output_token_ms", dist("guidellm_tpot"))):
            rows += [(f"{name} {stat}", v) for stat, v in _ms(d)]
        rows += [(f"request_latency (s) {stat}", None if v is None else v / 1000) for stat, v in _ms(lat)]
        return rows
    for name, d in (("Time to First Token (ms)", ttft), ("Inter Token Latency (ms)", dist("tpot")),
                    ("Request Latency (ms)", dist("e2e"))):
        rows += [(f"{name} {stat}", v) for stat, v in _ms(d)]
    pu = dist("per_user_tps")
    rows += [("Output Token Throughput Per User (tokens/sec/user) mean", pu.mean),
             ("Output Token Throughput Per User (tokens/sec/user) median", pu.p50)]
    return rows
