"""Client-side load balancing against two stub servers of different speed (exact timing is what
the stub is for): round-robin splits evenly whatever the speed, least-outstanding favours the
fast one; summary.json and the table carry the per-endpoint breakdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servemark.api import bench
from servemark.spec import make_config
from tests.conftest import SRC


@pytest.fixture
def fast_and_slow(stub_server):
    fast = stub_server("--ttft", "0.005", "--itl", "0.001")
    slow = stub_server("--ttft", "0.1", "--itl", "0.01")
    return fast.base_url, slow.base_url


def run(urls: list[str], policy: str, out: Path, n: int = 40):
    cfg = make_config(base_url=urls, lb_policy=policy, concurrency=[4], num_requests=n,
                      input_len=8, output_len=8, output_dir=out)
    return bench(cfg)


def test_round_robin_splits_evenly(fast_and_slow, tmp_path: Path) -> None:
    fast, slow = fast_and_slow
    result = run([fast, slow], "round-robin", tmp_path / "rr")
    (point,) = result.points
    assert point.completed == 40 and point.failed == 0
    assert {u: s.completed for u, s in point.by_endpoint.items()} == {fast: 20, slow: 20}
    doc = json.loads((tmp_path / "rr" / "summary.json").read_text())
    assert doc["endpoints"] == [fast, slow] and doc["lb_policy"] == "round-robin"
    per = doc["points"][0]["by_endpoint"]
    assert per[fast]["completed"] == 20 and per[slow]["ttft_s"]["p50"] > per[fast]["ttft_s"]["p50"]
    records = [json.loads(x) for x in (tmp_path / "rr" / "requests.jsonl").read_text().splitlines()]
    assert sorted({r["endpoint"] for r in records}) == sorted([fast, slow])


def test_least_outstanding_favours_the_fast_endpoint(fast_and_slow, tmp_path: Path) -> None:
    fast, slow = fast_and_slow
    result = run([fast, slow], "least-outstanding", tmp_path / "lo")
    (point,) = result.points
    counts = {u: s.completed for u, s in point.by_endpoint.items()}
    assert point.failed == 0 and sum(counts.values()) == 40
    # the slow one (≈0.17 s per request) holds requests longer, so it is picked less often
    assert counts[fast] > 2 * counts[slow] > 0


def test_cli_prints_per_endpoint_table(fast_and_slow, tmp_path: Path) -> None:
    fast, slow = fast_and_slow
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    res = subprocess.run(
        [sys.executable, "-m", "servemark", "bench", "--base-url", fast, "--base-url", slow,
         "--lb-policy", "least-outstanding", "--concurrency", "2", "--num-requests", "10",
         "--input-len", "8", "--output-len", "4", "--output-dir", str(tmp_path / "cli")],
        capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "per endpoint" in res.stdout and fast in res.stdout and slow in res.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "servemark", "bench", "--base-url", fast, "--lb-policy", "random"],
        capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "lb_policy" in bad.stderr and "least-outstanding" in bad.stderr
