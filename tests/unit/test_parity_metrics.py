"""Figures of Meta's on-prem vLLM benchmark (llama-recipes, recipes/benchmarks/
inference_throughput/on-prem/vllm/chat_vllm_benchmark.py) on a recorded run, against values
computed by hand; the markdown table's columns; CSV and older summaries.

tests/data/recorded/tiny-c1-c4.jsonl was recorded by ``servemark bench`` against the vLLM CPU
server on the tiny model (concurrency 1 and 4, 4 requests each, 16 in / 8 out), timestamps
rounded to milliseconds so the arithmetic below can be followed with a pencil.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from servemark.cli.main import app
from servemark.cli.render import MARKDOWN_COLUMNS, markdown_table, summary_table
from servemark.metrics.summary import PointSummary, summarize
from servemark.store.rundir import csv_row, iter_records

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded" / "tiny-c1-c4.jsonl"


def points(threshold: float | None = None, num_gpus: int | None = 2) -> dict[str, PointSummary]:
    recs = [r for r in iter_records(RECORDED) if r is not None]
    out = {}
    for label, conc in (("c=1", 1), ("c=4", 4)):
        out[label] = summarize([r for r in recs if r.load_point == label], label, conc,
                               num_gpus=num_gpus, threshold_tps=threshold)
    return out


def test_c1_by_hand() -> None:
    p = points(threshold=170.0)["c=1"]
    # four sequential requests: starts 1.379 1.421 1.469 1.513, ends 1.421 1.469 1.513 1.564
    window = 1.564 - 1.379
    assert p.duration_s == pytest.approx(window)
    assert p.requests_per_s == pytest.approx(4 / window)
    assert p.output_tokens_per_s == pytest.approx(4 * 8 / window)
    assert p.input_tokens_per_s == pytest.approx(4 * 16 / window)
    assert p.output_tokens_per_s_per_gpu == pytest.approx(4 * 8 / window / 2)
    assert p.input_tokens_per_s_per_gpu == pytest.approx(4 * 16 / window / 2)
    # latencies 42, 48, 44, 51 ms; sorted 42 44 48 51: p50 = (44 + 48) / 2, p99 = 48 + 0.97 * 3
    assert p.e2e_s.p50 == pytest.approx(0.046)
    assert p.e2e_s.p99 == pytest.approx(0.048 + 0.97 * 0.003)
    speeds = [8 / 0.042, 8 / 0.048, 8 / 0.044, 8 / 0.051]  # 190.5 166.7 181.8 156.9 tok/s
    assert p.output_tokens_per_s_per_request == pytest.approx(sum(speeds) / 4)
    assert p.threshold_tps == 170.0
    assert p.slow_requests == 2  # 166.7 and 156.9


def test_c4_by_hand() -> None:
    p = points(threshold=120.0)["c=4"]
    # starts 1.651 1.654 1.655 1.655, ends 1.703 1.712 1.722 1.722
    window = 1.722 - 1.651
    assert p.requests_per_s == pytest.approx(4 / window)
    assert p.output_tokens_per_s == pytest.approx(32 / window)
    assert p.output_tokens_per_s_per_gpu == pytest.approx(16 / window)
    # latencies 52, 58, 67, 67 ms
    assert p.e2e_s.p50 == pytest.approx((0.058 + 0.067) / 2)
    assert p.e2e_s.p99 == pytest.approx(0.067)
    speeds = [8 / 0.052, 8 / 0.058, 8 / 0.067, 8 / 0.067]  # 153.8 137.9 119.4 119.4
    assert p.output_tokens_per_s_per_request == pytest.approx(sum(speeds) / 4)
    assert p.slow_requests == 2  # strictly below 120: the two 119.4


def test_without_gpus_or_threshold_those_figures_are_undefined() -> None:
    p = points(threshold=None, num_gpus=None)["c=1"]
    assert p.output_tokens_per_s_per_gpu is None and p.input_tokens_per_s_per_gpu is None
    assert p.slow_requests is None and p.threshold_tps is None
    assert p.output_tokens_per_s_per_request is not None  # needs neither


def test_failed_requests_are_not_slow_requests() -> None:
    recs = [r for r in iter_records(RECORDED) if r is not None and r.load_point == "c=1"]
    recs[0].ok, recs[0].error_kind = False, "http_status"
    p = summarize(recs, "c=1", 1, threshold_tps=1e9)
    assert p.slow_requests == 3 and p.failed == 1


def test_csv_and_summary_round_trip_and_older_summaries() -> None:
    p = points(threshold=170.0)["c=1"]
    row = csv_row(p, "tiny", "completions")
    assert row["slow_requests"] == 2 and row["num_gpus"] == 2 and row["threshold_tps"] == 170.0
    assert row["output_tokens_per_s_per_gpu"] == pytest.approx(p.output_tokens_per_s / 2)
    assert row["output_tokens_per_s_per_request"] == pytest.approx(p.output_tokens_per_s_per_request)
    assert PointSummary.from_dict(p.to_dict()) == p
    old = {k: v for k, v in p.to_dict().items()
           if k not in ("num_gpus", "input_tokens_per_s_per_gpu", "output_tokens_per_s_per_gpu",
                        "output_tokens_per_s_per_request", "threshold_tps", "slow_requests")}
    back = PointSummary.from_dict(old)
    assert back.slow_requests is None and back.output_tokens_per_s_per_gpu is None
    assert back.output_tokens_per_s == p.output_tokens_per_s


def parse_markdown(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.strip().splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    assert set(lines[1]) <= {"|", "-"}
    return cells[0], cells[2:]


def test_markdown_table_has_metas_columns_and_values() -> None:
    ps = points(threshold=170.0)
    header, rows = parse_markdown(markdown_table(list(ps.values())))
    # the header Meta's script prints, in its order
    assert header == [
        "Number of Concurrent Requests", "P50 Latency (ms)", "P99 Latency (ms)", "RPS",
        "Output Tokens per Second", "Output Tokens per Second per GPU", "Input Tokens per Second",
        "Input Tokens per Second per GPU", "Average Output Tokens per Second per Request",
        "Number of Requests Below Threshold"]
    assert tuple(header) == MARKDOWN_COLUMNS
    assert [r[0] for r in rows] == ["1", "4"]
    c1 = dict(zip(header, rows[0], strict=True))
    window = 1.564 - 1.379
    assert c1["P50 Latency (ms)"] == "46.00"
    assert c1["P99 Latency (ms)"] == f"{(0.048 + 0.97 * 0.003) * 1000:.2f}" == "50.91"
    assert c1["RPS"] == f"{4 / window:.2f}" == "21.62"
    assert c1["Output Tokens per Second per GPU"] == f"{16 / window:.2f}"
    assert c1["Number of Requests Below Threshold"] == "2"


def test_markdown_marks_undefined_figures() -> None:
    _, rows = parse_markdown(markdown_table(list(points(None, None).values())))
    c1 = dict(zip(MARKDOWN_COLUMNS, rows[0], strict=True))
    assert c1["Output Tokens per Second per GPU"] == "–"
    assert c1["Number of Requests Below Threshold"] == "–"
    assert c1["Output Tokens per Second"] != "–"


def test_rich_table_shows_the_new_rows() -> None:
    console = Console(record=True, width=200)
    console.print(summary_table(list(points(threshold=170.0).values())))
    text = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 3}
    assert "slow requests (< 170 tok/s)" in lines
    assert lines["slow requests (< 170 tok/s)"].split("│")[2].strip() == "2"
    assert "output tokens/s per GPU" in lines and "input tokens/s" in lines
    assert "mean output tokens/s per request" in lines
    plain = Console(record=True, width=200)
    plain.print(summary_table(list(points(None, None).values())))
    assert "per GPU" not in plain.export_text() and "slow requests" not in plain.export_text()


@pytest.mark.parametrize(("args", "needle"), [
    (["--table-format", "html"], "--table-format must be one of rich, markdown"),
    (["--num-gpus", "0"], "num_gpus"),
    (["--threshold-tps", "-1"], "threshold_tps"),
])
def test_bad_parity_flags_are_one_line_errors(args: list[str], needle: str) -> None:
    r = CliRunner().invoke(app, ["bench", "--base-url", "http://127.0.0.1:9", *args])
    assert r.exit_code == 2
    assert needle in r.output and "Traceback" not in r.output
