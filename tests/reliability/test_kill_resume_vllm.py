"""``kill -9`` of ``servemark bench`` against the real vLLM CPU server, then ``--resume``: every
request recorded exactly once, the summary complete, the prompts those of the original seed."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from servemark.store.rundir import load_records
from tests.conftest import SERVED_NAME
from tests.reliability.test_kill_resume import lines, servemark

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_kill_9_and_resume_against_vllm(vllm_server, tmp_path: Path) -> None:
    out = tmp_path / "run"
    n = 16
    args = ["bench", "--base-url", vllm_server.base_url, "--model", SERVED_NAME,
            "--concurrency", "2", "--num-requests", str(n), "--input-len", "32",
            "--output-len", "32", "--output-dir", str(out), "--seed", "5"]
    proc = servemark(*args)
    deadline = time.monotonic() + 300
    while proc.poll() is None and lines(out / "requests.jsonl") < 3:
        assert time.monotonic() < deadline, "no request finished"
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the kill; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    kept = lines(out / "requests.jsonl")
    assert 3 <= kept < n
    proc = servemark("bench", "--resume", str(out))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and len(summary["resumes"]) == 1
    assert summary["points"][0]["completed"] == n
    ids = Counter(r.request_id for r in load_records(out).records)
    assert sorted(ids) == list(range(n)) and set(ids.values()) == {1}
