"""Terminal output of throughput, sweep and FOM runs: a line per point, a table at the end."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from servemark.suites.fom import FomResult
from servemark.suites.measurement import Measurement
from servemark.suites.point import Point


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def _tflops(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e12:.4g}"


class LinePrinter:
    """Implements suites.sweep.SweepProgress: one line per point on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def point_started(self, index: int, total: int, point: Point) -> None:
        self.console.print(f"[dim][{index}/{total}][/dim] {point.label()} …", highlight=False)

    def point_skipped(self, index: int, total: int, previous: Measurement) -> None:
        state = "done" if previous.ok else "failed before"
        self.console.print(f"[dim][{index}/{total}] {previous.point.label()}: skipped "
                           f"({state}, in the journal)[/dim]", highlight=False)

    def point_finished(self, index: int, total: int, m: Measurement) -> None:
        head = f"[dim][{index}/{total}][/dim] {m.point.label()}:"
        if m.ok:
            exact = "" if m.tokens_exact else " [yellow](token counts differ from requested)[/yellow]"
            self.console.print(
                f"{head} [green]{_num(m.throughput_tokens_per_s)} tokens/s[/green], latency "
                f"{_num(m.latency.mean, '{:.3f}')} s{exact}", highlight=False)
        else:
            self.console.print(f"{head} [red]failed[/red]: {m.error}", highlight=False,
                               markup=True)


def results_table(results: Sequence[Measurement], title: str | None = None) -> Table:
    """One row per point (input/output lengths, batch, TP): latency (s), throughputs.

    Failure reasons are printed per point as they happen (LinePrinter) and kept in the CSV."""
    table = Table(title=title, header_style="bold", title_justify="left")
    for name in ("point", "status", "latency s", "p50 s", "p99 s", "tokens/s", "out tok/s",
                 "TFLOP/s"):
        table.add_column(name, justify="left" if name in ("point", "status") else "right")
    for m in results:
        lat, p = m.latency, m.point
        point = (f"{p.scenario + ' ' if p.scenario else ''}{p.input_len}/{p.output_len} "
                 f"b{p.batch_size} tp{p.tensor_parallel}")
        status = "ok" if m.ok else "[red]failed[/red]"
        if m.ok and not m.tokens_exact:
            status = "[yellow]inexact[/yellow]"
        table.add_row(point, status, _num(lat.mean, "{:.4f}"), _num(lat.p50, "{:.4f}"),
                      _num(lat.p99, "{:.4f}"), _num(m.throughput_tokens_per_s),
                      _num(m.output_tokens_per_s), _tflops(m.flop_rate_per_s))
    return table


def fom_lines(result: FomResult) -> list[str]:
    total = result.total_throughput_tokens_per_s
    if total is None:
        missing = ", ".join(m.point.scenario for m in result.results if not m.ok)
        return [f"[red]total FOM undefined[/red]: failed scenario(s) {missing}"]
    lines = [f"[bold]total FOM[/bold] (sum of throughputs): {total:.1f} tokens/s"]
    rate = result.total_flop_rate_per_s
    if rate is not None:
        lines.append(f"[bold]total FOM, FLOP-rate form[/bold]: {rate / 1e12:.4g} TFLOP/s")
    else:
        lines.append("FLOP-rate form: model config (layers, hidden size) not found locally; "
                     "pass --model-config")
    return lines
