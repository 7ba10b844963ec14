"""The self-contained HTML report: one file with its styles, data (JSON) and figures (SVG data
URIs) embedded; no network, no JavaScript. Every string from a run (model names, error texts,
command lines) is escaped, and a Content-Security-Policy forbids scripts outright, so nothing
recorded from a server can run in the reader's browser."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from html import escape
from typing import Any

from servemark._version import __version__
from servemark.metrics.sketch import EXACT_LIMIT, RELATIVE_ERROR
from servemark.report.compare import DEFAULT_METRICS, Comparison, comparison_tables
from servemark.report.run import RunData
from servemark.report.server import server_metrics_table
from servemark.report.tables import (
    Table,
    endpoint_table,
    error_table,
    provenance_table,
    summary_table,
)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}nav{padding:8px 28px;background:#e6ebf1}nav a{margin-right:16px;color:#1f3b57}
main{padding:8px 28px 40px;max-width:1500px}section{margin-top:26px}h2{border-bottom:2px solid #1f3b57;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0 18px;background:#fff;font-size:13px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d5dbe2;padding:4px 9px;vertical-align:top}th{background:#eef2f6;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}tbody tr:nth-child(even){background:#f9fafb}
td.sig{color:#a4161a;font-weight:600}td.nosig{color:#52606d}
figure{background:#fff;border:1px solid #d5dbe2;margin:12px 0;padding:10px}figure img{max-width:100%;height:auto}
figcaption{font-weight:600;margin-top:6px}.empty{color:#52606d;font-style:italic}
.wrap{word-break:break-all}
"""


def _is_num(text: str) -> bool:
    t = text.replace(",", "").removesuffix("%").lstrip("+-")
    return t.replace(".", "", 1).isdigit()


def table_html(table: Table, table_id: str = "", css_class: str = "") -> str:
    """A <table> with every cell escaped; numeric cells right-aligned."""
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for cell in row:
            cls = "num" if _is_num(cell) else ("sig" if cell == "significant" else
                                              "nosig" if cell == "no significant change" else "")
            cells.append(f'<td class="{cls}">{escape(cell)}</td>' if cls else f"<td>{escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td class="empty" colspan="{len(table.columns)}">none</td></tr>')
    attrs = (f' id="{escape(table_id)}"' if table_id else "") + (f' class="{escape(css_class)}"' if css_class else "")
    return (f"<table{attrs}><caption>{escape(table.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def figure_html(name: str, title: str, svg: bytes) -> str:
    """An SVG as an <img> data URI: images cannot run scripts, whatever the SVG contains."""
    data = base64.b64encode(svg).decode("ascii")
    return (f'<figure id="fig-{escape(name)}"><img alt="{escape(title)}" '
            f'src="data:image/svg+xml;base64,{data}"><figcaption>{escape(title)}</figcaption></figure>')


def json_script(data: Any) -> str:
    """JSON inside a non-executed <script> block, with <, > and & escaped so no string can close it."""
    text = json.dumps(data, default=str, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="servemark-data">{text}</script>'


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: make them null (undefined), as everywhere else."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def render_html(runs: Sequence[RunData], figures: Sequence[tuple[str, str, bytes]],
                comparison: Comparison | None, generated_at: str) -> str:
    """The whole report. ``figures``: (name, title, SVG bytes)."""
    names = ", ".join(r.label for r in runs)
    sections: list[tuple[str, str, str]] = []

    prov = "".join(table_html(provenance_table(r), f"provenance-{i}", "provenance")
                   for i, r in enumerate(runs))
    sections.append(("provenance", "Provenance", prov))
    summ = "".join(table_html(summary_table(r), f"summary-{i}", "summary") if r.points else
                   f'<p class="empty">{escape(r.label)}: no load point finished</p>'
                   for i, r in enumerate(runs))
    sections.append(("summary", "Summary (latencies in ms)", summ))
    if comparison is not None:
        tables = comparison_tables(comparison, DEFAULT_METRICS)
        comp = "".join(table_html(t, f"compare-{i}", "compare") for i, t in enumerate(tables))
        note = (f"<p>Δ = candidate − baseline ({escape(comparison.baseline)}). The interval is a "
                f"{round(comparison.confidence * 100)}% bootstrap interval of the difference of "
                f"medians ({comparison.n_boot} resamples of requests, seed {comparison.seed}); "
                "a change is significant when the interval excludes 0.</p>")
        if comparison.samples:
            note += ("<p>Bootstrapped on seeded samples (the interval scaled to every request): "
                     + "; ".join(escape(x) for x in comparison.samples) + ".</p>")
        sections.append(("compare", "Comparison", note + (comp or '<p class="empty">no common load points</p>')))
    figs = "".join(figure_html(n, t, svg) for n, t, svg in figures)
    large = [f"{r.label}: {r.scan.records:,} requests" for r in runs if r.scan.sampled]
    if large:
        figs = ("<p>Large runs (" + escape("; ".join(large)) + "): sorted values and CDFs are drawn "
                f"at evenly spaced ranks from each load point's quantile sketch (exact up to {EXACT_LIMIT:,} "
                f"values per metric, within {RELATIVE_ERROR:.1%} beyond), the timeline from 10 ms "
                "bins.</p>") + figs
    sections.append(("plots", "Plots", figs))
    server = [(i, t) for i, r in enumerate(runs) if (t := server_metrics_table(r.doc)) is not None]
    if server:
        sections.append(("server", "Server metrics",
                         "".join(table_html(t, f"server-{i}", "server") for i, t in server)))
    ep = "".join(table_html(endpoint_table(r), f"endpoints-{i}", "endpoints") for i, r in enumerate(runs))
    sections.append(("endpoints", "Per-endpoint breakdown", ep))
    errs = "".join(table_html(error_table(r), f"errors-{i}", "errors wrap") for i, r in enumerate(runs))
    sections.append(("errors", "Errors", errs))

    data = _clean({"generator": f"servemark {__version__}", "generated_at": generated_at,
                   "runs": [{"label": r.label, "path": str(r.path), "summary": r.doc} for r in runs],
                   "comparison": comparison.to_dict() if comparison else None})
    nav = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>servemark report — {escape(names)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>servemark report</h1><p>{escape(names)} · generated {escape(generated_at)} "
        f"by servemark {escape(__version__)}</p></header><nav>{nav}</nav><main>{body}</main>"
        f"{json_script(data)}</body></html>\n"
    )
