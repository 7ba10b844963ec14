"""``bench --table-format markdown --num-gpus --threshold-tps`` as a user runs it (stub server)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from servemark.cli.render import MARKDOWN_COLUMNS
from tests.e2e.test_cli_e2e import servemark
from tests.unit.test_parity_metrics import parse_markdown


def test_markdown_table_csv_and_summary(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.01", "--itl", "0.01")
    out = tmp_path / "run"
    proc = servemark("bench", "--base-url", stub.base_url, "--concurrency", "1,2", "--num-requests", "4",
                     "--input-len", "8", "--output-len", "8", "--output-dir", str(out),
                     "--num-gpus", "4", "--threshold-tps", "100000", "--table-format", "markdown")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    header, rows = parse_markdown(stdout)
    assert tuple(header) == MARKDOWN_COLUMNS and [r[0] for r in rows] == ["1", "2"]
    # every request is slower than 100000 tok/s
    assert [r[-1] for r in rows] == ["4", "4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["num_gpus"] == 4 and summary["config"]["threshold_tps"] == 100000
    p = summary["points"][0]
    assert p["output_tokens_per_s_per_gpu"] == p["output_tokens_per_s"] / 4
    with open(out / "summary.csv") as fh:
        row = next(csv.DictReader(fh))
    assert row["slow_requests"] == "4" and row["num_gpus"] == "4"
    assert float(row["input_tokens_per_s_per_gpu"]) == p["input_tokens_per_s"] / 4
