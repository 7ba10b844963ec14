"""Real SLURM: a rendered job starts the tiny-model vLLM CPU server and the benchmark step;
a running job is cancelled without leaving a process; bad specs fail before sbatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from servemark.deploy import slurm
from servemark.deploy.cluster_spec import make_cluster_spec
from servemark.deploy.local import free_port, stop_tree
from tests.conftest import SRC
from tests.integration.cluster.slurmd_setup import LocalSlurm

pytestmark = pytest.mark.slow


def tiny_spec(tmp_path: Path, model: Path, *, bench: bool, port: int) -> dict:
    spec: dict = {
        "name": "smtest",
        "model": str(model),
        "served_model_name": "tiny",
        "python": sys.executable,
        "port": port,
        "vllm_args": ["--max-model-len", "2048", "--enforce-eager", "--dtype", "bfloat16"],
        "ready_timeout_s": 400,
        "run_root": str(tmp_path / "runs"),
        "scheduler": {"time": "00:15:00", "cpus_per_task": 1},
        "environment": {"vars": {"PYTHONPATH": str(SRC), "VLLM_CPU_KVCACHE_SPACE": "1",
                                 "HF_HUB_OFFLINE": "1"}},
    }
    if bench:
        spec["bench"] = {"args": {"concurrency": 2, "num_requests": 6, "input_len": 32,
                                  "output_len": 8}, "health_timeout_s": 400}
    return spec


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servemark", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=_cli_env(), check=False)


def _job_processes(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if marker in cmd:
            found.append(p)
    return found


TOKEN = "hf_slurmJobNeverWritten77"


def test_job_serves_and_benchmarks(local_slurm: LocalSlurm, tiny_model: Path, tmp_path: Path,
                                   job_state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Submitted with --wait while `logs -f` follows the same job live (server stages with the
    shard-loading count, the endpoint, the end); HF_TOKEN reaches the job but no file."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    port = free_port()
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec(tmp_path, tiny_model, bench=True, port=port)))
    submit = subprocess.Popen([sys.executable, "-m", "servemark", "slurm", "submit", str(spec_path),
                               "--wait", "--timeout", "540"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_cli_env())
    try:
        assert submit.stdout is not None
        job_id = submit.stdout.readline().strip()
        follow = cli("slurm", "logs", job_id, "-f", cwd=tmp_path, timeout=600)
        rest, errs = submit.communicate(timeout=120)
    finally:
        if submit.poll() is None:
            stop_tree(submit.pid)
    assert submit.returncode == 0, errs + rest
    assert "COMPLETED" in rest
    # -f followed it to the end: shard loading and readiness from the server log, the endpoint
    assert follow.returncode == 0, follow.stderr
    assert "server-r0: loading weights 1/1" in follow.stderr, follow.stderr
    assert "server-r0: ready" in follow.stderr, follow.stderr
    assert f"endpoint ready: http://{local_slurm.host}:{port}" in follow.stdout
    assert "benchmark finished (exit 0)" in follow.stdout and "stopping (exit 0)" in follow.stdout

    run_dir = tmp_path / "runs" / f"smtest-{job_id}"
    summary = json.loads((run_dir / "bench" / "summary.json").read_text())
    point = summary["points"][0] if "points" in summary else summary
    assert "tiny" in json.dumps(summary)
    lines = (run_dir / "bench" / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 6
    assert all(json.loads(ln).get("error") in (None, "") for ln in lines), point
    assert (run_dir / "endpoints").read_text().strip().endswith(f":{port}")

    st = slurm.status(job_id)  # after the end: sacct, or scontrol/jobcomp without accounting
    assert st.state == "COMPLETED" and st.exit_code == 0 and st.done
    out = cli("slurm", "logs", job_id, cwd=tmp_path)
    assert out.returncode == 0
    assert f"endpoint ready: http://{local_slurm.host}:{port}" in out.stdout
    assert "benchmark finished (exit 0)" in out.stdout
    assert "HF_TOKEN is not set" not in out.stdout  # it reached the job ...
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".sbatch", ".out", ".log", ".json", ".jsonl", ".csv"):
            assert TOKEN not in f.read_text(errors="replace"), f  # ... and no file
    # the server is gone with the job
    assert not _job_processes(f"--port {port}")


def test_cancel_running_job_leaves_nothing(local_slurm: LocalSlurm, tiny_model: Path,
                                           tmp_path: Path, job_state_dir: Path) -> None:
    """A serve-only job: cancel while the server starts; queue empty, no process of it remains."""
    port = free_port()
    spec = make_cluster_spec(tiny_spec(tmp_path, tiny_model, bench=False, port=port))
    rec = slurm.submit(spec)
    marker = f"--port {port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _job_processes(marker):
        time.sleep(0.5)
    assert _job_processes(marker), "the vLLM server step never started"
    assert slurm.status(rec.job_id).state == "RUNNING"

    r = cli("slurm", "cancel", rec.job_id, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    final = slurm.wait(rec.job_id, poll_s=1, timeout_s=90)
    assert final.state == "CANCELLED"
    q = subprocess.run(["squeue", "-h", "-j", rec.job_id], capture_output=True, text=True,
                       check=False)
    assert q.stdout.strip() == ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _job_processes(marker):
        time.sleep(0.5)
    assert not _job_processes(marker)
    assert not _job_processes(f"smtest-{rec.job_id}")


def test_bad_specs_fail_before_sbatch(local_slurm: LocalSlurm, tmp_path: Path,
                                      job_state_dir: Path) -> None:
    cases = {
        "model: m\ntensor_parallel_size: 12\ngpus_per_node: 8\nnodes: 2\n": "whole nodes",
        "model: m\nenvironment: {vars: {HF_TOKEN: abc}}\n": "looks like a secret",
        "model: m\nscheduler: {time: soon}\n": "time",
        "model: m\nvllm_args: [--tensor-parallel-size, '2']\n": "tensor_parallel_size",
        "model: m\nbench: {args: [--base-url, http://x]}\n": "--base-url",
        "model: m\nfoo: 1\n": "foo",
        "- not a mapping\n": "mapping",
    }
    for text, expected in cases.items():
        p = tmp_path / "bad.yaml"
        p.write_text(text)
        r = cli("slurm", "submit", str(p), cwd=tmp_path)
        assert r.returncode == 2, (text, r.stderr)
        assert expected in r.stderr and "Traceback" not in r.stderr, (text, r.stderr)
        assert "abc" not in r.stderr
    r = cli("slurm", "status", "not-a-job", cwd=tmp_path)
    assert r.returncode == 2 and "not a SLURM job id" in r.stderr
    assert not (tmp_path / "servemark-jobs").exists()
