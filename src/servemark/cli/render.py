"""Rich renderables for results (pure descriptions; the console prints them)."""

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
        ("output tokens/s", [_num(p.output_tokens_per_s) for p in points]),
        ("total tokens/s", [_num(p.total_tokens_per_s) for p in points]),
    ]
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


def error_lines(points: Sequence[PointSummary]) -> list[str]:
    out = []
    for p in points:
        for kind, count in sorted(p.errors_by_kind.items()):
            out.append(f"{p.label}: {count} × {kind}")
    return out
