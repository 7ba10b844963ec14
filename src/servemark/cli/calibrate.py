"""``servemark calibrate``: this machine's client ceiling against the built-in zero-delay stub."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from servemark.cli.common import err, handle_errors, out, parse_list
from servemark.load.calibrate import calibrate


@handle_errors
def calibrate_command(
    concurrency: Annotated[str, typer.Option(help="Load points")] = "64,256",
    num_requests: Annotated[int, typer.Option(help="Requests per load point")] = 2000,
    output_len: Annotated[int, typer.Option(help="Tokens per response (one per SSE chunk)")] = 256,
    workers: Annotated[int, typer.Option(help="Client processes")] = 1,
) -> None:
    """Measure the requests/s and tokens/s this client sustains against a zero-delay stub."""
    points = parse_list(concurrency, int, "--concurrency") or [64]
    err.print("[dim]measuring against the built-in zero-delay stub…[/dim]")
    table = Table(title="client ceiling (zero-delay stub)", title_justify="left")
    for col in ("concurrency", "workers", "requests/s", "output tokens/s", "client CPU % of a core"):
        table.add_column(col, justify="right")
    for c in calibrate(points, num_requests, output_len, workers):
        util = "–" if c.client_cpu_util is None else f"{c.client_cpu_util * 100:.0f}"
        table.add_row(str(c.concurrency), str(c.workers), f"{c.requests_per_s:,.1f}",
                      f"{c.output_tokens_per_s:,.0f}", util)
    out.print(table)
