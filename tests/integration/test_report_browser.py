"""The HTML report in a real headless Chromium: a page that breaks is caught by the harness, and a
report with hostile strings renders with its tables and figures, no console errors, nothing run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from browser import chromium_binary, open_page, png_is_blank
from runfactory import synthetic_records, write_run
from servemark.report.build import make_report
from tests.conftest import need

DOM_PROBE = """({
  tables: Array.from(document.querySelectorAll('table')).map(t => t.id),
  figures: Array.from(document.querySelectorAll('figure img')).map(i => ({
      id: i.closest('figure').id, w: i.naturalWidth, h: i.naturalHeight, ok: i.complete})),
  sections: Array.from(document.querySelectorAll('section h2')).map(h => h.textContent),
  pwned: window.__pwned === true,
  errorsText: document.querySelector('#errors-0') ? document.querySelector('#errors-0').innerText : '',
  data: JSON.parse(document.getElementById('servemark-data').textContent).runs.length
})"""

HOSTILE = "</script><script>window.__pwned=true;console.error('injected')</script><img src=x onerror=\"window.__pwned=true\">"


def test_harness_catches_console_errors_and_blank_pages(tmp_path: Path) -> None:
    need(chromium_binary() is not None, "chromium not installed (apt-get install chromium)")
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); undefinedFunction();</script></body></html>")
    res = open_page(bad, tmp_path / "p1", "1 + 1")
    assert res.value == 2
    assert any("boom" in e for e in res.errors)
    assert any("undefinedFunction" in e for e in res.errors)
    assert png_is_blank(res.screenshot_png)


def test_hostile_report_renders_safely(tmp_path: Path) -> None:
    need(chromium_binary() is not None, "chromium not installed (apt-get install chromium)")
    rng = np.random.default_rng(0)
    recs = synthetic_records("c=1", 20, 0.03, 0.004, rng, failures=2, error_text=HOSTILE)
    run = write_run(tmp_path / "run", {"c=1": recs}, model=f"evil{HOSTILE}")
    files = make_report([run], tmp_path / "out")
    res = open_page(files.html, tmp_path / "profile", DOM_PROBE)
    assert res.errors == [], res.errors
    dom = res.value
    assert dom["pwned"] is False
    assert {"provenance-0", "summary-0", "endpoints-0", "errors-0"} <= set(dom["tables"])
    assert len(dom["figures"]) == 5 and all(f["ok"] and f["w"] > 100 for f in dom["figures"])
    assert "onerror" in dom["errorsText"]  # shown as text, not markup
    assert dom["data"] == 1
    assert not png_is_blank(res.screenshot_png)
