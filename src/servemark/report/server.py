"""What the server was doing during a run: the per-load-point table of server metrics (from
summary.json) and the time series (server_metrics.jsonl) for the report's timeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from servemark.profile.sampler import SERVER_METRICS
from servemark.report.plots import Plot, _figure, _legend
from servemark.report.run import RunData
from servemark.report.tables import Table, ms, num


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _tokens(check: dict[str, Any] | None) -> str:
    """``server / client (Δ%)`` for one token counter."""
    if not check:
        return "–"
    server, client, rel = check.get("server"), check.get("client"), check.get("rel_diff")
    text = f"{num(server, '{:.0f}')}/{client}"
    return text + (f" {rel * 100:+.1f}%" if rel is not None else "")


def server_metrics_table(doc: dict[str, Any]) -> Table | None:
    """Rows per load point (and endpoint): queue peaks, KV cache use, preemptions, the server's
    token counters against the client's totals, the server's TTFT/E2E over the window."""
    section = doc.get("server_metrics")
    if not isinstance(section, dict):
        return None
    points = section.get("points") or []
    unavailable = section.get("unavailable") or {}
    if not points and not unavailable:
        return None
    many = len({p.get("endpoint") for p in points}) > 1
    cols = ["load point", *(["endpoint"] if many else []), "max running", "max waiting",
            "KV mean", "preempt", "in tok srv/cli", "out tok srv/cli", "TTFT p50 ms", "E2E p50 ms"]
    rows = []
    for p in points:
        rows.append([str(p.get("load_point")), *([str(p.get("endpoint"))] if many else []),
                     num(p.get("peak_running"), "{:.0f}"), num(p.get("peak_waiting"), "{:.0f}"),
                     _pct(p.get("mean_kv_cache_usage")), num(p.get("preemptions"), "{:.0f}"),
                     _tokens(p.get("prompt_tokens")), _tokens(p.get("generation_tokens")),
                     ms(p.get("server_ttft_p50_s")), ms(p.get("server_e2e_p50_s"))])
    for endpoint, why in unavailable.items():
        rows.append(["(all)", *([endpoint] if many else []), f"unavailable: {why}",
                     *["–"] * (len(cols) - 2 - many)])
    return Table("Server metrics (/metrics; tokens: server counter delta / client total)", cols, rows)


@dataclass
class ServerSeries:
    """One endpoint's readings over a run: times (s since the run's t0) and canonical values."""

    endpoint: str
    t_s: list[float] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)


def load_server_series(run_dir: Path) -> list[ServerSeries]:
    """Read server_metrics.jsonl (missing file: no series; torn lines are skipped)."""
    path = Path(run_dir) / SERVER_METRICS
    if not path.exists():
        return []
    by_endpoint: dict[str, ServerSeries] = {}
    with open(path, "rb") as fh:
        for line in fh:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict) or "values" not in obj:
                continue  # error lines
            s = by_endpoint.setdefault(obj["endpoint"], ServerSeries(obj["endpoint"]))
            n = len(s.t_s)
            s.t_s.append(float(obj["t_s"]))
            for key, value in obj["values"].items():
                s.values.setdefault(key, [None] * n).append(value)
            for col in s.values.values():
                if len(col) < n + 1:
                    col.append(None)
    for s in by_endpoint.values():  # readings are written in time order per window; sort anyway
        order = sorted(range(len(s.t_s)), key=s.t_s.__getitem__)
        s.t_s = [s.t_s[i] for i in order]
        s.values = {k: [v[i] for i in order] for k, v in s.values.items()}
    return list(by_endpoint.values())


def server_timeline_plot(runs: Sequence[RunData]) -> Plot | None:
    """Requests running/waiting and KV cache use over time, as the server reported them; None
    when no run has a server series."""
    loaded = [(i, run, load_server_series(run.path)) for i, run in enumerate(runs)]
    if not any(series for _, _, series in loaded):
        return None
    fig, (top, bottom) = _figure(1, height=5.5, nrows=2)
    n = 0
    for i, run, series in loaded:
        for j, s in enumerate(series):
            color = f"C{(i + j) % 10}"
            label = run.label + (f" · {s.endpoint}" if len(series) > 1 else "")
            for key, style, name in (("requests_running", "-", "running"),
                                     ("requests_waiting", "--", "waiting")):
                pts = [(t, v) for t, v in zip(s.t_s, s.values.get(key, []), strict=False) if v is not None]
                if pts:
                    top.step(*zip(*pts, strict=True), style, where="post", color=color,
                             label=f"{label} {name}")
                    n += 1
            kv = [(t, v * 100) for t, v in zip(s.t_s, s.values.get("kv_cache_usage", []), strict=False)
                  if v is not None]
            if kv:
                bottom.plot(*zip(*kv, strict=True), color=color, label=label)
    top.set_ylabel("requests (server)")
    top.set_title("Server: requests running / waiting and KV cache use")
    bottom.set_ylabel("KV cache used (%)")
    bottom.set_xlabel("time since the first request (s)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    _legend(top, n)
    return Plot("server_timeline", "Server metrics over time (/metrics)", fig)
