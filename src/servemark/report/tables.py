"""Tables as plain data (title, columns, rows of strings): summaries, per-endpoint breakdown,
errors, provenance. The HTML report and the terminal render the same tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from servemark.metrics.summary import PointSummary
from servemark.report.run import RunData
from servemark.report.scan import MAX_ERROR_CHARS, MAX_ERROR_EXAMPLES

__all__ = ["MAX_ERROR_CHARS", "MAX_ERROR_EXAMPLES", "Table", "endpoint_table", "error_table",
           "ms", "num", "provenance_table", "summary_table"]


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f}"


def num(value: float | int | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def summary_table(run: RunData) -> Table:
    """Metrics as rows, one column per load point (latencies in ms)."""
    points: Sequence[PointSummary] = run.points
    rows: list[list[str]] = [
        ["requests ok", *[str(p.completed) for p in points]],
        ["requests failed", *[str(p.failed) for p in points]],
        ["duration (s)", *[num(p.duration_s, "{:.2f}") for p in points]],
        ["requests/s", *[num(p.requests_per_s, "{:.2f}") for p in points]],
        ["output tokens/s", *[num(p.output_tokens_per_s) for p in points]],
        ["total tokens/s", *[num(p.total_tokens_per_s) for p in points]],
    ]
    for name, attr in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E", "e2e_s")):
        for stat in ("mean", "p50", "p90", "p99"):
            rows.append([f"{name} {stat} (ms)", *[ms(getattr(getattr(p, attr), stat)) for p in points]])
    return Table(f"Summary — {run.label}", ["metric", *[p.label for p in points]], rows)


def endpoint_table(run: RunData) -> Table:
    """Per endpoint and load point: counts and latency medians/tails, from the per-endpoint
    accumulators of the scan (exact up to the sketch's limit, within its error beyond)."""
    order = {label: i for i, label in enumerate(run.point_labels())}
    groups = [(endpoint, label, sub) for label, p in run.scan.points.items()
              for endpoint, sub in p.by_endpoint().items()]
    rows = []
    for endpoint, point, sub in sorted(groups, key=lambda g: (g[0], order.get(g[1], 0))):
        ttft = sub.sketch("ttft").distribution()
        e2e = sub.sketch("e2e").distribution()
        rows.append([endpoint, point, str(sub.records), str(sub.completed),
                     str(sub.records - sub.completed), str(sub.output_tokens),
                     ms(ttft.p50), ms(ttft.p99), ms(e2e.p50), ms(e2e.p99)])
    cols = ["endpoint", "load point", "requests", "ok", "failed", "output tokens",
            "TTFT p50 (ms)", "TTFT p99 (ms)", "E2E p50 (ms)", "E2E p99 (ms)"]
    return Table(f"Per endpoint — {run.label}", cols, rows)


def error_table(run: RunData) -> Table:
    """Failed requests grouped by load point, kind and HTTP status, with a few example messages."""
    groups, examples = run.scan.errors, run.scan.error_examples
    rows = [[p, kind, status, str(n), " | ".join(examples[(p, kind, status)])]
            for (p, kind, status), n in groups.most_common()]
    return Table(f"Errors — {run.label}", ["load point", "kind", "HTTP status", "count", "examples"], rows)


def provenance_table(run: RunData) -> Table:
    """Where, when and with what the run was measured (secrets were never recorded)."""
    doc = run.doc
    prov = doc.get("provenance") or {}
    endpoint = doc.get("endpoint") or {}
    cfg = doc.get("config") or {}
    packages = ", ".join(f"{k} {v}" for k, v in sorted((prov.get("packages") or {}).items()))
    load = (f"concurrency {cfg.get('concurrency')}" if cfg.get("concurrency")
            else f"request rate {cfg.get('request_rate')} req/s ({cfg.get('arrival')})")
    pairs = [
        ("run directory", str(run.path)),
        ("model", str(doc.get("model"))),
        ("status", f"{doc.get('status')}" + (" (partial)" if doc.get("partial") else "")),
        ("started / finished (UTC)", f"{doc.get('started_at')} / {doc.get('finished_at')}"),
        ("endpoint", f"{endpoint.get('base_url')} (server {endpoint.get('server_version')}, "
                     f"max model len {endpoint.get('max_model_len')})"),
        ("tokenizer", str(doc.get("tokenizer"))),
        ("workload", f"{cfg.get('api')} API, input {cfg.get('input_len')} tokens, output "
                     f"{cfg.get('output_len')} tokens, {load}, {cfg.get('num_requests')} requests "
                     f"per point, warm-up {cfg.get('warmup')}, seed {cfg.get('seed')}"),
        ("command", " ".join(str(a) for a in prov.get("command") or [])),
        ("servemark", str(prov.get("servemark_version"))),
        ("host", f"{prov.get('host')} — {prov.get('platform')}, {prov.get('cpu_count')} CPUs, "
                 f"Python {prov.get('python')}"),
        ("packages", packages or "–"),
    ]
    if run.torn_lines:
        pairs.append(("unreadable record lines", str(run.torn_lines)))
    return Table(f"Provenance — {run.label}", ["field", "value"], [list(p) for p in pairs])
