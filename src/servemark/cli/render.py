"""Renderables for results (pure descriptions; the console prints them): the rich summary table
and a markdown table laid out like Meta's on-prem vLLM benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from servemark.metrics.summary import PointSummary


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f}"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def summary_table(points: Sequence[PointSummary], title: str | None = None) -> Table:
    """Metrics as rows, one column per load point (stays narrow however many metrics we show)."""
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("metric")
    for p in points:
        table.add_column(p.label, justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("requests ok", [str(p.completed) for p in points]),
        ("requests failed", [f"[red]{p.failed}[/red]" if p.failed else "0" for p in points]),
        ("duration s", [_num(p.duration_s, "{:.2f}") for p in points]),
        ("requests/s", [_num(p.requests_per_s, "{:.2f}") for p in points]),
        ("input tokens/s", [_num(p.input_tokens_per_s) for p in points]),
        ("output tokens/s", [_num(p.output_tokens_per_s) for p in points]),
    ]
    if any(p.num_gpus for p in points):
        rows += [
            ("input tokens/s per GPU", [_num(p.input_tokens_per_s_per_gpu) for p in points]),
            ("output tokens/s per GPU", [_num(p.output_tokens_per_s_per_gpu) for p in points]),
        ]
    rows.append(("mean output tokens/s per request", [_num(p.output_tokens_per_s_per_request) for p in points]))
    thresholds = {p.threshold_tps for p in points if p.threshold_tps is not None}
    if thresholds:
        what = f"< {thresholds.pop():g} tok/s" if len(thresholds) == 1 else "below threshold"
        rows.append((f"slow requests ({what})",
                     [_num(p.slow_requests, "{:d}") for p in points]))
    rows.append(("total tokens/s", [_num(p.total_tokens_per_s) for p in points]))
    for name, attr in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E", "e2e_s")):
        dists = [getattr(p, attr) for p in points]
        rows.append((f"{name} mean ms", [_ms(d.mean) for d in dists]))
        for q in ("p50", "p90", "p99"):
            rows.append((f"{name} {q} ms", [_ms(getattr(d, q)) for d in dists]))
    if any(p.request_rate is not None for p in points):
        lags = [p.fidelity.schedule_lag_s if p.fidelity else None for p in points]
        rows.append(("schedule lag p50 ms", [_ms(d.p50) if d else "–" for d in lags]))
        rows.append(("schedule lag p99 ms", [_ms(d.p99) if d else "–" for d in lags]))
        e2e_int = [p.fidelity.e2e_from_intended_s if p.fidelity else None for p in points]
        rows.append(("E2E from intended p99 ms", [_ms(d.p99) if d else "–" for d in e2e_int]))
    rows.append(("client CPU % of a core", [
        _num(p.fidelity.client_cpu_util * 100, "{:.0f}")
        if p.fidelity and p.fidelity.client_cpu_util is not None else "–" for p in points]))
    for i, (name, cells) in enumerate(rows):
        table.add_row(name, *cells, end_section=name in ("requests failed", "total tokens/s")
                      or name.endswith("p99 ms") and i < len(rows) - 1)
    return table


def client_bound_lines(points: Sequence[PointSummary]) -> list[str]:
    """Warnings for load points where the client, not the server, set the pace."""
    return [f"{p.label}: client-bound ({'; '.join(p.fidelity.client_bound_reasons)}) — the figures "
            f"measure this client; spread the load over more client processes or machines"
            for p in points if p.fidelity and p.fidelity.client_bound]
def endpoint_table(points: Sequence[PointSummary], title: str | None = "per endpoint") -> Table | None:
    """The per-endpoint breakdown (several endpoints): one row per endpoint and load point."""
    if not any(p.by_endpoint for p in points):
        return None
    table = Table(title=title, header_style="bold", title_justify="left")
    for name in ("load point", "endpoint", "ok", "failed", "requests/s", "output tokens/s",
                 "TTFT p50 ms", "TTFT p99 ms", "E2E p50 ms"):
        table.add_column(name, justify="left" if name in ("load point", "endpoint") else "right")
    for p in points:
        for url, s in p.by_endpoint.items():
            table.add_row(p.label, url, str(s.completed),
                          f"[red]{s.failed}[/red]" if s.failed else "0",
                          _num(s.requests_per_s, "{:.2f}"), _num(s.output_tokens_per_s),
                          _ms(s.ttft_s.p50), _ms(s.ttft_s.p99), _ms(s.e2e_s.p50))
        table.add_section()
    return table

# The column layout of Meta's on-prem vLLM benchmark (llama-recipes,
# recipes/benchmarks/inference_throughput/on-prem/vllm/chat_vllm_benchmark.py), so tables can be
# pasted beside the ones sites already have. Latency there is the end-to-end latency.
MARKDOWN_COLUMNS: tuple[str, ...] = (
    "Number of Concurrent Requests",
    "P50 Latency (ms)",
    "P99 Latency (ms)",
    "RPS",
    "Output Tokens per Second",
    "Output Tokens per Second per GPU",
    "Input Tokens per Second",
    "Input Tokens per Second per GPU",
    "Average Output Tokens per Second per Request",
    "Number of Requests Below Threshold",
)


def _md(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ms_md(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.2f}"


def markdown_rows(points: Sequence[PointSummary]) -> list[list[str]]:
    """The cells of the markdown table, one row per load point (two decimals, as Meta prints)."""
    rows = []
    for p in points:
        level = str(p.concurrency) if p.concurrency is not None else p.label
        rows.append([
            level,
            _ms_md(p.e2e_s.p50),
            _ms_md(p.e2e_s.p99),
            _md(p.requests_per_s),
            _md(p.output_tokens_per_s),
            _md(p.output_tokens_per_s_per_gpu),
            _md(p.input_tokens_per_s),
            _md(p.input_tokens_per_s_per_gpu),
            _md(p.output_tokens_per_s_per_request),
            "–" if p.slow_requests is None else str(p.slow_requests),
        ])
    return rows


def markdown_table(points: Sequence[PointSummary]) -> str:
    """A GitHub markdown table with Meta's columns; "–" where a figure is undefined (no
    --num-gpus, no --threshold-tps, nothing completed)."""
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |",
             "|" + "|".join("-" * (len(c) + 2) for c in MARKDOWN_COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in markdown_rows(points)]
    return "\n".join(lines) + "\n"


def error_lines(points: Sequence[PointSummary]) -> list[str]:
    out = []
    for p in points:
        for kind, count in sorted(p.errors_by_kind.items()):
            out.append(f"{p.label}: {count} × {kind}")
    return out
