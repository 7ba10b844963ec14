"""Report, catalog and compare on run directories measured against the real vLLM CPU server:
bench (2 load points, two configurations) → catalogued automatically → `servemark report` as a
user runs it → the HTML in headless Chromium → `servemark compare --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from browser import chromium_binary, open_page, png_is_blank
from servemark.api import bench
from servemark.deploy.local import VllmServer
from servemark.spec import BenchConfig
from servemark.store.catalog import Catalog
from tests.conftest import SERVED_NAME, SRC, need

DOM_PROBE = """({
  tables: Array.from(document.querySelectorAll('table')).map(t => ({id: t.id, rows: t.tBodies[0].rows.length})),
  figures: Array.from(document.querySelectorAll('figure img')).map(i => ({
      id: i.closest('figure').id, w: i.naturalWidth, ok: i.complete})),
  sections: Array.from(document.querySelectorAll('section h2')).map(h => h.textContent),
  summaryHead: Array.from(document.querySelectorAll('#summary-0 thead th')).map(th => th.textContent),
  height: document.body.scrollHeight
})"""


def servemark(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "servemark", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def real_runs(vllm_server: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("results")
    dirs = []
    for output_len in (8, 16):  # two configurations, each at two load points
        cfg = BenchConfig(base_url=vllm_server.base_url, model=SERVED_NAME, concurrency=[1, 2],
                          num_requests=4, input_len=16, output_len=output_len, results_root=root,
                          output_dir=root / f"tiny-out{output_len}")
        result = bench(cfg)
        assert not result.partial and all(p.completed == 4 for p in result.points)
        dirs.append(result.run_dir)
    return root, dirs


@pytest.mark.vllm
@pytest.mark.slow
def test_runs_are_catalogued_by_bench(real_runs: tuple[Path, list[Path]]) -> None:
    root, dirs = real_runs
    with Catalog(root) as cat:
        entries = cat.query(model=SERVED_NAME)
        assert sorted(e.run_id for e in entries) == ["tiny-out16", "tiny-out8"]
        e = cat.get("tiny-out16")
        assert e.status == "complete" and [p["label"] for p in e.points] == ["c=1", "c=2"]
        assert e.row["output_len"] == 16 and e.row["completed"] == 8
    res = servemark("runs", "list", "--json", "--results-root", str(root))
    assert res.returncode == 0, res.stderr
    assert {r["run_id"] for r in json.loads(res.stdout)} == {"tiny-out8", "tiny-out16"}


@pytest.mark.vllm
@pytest.mark.slow
def test_report_from_real_runs_opens_in_chromium(real_runs: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _, dirs = real_runs
    out = tmp_path / "report"
    res = servemark("report", *map(str, dirs), "--out", str(out))
    assert res.returncode == 0, res.stderr
    html = out / "report.html"
    assert html.exists()
    for name in ("sorted_ttft", "sorted_tpot", "latency_vs_throughput", "cdf_latency", "timeline"):
        assert not png_is_blank((out / f"{name}.png").read_bytes()), name
        assert "<svg" in (out / f"{name}.svg").read_text()
    legend = (out / "sorted_ttft.svg").read_text()  # the same model twice: the run names tell them apart
    assert "tiny [tiny-out8] · c=1" in legend and "tiny [tiny-out16] · c=2" in legend

    need(chromium_binary() is not None, "chromium not installed (apt-get install chromium)")
    page = open_page(html, tmp_path / "profile", DOM_PROBE)
    assert page.errors == [], page.errors
    dom = page.value
    tables = {t["id"]: t["rows"] for t in dom["tables"]}
    for run in (0, 1):
        assert tables[f"provenance-{run}"] >= 10
        assert tables[f"summary-{run}"] >= 20
        assert tables[f"endpoints-{run}"] == 2  # one endpoint × two load points
        assert f"errors-{run}" in tables
    assert tables["compare-0"] > 5 and tables["compare-1"] > 5  # c=1 and c=2 vs the baseline
    assert dom["summaryHead"] == ["metric", "c=1", "c=2"]
    # the runs sampled vLLM's /metrics (on by default), so the server timeline is there too
    assert [f["id"] for f in dom["figures"]] == ["fig-sorted_ttft", "fig-sorted_tpot",
                                                 "fig-latency_vs_throughput", "fig-cdf_latency",
                                                 "fig-timeline", "fig-server_timeline"]
    assert all(f["ok"] and f["w"] > 300 for f in dom["figures"])
    assert dom["sections"][:2] == ["Provenance", "Summary (latencies in ms)"]
    assert not png_is_blank(page.screenshot_png)
    (tmp_path / "screenshot.png").write_bytes(page.screenshot_png)


@pytest.mark.vllm
@pytest.mark.slow
def test_compare_real_runs(real_runs: tuple[Path, list[Path]]) -> None:
    root, dirs = real_runs
    res = servemark("compare", "tiny-out8", "tiny-out16", "--json", "--results-root", str(root),
                    "--n-boot", "500")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [p["point"] for p in data["points"]] == ["c=1", "c=2"]
    e2e = next(d for d in data["points"][0]["deltas"] if d["metric"] == "e2e_p50")
    assert e2e["baseline"] > 0 and e2e["value"] > 0 and e2e["ci_low"] is not None
    # twice the output tokens take longer end to end: a CI gate on E2E must trip
    res = servemark("compare", str(dirs[0]), str(dirs[1]), "--fail-if", "e2e_p50 > +0%")
    assert res.returncode == 1 and "threshold crossed" in res.stderr
