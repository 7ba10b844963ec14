"""`servemark slurm bench JOB`: a serve-only job of the tiny model on the real SLURM, benchmarked
from the submit host through the endpoint the job script publishes; then cancelled."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from servemark.deploy import slurm
from servemark.deploy.cluster_spec import make_cluster_spec
from servemark.deploy.local import free_port
from tests.integration.cluster.slurmd_setup import LocalSlurm
from tests.integration.cluster.test_slurm_jobs import _job_processes, cli, tiny_spec

pytestmark = pytest.mark.slow


def test_bench_a_running_job(local_slurm: LocalSlurm, tiny_model: Path, tmp_path: Path,
                             job_state_dir: Path) -> None:
    port = free_port()
    rec = slurm.submit(make_cluster_spec(tiny_spec(tmp_path, tiny_model, bench=False, port=port)))
    try:
        endpoints = Path(rec.run_dir) / "endpoints"
        early = cli("slurm", "bench", rec.job_id, "--num-requests", "2", cwd=tmp_path)
        if not (endpoints.exists() and endpoints.read_text().strip()):  # queued or starting
            assert early.returncode == 1, early.stderr
            assert ("no ready endpoint yet" in early.stderr
                    or f"job {rec.job_id} is PENDING, not running" in early.stderr), early.stderr
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not (endpoints.exists() and endpoints.read_text().strip()):
            assert not slurm.status(rec.job_id).done, Path(rec.output).read_text()[-2000:]
            time.sleep(1)
        url = endpoints.read_text().strip()
        assert url == f"http://{local_slurm.host}:{port}"

        out = tmp_path / "bench-out"
        r = cli("slurm", "bench", rec.job_id, "--num-requests", "4", "--concurrency", "2",
                "--input-len", "16", "--output-len", "4", "--output-dir", str(out), cwd=tmp_path,
                timeout=300)
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"benchmarking {url}" in r.stderr
        lines = (out / "requests.jsonl").read_text().splitlines()
        assert len(lines) == 4
        assert all(not json.loads(ln).get("error") for ln in lines)
        assert url in json.dumps(json.loads((out / "summary.json").read_text()))

        bad = cli("slurm", "bench", rec.job_id, "--base-url", "http://x:1", cwd=tmp_path)
        assert bad.returncode == 2 and "sets --base-url itself" in bad.stderr
    finally:
        slurm.cancel(rec.job_id)
    final = slurm.wait(rec.job_id, poll_s=1, timeout_s=90)
    assert final.state == "CANCELLED"
    after = cli("slurm", "bench", rec.job_id, cwd=tmp_path)
    assert after.returncode == 1 and "not running" in after.stderr and "Traceback" not in after.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _job_processes(f"--port {port}"):
        time.sleep(0.5)
    assert not _job_processes(f"--port {port}")
