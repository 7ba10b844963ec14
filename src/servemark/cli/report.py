"""``servemark report``, ``servemark compare`` and ``servemark runs ...`` (the catalog of runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from servemark.cli.common import err, handle_errors, out
from servemark.errors import ConfigError
from servemark.report.build import make_report
from servemark.report.compare import (
    DEFAULT_METRICS,
    RunGroup,
    check_thresholds,
    compare,
    comparison_tables,
    parse_threshold,
)
from servemark.report.run import load_runs
from servemark.report.tables import Table
from servemark.store.catalog import Catalog, RunEntry, resolve_run

ResultsRoot = Annotated[Path, typer.Option("--results-root", help="Where run directories and the catalog live")]


def rich_table(table: Table) -> RichTable:
    t = RichTable(title=table.title, header_style="bold", title_justify="left")
    for i, col in enumerate(table.columns):
        t.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    for row in table.rows:
        t.add_row(*row, style=None)
    return t


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@handle_errors
def report_command(
    runs: Annotated[list[str], typer.Argument(help="Run directories (or catalog ids)", show_default=False, metavar="RUN...")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output directory (default: RUN_DIR/report for one run, ./report-<time> for several)")] = None,
    results_root: ResultsRoot = Path("results"),
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap used when comparing several runs")] = 0,
) -> None:
    """Plots (PNG + SVG) and a self-contained HTML report of one or more runs."""
    paths = [resolve_run(r, results_root) for r in runs]
    files = make_report(paths, out_dir, seed=seed)
    n = sum(len(v) for v in files.plots.values())
    err.print(f"{n} plot files in {files.out_dir}")
    out.print(f"report: {files.html}", highlight=False)


@handle_errors
def compare_command(
    runs: Annotated[list[str], typer.Argument(help="Baseline first, then candidates; a,b,c groups repeated runs", show_default=False, metavar="RUN_A RUN_B...")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout")] = False,
    fail_if: Annotated[list[str] | None, typer.Option("--fail-if", help='Exit 1 when a change crosses a threshold, e.g. "ttft_p99 > +10%" or "throughput < -5%" (repeatable)')] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples")] = 2000,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (results are reproducible)")] = 0,
    all_metrics: Annotated[bool, typer.Option("--all", help="Show every metric (p90 and means too)")] = False,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Compare runs against the first: deltas, bootstrap intervals, verdicts, CI thresholds."""
    thresholds = [parse_threshold(t) for t in fail_if or []]
    groups = []
    for arg in runs:
        refs = [r for r in arg.split(",") if r]
        if not refs:
            raise ConfigError(f"empty run argument {arg!r}", "pass run directories or catalog ids")
        loaded = load_runs([resolve_run(r, results_root) for r in refs])
        label = loaded[0].label if len(loaded) == 1 else f"{loaded[0].label.split(' [')[0]} ×{len(loaded)}"
        groups.append(RunGroup(label, loaded))
    labels = [g.label for g in groups]
    for i, g in enumerate(groups):  # keep sides distinguishable when configurations look alike
        if labels.count(g.label) > 1:
            g.label = f"{g.label} #{i + 1}"
    comp = compare(groups, n_boot=n_boot, confidence=confidence, seed=seed)
    breaches = check_thresholds(comp, thresholds)
    if as_json:
        data = comp.to_dict()
        data["thresholds"] = [t.text for t in thresholds]
        data["breaches"] = [b.__dict__ for b in breaches]
        _dump(data)
    else:
        for table in comparison_tables(comp, None if all_metrics else DEFAULT_METRICS):
            out.print(rich_table(table))
        for note in comp.unmatched:
            err.print(f"[yellow]not compared[/yellow] {note}", highlight=False)
        for note in comp.samples:
            err.print(f"[dim]bootstrapped on a seeded sample (interval scaled to every request): "
                      f"{escape(note)}[/dim]", highlight=False)
    for b in breaches:
        err.print(f"[bold red]threshold crossed[/bold red] {b.threshold}: {b.candidate} · {b.point}: {b.change}",
                  highlight=False)
    if thresholds and not breaches:
        err.print(f"[green]all {len(thresholds)} thresholds hold[/green]")
    if breaches:
        raise typer.Exit(1)


runs_app = typer.Typer(help="The catalog of runs under the results root.", no_args_is_help=True)


def _entry_dict(e: RunEntry) -> dict[str, Any]:
    return {**e.row, "tags": e.tags, "points": e.points}


@runs_app.command("list")
@handle_errors
def runs_list(
    model: Annotated[str | None, typer.Option(help="Only runs whose model contains this text")] = None,
    since: Annotated[str | None, typer.Option(help="Only runs started at or after this ISO date/time (UTC)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only runs with this tag (repeatable: all must match)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """List catalogued runs, newest first."""
    with Catalog(results_root) as cat:
        entries = cat.query(model=model, since=since, tags=tag or [])
    if as_json:
        _dump([_entry_dict(e) for e in entries])
        return
    t = RichTable(title=f"runs in {results_root}", header_style="bold", title_justify="left")
    t.add_column("run", no_wrap=True)
    for col in ("started (UTC)", "model", "status", "points", "ok", "failed", "tokens/s max", "tags"):
        t.add_column(col, overflow="fold")
    for e in entries:
        tps = e.row.get("max_total_tokens_per_s")
        t.add_row(e.run_id, str(e.started_at or "–")[:16].replace("T", " "), str(e.model), str(e.status), str(e.row["num_points"]),
                  str(e.row["completed"]), str(e.row["failed"]), "–" if tps is None else f"{tps:.1f}",
                  ", ".join(e.tags))
    out.print(t)


@runs_app.command("show")
@handle_errors
def runs_show(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix, or run directory", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """One run's catalog entry and load points."""
    with Catalog(results_root) as cat:
        e = cat.get(run)
    if as_json:
        _dump(_entry_dict(e))
        return
    for key, value in e.row.items():
        out.print(f"[bold]{key}[/bold]: {value}", highlight=False)
    if e.points:
        cols = [c for c in e.points[0] if c not in ("run_id", "idx")]
        out.print(rich_table(Table("load points", cols, [["–" if p[c] is None else
                                                          (f"{p[c]:.2f}" if isinstance(p[c], float) else str(p[c]))
                                                          for c in cols] for p in e.points])))


@runs_app.command("export")
@handle_errors
def runs_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet (parquet needs pyarrow)")] = "csv",
    out_path: Annotated[Path | None, typer.Option("--out", help="Output file (default: runs.<format>)")] = None,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Export the catalog: one row per load point, with its run's columns."""
    path = out_path or Path(f"runs.{fmt}")
    with Catalog(results_root) as cat:
        n = cat.export(fmt, path)
    err.print(f"{n} rows written to {path}", highlight=False)


@runs_app.command("rebuild")
@handle_errors
def runs_rebuild(results_root: ResultsRoot = Path("results")) -> None:
    """Rebuild the catalog from the run directories under the results root."""
    with Catalog(results_root) as cat:
        ids = cat.rebuild()
    err.print(f"{len(ids)} runs catalogued in {results_root}", highlight=False)


@runs_app.command("tag")
@handle_errors
def runs_tag(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix, or run directory", show_default=False)],
    tags: Annotated[list[str], typer.Argument(help="Tags to add", show_default=False)],
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Tag a run (stored in the run directory's tags.json, so a rebuild keeps it)."""
    with Catalog(results_root) as cat:
        e = cat.add_tags(run, tags)
    err.print(f"{e.run_id}: {', '.join(e.tags)}", highlight=False)
