"""Summaries of a /metrics time series over one load point (pure): peaks of the queue, mean KV
cache use, counter deltas, the server's own latency quantiles over the window, and how the
server's token counters compare with what the client counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from servemark.profile.prom import Scrape


@dataclass
class TokenCheck:
    """Server counter delta against the client's total for the same window."""

    server: float | None
    client: int
    diff: float | None  # server - client
    rel_diff: float | None  # diff / client; None when the client counted nothing


@dataclass
class WindowSummary:
    endpoint: str
    load_point: str
    samples: int
    duration_s: float | None
    peak_running: float | None
    peak_waiting: float | None
    mean_running: float | None
    mean_kv_cache_usage: float | None  # fraction, 1 = full
    peak_kv_cache_usage: float | None
    preemptions: float | None
    prompt_tokens: TokenCheck | None
    generation_tokens: TokenCheck | None
    server_ttft_p50_s: float | None
    server_ttft_p99_s: float | None
    server_e2e_p50_s: float | None
    server_e2e_p99_s: float | None
    names: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stat(values: list[float], how: str) -> float | None:
    if not values:
        return None
    return max(values) if how == "max" else sum(values) / len(values)


def _delta(first: Scrape, last: Scrape, name: str) -> float | None:
    if name not in first.values or name not in last.values:
        return None
    return last.values[name] - first.values[name]


def _check(server: float | None, client: int | None) -> TokenCheck | None:
    if client is None:
        return None
    diff = None if server is None else server - client
    rel = None if diff is None or client == 0 else diff / client
    return TokenCheck(server, client, diff, rel)


def summarize_window(endpoint: str, load_point: str, series: Sequence[tuple[float, Scrape]],
                     client_prompt_tokens: int | None = None,
                     client_output_tokens: int | None = None) -> WindowSummary:
    """``series``: (seconds, scrape) in time order; the first and last bracket the window."""
    def values(name: str) -> list[float]:
        return [s.values[name] for _, s in series if name in s.values]

    first = series[0][1] if series else Scrape()
    last = series[-1][1] if series else Scrape()
    lat: dict[str, float | None] = {}
    for key in ("ttft_s", "e2e_s"):
        h0, h1 = first.histograms.get(key), last.histograms.get(key)
        window = h1.minus(h0) if h0 is not None and h1 is not None else None
        lat[f"{key}_p50"] = window.quantile(0.5) if window else None
        lat[f"{key}_p99"] = window.quantile(0.99) if window else None
    names: dict[str, str] = {}
    for _, s in series:
        names.update(s.names)
    return WindowSummary(
        endpoint=endpoint,
        load_point=load_point,
        samples=len(series),
        duration_s=(series[-1][0] - series[0][0]) if len(series) > 1 else None,
        peak_running=_stat(values("requests_running"), "max"),
        peak_waiting=_stat(values("requests_waiting"), "max"),
        mean_running=_stat(values("requests_running"), "mean"),
        mean_kv_cache_usage=_stat(values("kv_cache_usage"), "mean"),
        peak_kv_cache_usage=_stat(values("kv_cache_usage"), "max"),
        preemptions=_delta(first, last, "preemptions_total"),
        prompt_tokens=_check(_delta(first, last, "prompt_tokens_total"), client_prompt_tokens),
        generation_tokens=_check(_delta(first, last, "generation_tokens_total"), client_output_tokens),
        server_ttft_p50_s=lat["ttft_s_p50"],
        server_ttft_p99_s=lat["ttft_s_p99"],
        server_e2e_p50_s=lat["e2e_s_p50"],
        server_e2e_p99_s=lat["e2e_s_p99"],
        names=names,
    )
