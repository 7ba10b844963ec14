"""Plots (matplotlib, no pyplot global state): sorted TTFT/TPOT per request, latency against
throughput across load points, CDFs of TTFT/ITL/E2E, and a timeline of tokens/s and requests in
flight. Each is saved as PNG and SVG; legends name the configuration and the load point.

A load point with more records than the scan's sample size is drawn from its accumulator, not a
sample: sorted values and CDFs at evenly spaced ranks from the metric's quantiles (exact up to
the sketch's limit, within its 0.1% beyond), the timeline from the scan's 10 ms histograms."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from servemark.errors import DependencyError, ResultsError
from servemark.metrics import derive
from servemark.metrics.record import RequestRecord
from servemark.report.run import RunData, series_label
from servemark.report.scan import RunScan

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TIMELINE_BINS = 120  # bins over the run's duration (at least 50 ms each)
MAX_POINTS = 2000  # per line: larger samples are drawn at evenly spaced ranks (keeps SVGs small)


def _thin(n: int) -> np.ndarray:
    """Indices of at most MAX_POINTS evenly spaced ranks of a sorted sample, ends included."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))


@dataclass
class Plot:
    name: str  # file stem
    title: str
    figure: Figure


def _figure(ncols: int = 1, height: float = 4.2, nrows: int = 1) -> tuple[Figure, list[Axes]]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise DependencyError("plots need matplotlib, which is not installed",
                              "pip install 'servemark[report]'") from None
    fig = Figure(figsize=(5.2 * ncols if ncols > 1 else 8.0, height), layout="constrained")
    return fig, list(fig.subplots(nrows, ncols, squeeze=False, sharex=nrows > 1).flat)


def _legend(ax: Axes, n_series: int) -> None:
    if n_series:
        ax.legend(fontsize="small", loc="best", framealpha=0.85)
    else:
        ax.text(0.5, 0.5, "no successful requests", ha="center", va="center", transform=ax.transAxes)


def _ranked(run: RunData, point: str, sketch: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(ranks, values in ms at those ranks, count) of a sampled point's metric, from its
    accumulator's quantiles; None when it has no values."""
    sk = run.point_scan(point).acc.sketch(sketch)
    n = sk.count
    if n == 0:
        return None
    idx = _thin(n)
    qs = idx * (100.0 / (n - 1)) if n > 1 else np.zeros(1)
    return idx, np.asarray(sk.percentiles(np.minimum(qs, 100.0).tolist())) * 1000.0, n


def _per_request(runs: Sequence[RunData], metric: Callable[[RequestRecord], float | None],
                 sketch: str) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """(label, ranks, sorted values in ms at those ranks, count) per configuration and point."""
    out = []
    for run in runs:
        for point in run.point_labels():
            if run.point_scan(point).sampled:
                ranked = _ranked(run, point, sketch)
                if ranked is not None:
                    out.append((series_label(run, point), *ranked))
                continue
            values = [v for r in run.point_records(point) if r.ok and (v := metric(r)) is not None]
            if values:
                arr = np.asarray(values, dtype=float) * 1000.0
                idx = _thin(arr.size)
                out.append((series_label(run, point), idx, np.sort(arr)[idx], arr.size))
    return out


def sorted_plot(runs: Sequence[RunData], name: str, metric: Callable[[RequestRecord], float | None],
                sketch: str | None = None) -> Plot:
    """Per-request latency sorted ascending, one line per configuration and load point
    (``sketch``: the accumulator's metric of the same values, for points too large to sample)."""
    fig, (ax,) = _figure()
    series = _per_request(runs, metric, sketch or name.lower())
    for label, idx, values, n in series:
        ax.plot(idx + 1, values, marker="." if n < 50 else None, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("request (sorted by latency)")
    ax.set_ylabel(f"{name} (ms)")
    ax.set_title(f"{name} per request, sorted")
    ax.grid(True, alpha=0.3)
    _legend(ax, len(series))
    return Plot(f"sorted_{name.lower()}", f"{name} per request, sorted", fig)


def cdf_plot(runs: Sequence[RunData]) -> Plot:
    """Empirical CDFs of TTFT, ITL (every gap) and E2E."""
    fig, axes = _figure(3)

    def itl_all(recs: list[RequestRecord]) -> list[float]:
        return [g for r in recs if r.ok for g in derive.itl_s(r)]

    metrics: list[tuple[str, Callable[[list[RequestRecord]], list[float]]]] = [
        ("TTFT", lambda rs: [v for r in rs if r.ok and (v := derive.ttft_s(r)) is not None]),
        ("ITL", itl_all),
        ("E2E", lambda rs: [derive.e2e_s(r) for r in rs if r.ok]),
    ]
    for ax, (name, values_of) in zip(axes, metrics, strict=True):
        n = 0
        for run in runs:
            for point in run.point_labels():
                if run.point_scan(point).sampled:
                    ranked = _ranked(run, point, name.lower())
                    if ranked is not None:
                        ridx, rvalues, count = ranked
                        ax.step(rvalues, (ridx + 1) / count, where="post", label=series_label(run, point))
                        n += 1
                    continue
                values = np.sort(np.asarray(values_of(run.point_records(point)), dtype=float)) * 1000.0
                if values.size:
                    idx = _thin(values.size)
                    ax.step(values[idx], (idx + 1) / values.size, where="post",
                            label=series_label(run, point))
                    n += 1
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("fraction of " + ("gaps" if name == "ITL" else "requests"))
        ax.set_ylim(0, 1.02)
        ax.set_title(f"CDF of {name}")
        ax.grid(True, alpha=0.3)
        if ax is axes[0] or n == 0:  # one legend is enough: the series are the same
            _legend(ax, n)
    return Plot("cdf_latency", "CDFs of TTFT, ITL and E2E", fig)


def latency_throughput_plot(runs: Sequence[RunData]) -> Plot:
    """TTFT, TPOT and E2E (p50 solid, p99 dashed) against total tokens/s, one line per run."""
    fig, axes = _figure(3)
    for ax, (name, attr) in zip(axes, (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s")), strict=True):
        n = 0
        for i, run in enumerate(runs):
            color = f"C{i % 10}"
            pts = [p for p in run.points if p.total_tokens_per_s is not None]
            x = [p.total_tokens_per_s for p in pts]
            for stat, style in (("p50", "-"), ("p99", "--")):
                y = [getattr(getattr(p, attr), stat) for p in pts]
                keep = [(a, b * 1000.0) for a, b in zip(x, y, strict=True) if b is not None]
                if keep:
                    ax.plot(*zip(*keep, strict=True), style, marker="o", color=color,
                            label=f"{run.label} {stat}")
                    n += 1
            for p in pts:
                value = getattr(p, attr).p50
                if value is not None:
                    ax.annotate(p.label, (p.total_tokens_per_s, value * 1000.0), fontsize="x-small",
                                textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("throughput (total tokens/s)")
        ax.set_ylabel(f"{name} (ms)")
        ax.set_title(f"{name} p50 / p99 vs throughput")
        ax.grid(True, alpha=0.3)
        _legend(ax, n)
    return Plot("latency_vs_throughput", "Latency vs throughput across load points", fig)


def _timeline(records: list[RequestRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(bin centres, output tokens/s per bin, step times, requests in flight), times since the
    first send. A chunk's tokens are the request's output tokens spread evenly over its chunks."""
    t0 = min(r.start_s for r in records)
    end = max(r.end_s for r in records) - t0
    width = max(end / TIMELINE_BINS, 0.05)
    edges = np.arange(0.0, end + width, width)
    if edges.size < 2:
        edges = np.array([0.0, width])
    times, weights = [], []
    for r in records:
        if r.ok and r.chunk_times_s and r.output_tokens:
            per_chunk = r.output_tokens / len(r.chunk_times_s)
            times += [r.start_s - t0 + c for c in r.chunk_times_s]
            weights += [per_chunk] * len(r.chunk_times_s)
    hist, _ = np.histogram(times, bins=edges, weights=weights)
    events = sorted([(r.start_s - t0, 1) for r in records] + [(r.end_s - t0, -1) for r in records])
    step_t = np.array([0.0] + [t for t, _ in events])
    step_n = np.concatenate([[0], np.cumsum([d for _, d in events])])
    if step_t.size > MAX_POINTS:  # large runs: the count sampled on a regular grid
        grid = np.linspace(0.0, end, MAX_POINTS)
        step_n = step_n[np.searchsorted(step_t, grid, side="right") - 1]
        step_t = grid
    return (edges[:-1] + edges[1:]) / 2, hist / width, step_t, step_n, t0


def _streamed_timeline(scan: RunScan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """What :func:`_timeline` gives, from the scan's histograms (bins of 10 ms or more): tokens
    by the bin their chunks fell in, requests in flight on a regular grid."""
    t0 = scan.t0
    end = scan.t_end - t0
    width = max(end / TIMELINE_BINS, 0.05)
    edges = np.arange(0.0, end + width, width)
    if edges.size < 2:
        edges = np.array([0.0, width])
    at, weight = scan.tokens.centres()
    # a bin's centre may lie up to half a bin before the first send: count it in the first bin
    hist, _ = np.histogram(np.clip(at - t0, 0.0, None), bins=edges, weights=weight)
    grid = np.linspace(0.0, end, MAX_POINTS)
    counts = []
    for h in (scan.starts, scan.ends):
        times, w = h.centres()
        cum = np.concatenate([[0.0], np.cumsum(w)])
        counts.append(cum[np.searchsorted(times - t0, grid, side="right")])
    return (edges[:-1] + edges[1:]) / 2, hist / width, grid, counts[0] - counts[1], t0


def timeline_plot(runs: Sequence[RunData]) -> Plot:
    """Output tokens/s and requests in flight over the run; dotted lines mark load points."""
    fig, (top, bottom) = _figure(1, height=5.5, nrows=2)
    n = 0
    for i, run in enumerate(runs):
        scan = run.scan
        if not scan.records:
            continue
        color = f"C{i % 10}"
        if scan.sampled:
            centres, tps, step_t, step_n, t0 = _streamed_timeline(scan)
        else:
            centres, tps, step_t, step_n, t0 = _timeline(
                run.records if run.records is not None else scan.all_records())
        top.plot(centres, tps, color=color, label=run.label)
        bottom.step(step_t, step_n, where="post", color=color, label=run.label)
        n += 1
        for point in run.point_labels():
            first = run.point_scan(point).first_start
            if first != math.inf:
                x = first - t0
                bottom.axvline(x, color=color, linestyle=":", linewidth=1)
                bottom.annotate(point, (x, 1.0), xycoords=("data", "axes fraction"), fontsize="x-small",
                                textcoords="offset points", xytext=(2, -10), color=color)
    top.set_ylabel("output tokens/s")
    top.set_title("Throughput and requests in flight over time")
    bottom.set_ylabel("requests in flight")
    bottom.set_xlabel("time since the first request (s)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    _legend(top, n)
    return Plot("timeline", "Timeline of tokens/s and requests in flight", fig)


def make_plots(runs: Sequence[RunData]) -> list[Plot]:
    from servemark.report.server import server_timeline_plot  # it builds on this module

    plots = [
        sorted_plot(runs, "TTFT", derive.ttft_s, "ttft"),
        sorted_plot(runs, "TPOT", derive.tpot_s, "tpot"),
        latency_throughput_plot(runs),
        cdf_plot(runs),
        timeline_plot(runs),
    ]
    server = server_timeline_plot(runs)
    return plots + ([server] if server is not None else [])


def save_plots(plots: Sequence[Plot], out_dir: Path) -> dict[str, dict[str, Path]]:
    """Write each plot as ``<name>.png`` and ``<name>.svg``; returns {name: {fmt: path}}."""
    written: dict[str, dict[str, Path]] = {}
    meta: dict[str, dict[str, Any]] = {"png": {"Software": "servemark"}, "svg": {"Date": None}}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for plot in plots:
            written[plot.name] = {}
            for fmt in ("png", "svg"):
                path = out_dir / f"{plot.name}.{fmt}"
                plot.figure.savefig(path, format=fmt, dpi=110, metadata=meta[fmt])
                written[plot.name][fmt] = path
    except OSError as exc:
        raise ResultsError(f"cannot write plots to {out_dir}: {exc.strerror}", "pick a writable --out") from exc
    return written
