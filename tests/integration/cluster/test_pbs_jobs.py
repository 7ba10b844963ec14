"""The PBS path for real through Slurm's PBS wrapper (Debian ``slurm-wlm-torque``: qsub reads the
``#PBS`` directives and submits with sbatch; qstat and qdel map onto SLURM). A rendered PBS script
runs, serves, benchmarks and ends COMPLETED; a running one is cancelled with qdel.

To keep this short the "vLLM" of these jobs is the stub server: the spec's ``python`` is a small
wrapper that runs ``servemark.stub`` for ``-m vllm.entrypoints.openai.api_server ... --port P``
and the real interpreter for everything else (jobtools, ``servemark bench``). The real vLLM path
of the same script body is covered by the SLURM tests."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from servemark.deploy import pbs
from servemark.deploy.cluster_spec import make_cluster_spec
from servemark.deploy.local import free_port
from tests.conftest import SRC, need
from tests.integration.cluster.slurmd_setup import LocalSlurm
from tests.integration.cluster.test_slurm_jobs import _job_processes, cli

pytestmark = pytest.mark.slow

TOKEN = "hf_pbsWrapperNeverShown42"


def stub_python(tmp_path: Path) -> Path:
    path = tmp_path / "python-with-stub-vllm"
    path.write_text(f"""#!/bin/bash
if [[ $1 == -m && $2 == vllm.entrypoints.openai.api_server ]]; then
  shift 2
  port=
  while (($#)); do
    if [[ $1 == --port ]]; then port=$2; fi
    shift
  done
  exec {sys.executable} -m servemark.stub --host 0.0.0.0 --port "$port" --ttft 0.01 --itl 0.002
fi
exec {sys.executable} "$@"
""")
    path.chmod(0o755)
    return path


def pbs_spec(tmp_path: Path, port: int, *, bench: bool) -> dict:
    spec: dict = {
        "name": "smpbs",
        "model": "/models/not-loaded-by-the-stub",
        "served_model_name": "tiny",
        "python": str(stub_python(tmp_path)),
        "port": port,
        "ready_timeout_s": 60,
        "run_root": str(tmp_path / "runs"),
        "scheduler": {"time": "00:05:00", "cpus_per_task": 1},
        "environment": {"vars": {"PYTHONPATH": str(SRC)}},
    }
    if bench:
        spec["bench"] = {"args": {"concurrency": 2, "num_requests": 6, "input_len": 8,
                                  "output_len": 4}, "health_timeout_s": 60}
    return spec


@pytest.fixture
def torque(local_slurm: LocalSlurm) -> LocalSlurm:
    need(shutil.which("qsub") is not None and pbs.slurm_wrapper(),
         "Slurm's PBS wrapper not installed (apt-get install slurm-wlm-torque)")
    return local_slurm


def test_pbs_job_serves_benchmarks_and_completes(torque: LocalSlurm, tmp_path: Path,
                                                 job_state_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    port = free_port()
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(pbs_spec(tmp_path, port, bench=True)))
    r = cli("pbs", "submit", str(spec_path), "--wait", "--timeout", "150", cwd=tmp_path,
            timeout=200)
    assert r.returncode == 0, r.stderr + r.stdout
    job_id = r.stdout.strip().splitlines()[0]
    assert "COMPLETED" in r.stdout

    run_dir = tmp_path / "runs" / f"smpbs-{job_id}"
    lines = (run_dir / "bench" / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(not json.loads(ln).get("error") for ln in lines)
    assert (run_dir / "endpoints").read_text().strip() == f"http://{torque.host}:{port}"
    (output,) = (tmp_path / "runs").glob("smpbs-*.out")  # qsub -o, not the wrapper's default
    text = output.read_text()
    assert f"job {job_id} on {torque.host}" in text  # NODES from SLURM: no PBS_NODEFILE here
    assert "benchmark finished (exit 0)" in text
    assert "HF_TOKEN is not set" not in text  # it reached the job ...
    for f in [*tmp_path.rglob("*.pbs"), *tmp_path.rglob("*.out"), *tmp_path.rglob("*.log")]:
        assert TOKEN not in f.read_text(errors="replace")  # ... and no file

    st = cli("pbs", "status", job_id, "--json", cwd=tmp_path)
    doc = json.loads(st.stdout)
    assert doc["state"] == "COMPLETED" and doc["exit_code"] == 0, doc
    assert doc["source"].startswith("qstat")


def test_pbs_cancel_running_job(torque: LocalSlurm, tmp_path: Path, job_state_dir: Path) -> None:
    port = free_port()
    rec = pbs.submit(make_cluster_spec(pbs_spec(tmp_path, port, bench=False)))
    endpoints = Path(rec.run_dir) / "endpoints"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (endpoints.exists() and endpoints.read_text().strip()):
        time.sleep(0.5)
    assert endpoints.read_text().strip(), Path(rec.output).read_text()
    running = cli("pbs", "status", rec.job_id, cwd=tmp_path)
    assert running.returncode == 0 and "RUNNING" in running.stdout, running.stderr

    r = cli("pbs", "cancel", rec.job_id, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    final = pbs.wait(rec.job_id, poll_s=1, timeout_s=60)
    assert final.state == "CANCELLED", final
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _job_processes(f"--port {port}"):
        time.sleep(0.5)
    assert not _job_processes(f"--port {port}")
