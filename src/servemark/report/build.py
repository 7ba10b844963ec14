"""``make_report``: load runs, draw the plots (PNG + SVG), write the self-contained HTML report.
With several runs the report also compares each against the first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from servemark.errors import ResultsError
from servemark.report.compare import Comparison, RunGroup, compare
from servemark.report.html import render_html
from servemark.report.plots import make_plots, save_plots
from servemark.report.run import RunData, load_runs
from servemark.store.rundir import utc_now

REPORT_HTML = "report.html"


@dataclass
class ReportFiles:
    out_dir: Path
    html: Path
    plots: dict[str, dict[str, Path]]
    runs: list[RunData]
    comparison: Comparison | None


def default_out_dir(paths: Sequence[Path], now: datetime | None = None) -> Path:
    """One run: ``RUN_DIR/report``. Several: ``report-<time>`` in the current directory."""
    if len(paths) == 1:
        return Path(paths[0]) / "report"
    return Path(f"report-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}")


def make_report(paths: Sequence[Path], out_dir: Path | None = None, seed: int = 0) -> ReportFiles:
    runs = load_runs(list(paths))
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(paths)
    plots = make_plots(runs)
    written = save_plots(plots, out_dir)
    comparison = None
    if len(runs) > 1:
        comparison = compare([RunGroup(r.label, [r]) for r in runs], seed=seed)
    figures = [(p.name, p.title, written[p.name]["svg"].read_bytes()) for p in plots]
    html = out_dir / REPORT_HTML
    try:
        html.write_text(render_html(runs, figures, comparison, utc_now()), encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"cannot write {html}: {exc.strerror}", "pick a writable --out") from exc
    return ReportFiles(out_dir, html, written, runs, comparison)
