"""Per-request metrics derived from a RequestRecord's raw timestamps (pure).

Definitions (DESIGN.md):
- ``ttft_s`` = time of the first content chunk − request sent;
- ``itl_s``  = gaps between consecutive content chunks (a chunk carrying k tokens is one gap);
- ``tpot_s`` = (e2e − ttft) / (output_tokens − 1), undefined (None) for outputs of < 2 tokens;
- ``e2e_s``  = last byte − request sent.
Undefined is ``None``, never 0.
"""

from __future__ import annotations

from servemark.metrics.record import RequestRecord


def e2e_s(rec: RequestRecord) -> float:
    return rec.end_s - rec.start_s


def ttft_s(rec: RequestRecord) -> float | None:
    if not rec.streamed or not rec.chunk_times_s:
        return None
    return rec.chunk_times_s[0]


def itl_s(rec: RequestRecord) -> list[float]:
    t = rec.chunk_times_s
    if not rec.streamed or len(t) < 2:
        return []
    return [t[i + 1] - t[i] for i in range(len(t) - 1)]


def tpot_s(rec: RequestRecord) -> float | None:
    first = ttft_s(rec)
    n = rec.output_tokens
    if first is None or n is None or n < 2:
        return None
    return (e2e_s(rec) - first) / (n - 1)


def output_tps(rec: RequestRecord) -> float | None:
    """Output tokens per second of one request over its whole lifetime (e2e)."""
    n = rec.output_tokens
    e = e2e_s(rec)
    if n is None or e <= 0:
        return None
    return n / e
