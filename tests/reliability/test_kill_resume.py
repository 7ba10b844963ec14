"""No lost data: ``kill -9`` of ``servemark bench`` at random moments, then ``--resume`` until the
run completes; every request id ends up recorded exactly once and the summary is whole."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from servemark.store.resume import load_resume_state, truncate_torn_tail
from servemark.store.rundir import load_records
from tests.conftest import SRC

KILLS = 5
N = 40
POINTS = ("1", "4")


def servemark(*args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "servemark", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_repeated_kill_9_then_resume_records_every_request_once(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.01", "--itl", "0.004")  # ≈ 70 ms per request
    out = tmp_path / "run"
    rng = random.Random(int(os.environ.get("SERVEMARK_KILL_SEED", "9")))
    args = ["bench", "--base-url", stub.base_url, "--concurrency", ",".join(POINTS),
            "--num-requests", str(N), "--input-len", "16", "--output-len", "16",
            "--no-server-metrics", "--output-dir", str(out), "--seed", "3"]
    kills = 0
    proc = servemark(*args)
    while kills < KILLS:
        before = lines(out / "requests.jsonl")
        deadline = time.monotonic() + 30
        if kills in (1, 3):
            # a resume killed during its own start-up (probe, tokenizer, summary rewrite)
            time.sleep(rng.uniform(0.1, 1.5))
        else:
            # a random moment after this attempt has recorded something new
            while proc.poll() is None and lines(out / "requests.jsonl") <= before:
                assert time.monotonic() < deadline, "no progress after resume"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # finished before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        proc = servemark("bench", "--resume", str(out))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert kills >= 3, f"only {kills} kills landed; the run is too short for the test"
    print(f"kill -9 survived: {kills}")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["partial"] is False
    assert [p["label"] for p in summary["points"]] == [f"c={c}" for c in POINTS]
    for p in summary["points"]:
        assert p["completed"] == N and p["failed"] == 0, p
        assert p["duration_s"] > 0
    # a resume killed during start-up may die before it records itself
    assert kills - 2 <= len(summary["resumes"]) <= kills
    loaded = load_records(out)
    assert loaded.torn_lines == 0
    ids = Counter(r.request_id for r in loaded.records)
    assert len(ids) == N * len(POINTS) and set(ids.values()) == {1}
    # same seed, same prompts: the ids are those an uninterrupted run would use
    assert sorted(ids) == list(range(N * len(POINTS)))
    csv = (out / "summary.csv").read_text().splitlines()
    assert len(csv) == 1 + len(POINTS)


def test_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"request_id": 3, "lo')
    assert truncate_torn_tail(path) == len(b'{"request_id": 3, "lo')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert truncate_torn_tail(path) == 0
    one = tmp_path / "one.jsonl"
    one.write_bytes(b"no newline at all")
    assert truncate_torn_tail(one) == 17 and one.read_bytes() == b""


def test_resume_refuses_a_complete_run(tmp_path: Path) -> None:
    import pytest

    from servemark.errors import ConfigError, ResultsError

    with pytest.raises(ResultsError):
        load_resume_state(tmp_path / "missing")
    (tmp_path / "summary.json").write_text(json.dumps({"status": "complete", "config": {}}))
    with pytest.raises(ConfigError, match="already complete"):
        load_resume_state(tmp_path)


def test_resume_after_ctrl_c_twice_resends_cancelled_requests(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.01", "--itl", "0.3")  # slow streams: some are in flight
    out = tmp_path / "run"
    proc = servemark("bench", "--base-url", stub.base_url, "--concurrency", "3", "--num-requests",
                     "6", "--input-len", "8", "--output-len", "3", "--no-server-metrics",
                     "--output-dir", str(out))
    deadline = time.monotonic() + 30
    while lines(out / "requests.jsonl") < 1:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # cancel what is in flight
    proc.communicate(timeout=30)
    first = load_records(out).records
    assert any(r.error_kind == "cancelled" for r in first), "nothing was cancelled"
    proc = servemark("bench", "--resume", str(out))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    recs = load_records(out).records
    assert sorted(r.request_id for r in recs) == list(range(6))
    assert all(r.ok for r in recs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["points"][0]["completed"] == 6
