"""The HTML report and plots from synthetic run directories: escaping, embedded data, files."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from runfactory import simple_run, synthetic_records, write_run
from servemark.cli.main import app
from servemark.errors import ResultsError
from servemark.report.build import default_out_dir, make_report
from servemark.report.html import json_script
from servemark.report.run import config_label, load_runs

HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)>&amp;"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.data["script"] = self.data.get("script", "") + data


def test_report_escapes_everything_and_embeds_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    recs = synthetic_records("c=1", 15, 0.03, 0.004, rng, failures=3, error_text=HOSTILE)
    run = write_run(tmp_path / "run", {"c=1": recs}, model=f"m{HOSTILE}")
    files = make_report([run], tmp_path / "out")
    text = files.html.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text  # as text only: &lt;img ...
    parser = Tags()
    parser.feed(text)
    scripts = [a for t, a in parser.tags if t == "script"]
    assert scripts == [{"type": "application/json", "id": "servemark-data"}]  # data only, never code
    assert not [a for t, a in parser.tags for k in a if k.startswith("on")]
    csp = next(a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in (csp or "")
    data = json.loads(parser.data["script"])
    assert data["runs"][0]["summary"]["model"] == f"m{HOSTILE}"  # round-trips exactly
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # shown to the reader as text
    # every figure is embedded, nothing is fetched
    imgs = [a for t, a in parser.tags if t == "img"]
    assert len(imgs) == 5 and all((a["src"] or "").startswith("data:image/svg+xml;base64,") for a in imgs)
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", text)


def test_json_script_cannot_be_closed_by_data() -> None:
    block = json_script({"x": "</script><!--", "y": float("1.5")})
    assert block.count("</script>") == 1 and "<!--" not in block
    assert json.loads(block[block.index(">") + 1: block.rindex("<")]) == {"x": "</script><!--", "y": 1.5}


def test_plots_written_as_png_and_svg_for_several_runs(tmp_path: Path) -> None:
    a = simple_run(tmp_path / "a", seed=1, extra={"deploy": {"tensor_parallel_size": 1}})
    b = simple_run(tmp_path / "b", seed=2, ttft_s=0.08, extra={"deploy": {"tensor_parallel_size": 2}})
    files = make_report([a, b], tmp_path / "rep")
    assert set(files.plots) == {"sorted_ttft", "sorted_tpot", "latency_vs_throughput", "cdf_latency", "timeline"}
    for paths in files.plots.values():
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = paths["svg"].read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # legends name the configuration and the load point; axes carry units
    svg = files.plots["sorted_ttft"]["svg"].read_text()
    assert "tiny TP=1 · c=1" in svg and "tiny TP=2 · c=4" in svg and "TTFT (ms)" in svg
    lat = files.plots["latency_vs_throughput"]["svg"].read_text()
    assert "throughput (total tokens/s)" in lat
    assert files.comparison is not None and files.comparison.baseline == "tiny TP=1"
    html = files.html.read_text()
    assert 'id="compare-0"' in html and "tiny TP=2 vs tiny TP=1" in html


def test_labels_and_partial_runs(tmp_path: Path) -> None:
    assert config_label({"model": "m", "deploy": {"tensor_parallel_size": 4, "pipeline_parallel_size": 2,
                                                 "replicas": 3}}) == "m TP=4 PP=2 replicas=3"
    a = simple_run(tmp_path / "x" / "r", seed=1)
    b = simple_run(tmp_path / "y" / "r", seed=2)
    assert [r.label for r in load_runs([a, b])] == ["tiny [r] #1", "tiny [r] #2"]
    # a run interrupted before any point finished: records but no summaries
    doc = json.loads((a / "summary.json").read_text())
    doc["points"], doc["status"] = [], "interrupted"
    (a / "summary.json").write_text(json.dumps(doc))
    files = make_report([a], tmp_path / "partial")
    assert "no load point finished" in files.html.read_text()
    assert default_out_dir([a]) == a / "report"
    with pytest.raises(ResultsError):
        make_report([tmp_path / "missing"], tmp_path / "o")


def test_cli_report(tmp_path: Path) -> None:
    run = simple_run(tmp_path / "results" / "r1")
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "report" / "report.html").exists() and (run / "report" / "timeline.svg").exists()
    res = CliRunner().invoke(app, ["report", "r1", "--results-root", str(tmp_path / "results"),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "report.html").exists()
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a servemark run" in res.stderr

