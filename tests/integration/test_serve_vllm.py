"""``servemark serve`` with real vLLM CPU servers on the tiny model.

- one server in the foreground, benchmarked, then killed by PID in the middle of a benchmark:
  the failures are recorded, the benchmark finishes with complete partial results, serve explains
  the death and exits non-zero, and nothing of the server's tree is left;
- two detached replicas (one core each) behind both load-balancing policies, then `stop`.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.deploy_helpers import (
    VLLM_FLAGS,
    cli_env,
    leftovers,
    run,
    servemark,
    server_pids,
    wait_for,
)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "requests.jsonl").read_text().splitlines()]


def test_server_killed_during_benchmark(tiny_model: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    serve_dir = tmp_path / "serve"
    server = servemark("serve", str(tiny_model), "--served-model-name", "tiny", "--ready-timeout",
                       "900", "--output-dir", str(serve_dir), "--", *VLLM_FLAGS, env=env)
    try:
        url = server.stdout.readline().strip()  # printed once the server is ready
        assert url.startswith("http://127.0.0.1:"), server.stderr.read() if server.poll() else url
        (pid,) = server_pids(serve_dir)
        bench_dir = tmp_path / "bench"
        bench = servemark("bench", "--base-url", url, "--concurrency", "2", "--num-requests", "400",
                          "--input-len", "32", "--output-len", "32", "--output-dir", str(bench_dir),
                          env=env)
        jsonl = bench_dir / "requests.jsonl"
        wait_for(lambda: jsonl.exists() and len(jsonl.read_text().splitlines()) >= 6, 300,
                 "the first requests to complete")
        os.kill(pid, signal.SIGKILL)  # the API server, mid-benchmark
        bench_out, bench_err = bench.communicate(timeout=300)
        serve_out, serve_err = server.communicate(timeout=120)
    finally:
        for p in (server,):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                p.wait(60)
    # the benchmark ran to its end and recorded every request, failures included
    assert bench.returncode == 0, bench_err
    summary = json.loads((bench_dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    (point,) = summary["points"]
    recs = records(bench_dir)
    assert len(recs) == 400 == point["completed"] + point["failed"] + point["cancelled"]
    assert point["completed"] >= 6 and point["failed"] >= 1
    assert set(point["errors_by_kind"]) <= {"connection", "truncated", "http_status"}
    assert all(r["ok"] for r in recs[:6])
    # serve noticed, explained and cleaned up
    assert server.returncode == 1
    assert "exited with code" in serve_err and "-9" in serve_err
    assert leftovers([pid]) == []


def test_two_cpu_replicas_with_both_policies(tiny_model: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    serve_dir = tmp_path / "serve"
    res = run("serve", str(tiny_model), "--served-model-name", "tiny", "--replicas", "2",
              "--device", "cpu", "--cores-per-replica", "1", "--detach", "--name", "pair",
              "--ready-timeout", "900", "--output-dir", str(serve_dir), "--", *VLLM_FLAGS, env=env)
    pids = server_pids(serve_dir) if (serve_dir / "deployment.json").exists() else []
    try:
        assert res.returncode == 0, res.stderr
        urls = res.stdout.split()
        assert len(urls) == 2 and urls[0] != urls[1]
        doc = json.loads((serve_dir / "deployment.json").read_text())
        assert [r["devices"] for r in doc["replicas"]] == [
            {"VLLM_CPU_OMP_THREADS_BIND": "0"}, {"VLLM_CPU_OMP_THREADS_BIND": "1"}]
        assert "stop it with: servemark stop pair" in res.stderr
        (listed,) = json.loads(run("ps", "--json", env=env).stdout)
        assert listed["name"] == "pair" and listed["state"] == "running"

        for policy in ("round-robin", "least-outstanding"):
            out = tmp_path / policy
            b = run("bench", "--base-url", urls[0], "--base-url", urls[1], "--lb-policy", policy,
                    "--concurrency", "2", "--num-requests", "20", "--input-len", "16",
                    "--output-len", "16", "--output-dir", str(out), env=env)
            assert b.returncode == 0, b.stderr
            assert "per endpoint" in b.stdout
            (point,) = json.loads((out / "summary.json").read_text())["points"]
            assert point["completed"] == 20 and point["failed"] == 0
            counts = {u: s["completed"] for u, s in point["by_endpoint"].items()}
            if policy == "round-robin":
                assert counts == {urls[0]: 10, urls[1]: 10}
            else:
                # two workers, two idle-equal servers: each request goes to the endpoint with
                # nothing in flight, so no endpoint ever serves two requests at once
                assert sum(counts.values()) == 20 and min(counts.values()) > 0
                for url in urls:
                    spans = sorted((r["start_s"], r["end_s"]) for r in records(out)
                                   if r["endpoint"] == url)
                    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    finally:
        stopped = run("stop", "pair", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "2 of 2 servers were running" in stopped.stderr
    assert leftovers(pids) == []
    assert json.loads(run("ps", "--json", env=env).stdout) == []
