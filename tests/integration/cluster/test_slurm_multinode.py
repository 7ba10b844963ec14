"""Two real SLURM nodes (this host and a network namespace): `srun -N2` runs a task on each, and
a job rendered by `servemark slurm submit` starts a Ray head here and a worker there, serves the
tiny model with TP 2 over vLLM's Ray backend (rank 1 in the namespace), benchmarks it, and
leaves no process behind.

vLLM's Ray executor refuses the CPU platform; the test environment (never the product) patches
that with the import hook in tests/raycpu, and gives each Ray node one "GPU" (`ray.num_gpus`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from servemark.deploy import slurm
from servemark.deploy.cluster_spec import make_cluster_spec
from servemark.deploy.local import free_port
from tests.conftest import SRC
from tests.integration.cluster.conftest import TwoNodes
from tests.integration.cluster.test_slurm_jobs import cli
from tests.raycpu import raycpu_hook

pytestmark = pytest.mark.slow


def test_srun_runs_one_task_on_each_node(two_node_slurm: TwoNodes) -> None:
    ns = two_node_slurm.ns
    r = subprocess.run(["srun", "-N2", "-l", "bash", "-c",
                        f'echo "$SLURMD_NODENAME $(ip -4 -o addr show dev {ns.ifname})"'],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[1]: ln for ln in r.stdout.splitlines()}
    assert set(lines) == {two_node_slurm.head, two_node_slurm.other}, r.stdout
    assert f"inet {ns.host_ip}/" in lines[two_node_slurm.head]
    assert f"inet {ns.peer_ip}/" in lines[two_node_slurm.other]  # really in the namespace


def _job_processes(job_id: str) -> list[psutil.Process]:
    """Processes that carry the job's id in their environment (steps, Ray, vLLM workers)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("SLURM_JOB_ID") == job_id:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture
def ray_cpu_env() -> Iterator[dict[str, str]]:
    with raycpu_hook() as env:
        yield env


def tp2_spec(two_node_slurm: TwoNodes, tiny_model: Path, tmp_path: Path, port: int,
             ray_cpu_env: dict[str, str], *, bench: bool) -> dict:
    """TP 2 over the two nodes' Ray, the tiny model; with or without the benchmark step."""
    ns = two_node_slurm.ns
    spec: dict = {
        "name": "smtp2",
        "model": str(tiny_model),
        "served_model_name": "tiny",
        "python": sys.executable,
        "nodes": 2,
        "nodes_per_replica": 2,
        "tensor_parallel_size": 2,
        "port": port,
        "vllm_args": ["--max-model-len", "2048", "--enforce-eager", "--dtype", "bfloat16"],
        "ready_timeout_s": 420,
        "run_root": str(tmp_path / "runs"),
        "scheduler": {"time": "00:15:00", "cpus_per_task": 1},
        # one interface name on both nodes, as on a real cluster (hsn0, ib0)
        "ray": {"network_interface": ns.ifname, "num_gpus": 1, "wait_timeout_s": 120},
        "environment": {"vars": {
            "PYTHONPATH": str(SRC), "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_OMP_THREADS_BIND": "nobind", "RAY_USAGE_STATS_ENABLED": "0",
            **ray_cpu_env}},
    }
    if bench:
        spec["bench"] = {"args": {"concurrency": 2, "num_requests": 6, "input_len": 32,
                                  "output_len": 8}, "health_timeout_s": 420}
    return spec


def test_multinode_vllm_job_serves_and_benchmarks(two_node_slurm: TwoNodes, tiny_model: Path,
                                                  tmp_path: Path, job_state_dir: Path,
                                                  ray_cpu_env: dict[str, str],
                                                  job_ids: list[str]) -> None:
    ns, port = two_node_slurm.ns, free_port()
    spec = tp2_spec(two_node_slurm, tiny_model, tmp_path, port, ray_cpu_env, bench=True)
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    r = cli("slurm", "submit", str(spec_path), "--wait", "--timeout", "560", cwd=tmp_path,
            timeout=620)
    job_id = r.stdout.strip().splitlines()[0]
    job_ids.append(job_id)
    run_dir = tmp_path / "runs" / f"smtp2-{job_id}"
    logs = {p.name: p.read_text(errors="replace")[-3000:] for p in run_dir.glob("*.log")}
    assert r.returncode == 0 and "COMPLETED" in r.stdout, (r.stdout, r.stderr, logs)

    # Ray formed over both nodes; the server's rank 1 ran in the namespace
    out = (tmp_path / "runs" / f"smtp2-{job_id}.out").read_text()
    assert "ray has 2/2 nodes, 2/2 GPUs" in out
    assert f"ip={ns.peer_ip}" in (run_dir / "server-r0.log").read_text()
    assert (run_dir / "endpoints").read_text().strip() == f"http://{ns.host_ip}:{port}"

    summary = json.loads((run_dir / "bench" / "summary.json").read_text())
    assert "tiny" in json.dumps(summary)
    lines = (run_dir / "bench" / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 6
    recs = [json.loads(ln) for ln in lines]
    assert all(rec.get("error") in (None, "") for rec in recs), recs[0]
    assert all((rec.get("output_tokens") or 0) > 0 for rec in recs), recs[0]

    st = slurm.status(job_id)
    assert st.state == "COMPLETED" and st.exit_code == 0
    assert two_node_slurm.other in (st.nodes or ""), st
    logs_cli = cli("slurm", "logs", job_id, cwd=tmp_path)
    assert f"endpoint ready: http://{ns.host_ip}:{port}" in logs_cli.stdout
    # nothing of the job is left on either node: steps, Ray, vLLM workers
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _job_processes(job_id):
        time.sleep(1)
    left = [(p.pid, " ".join(p.cmdline())[:80]) for p in _job_processes(job_id)]
    assert not left
    assert os.environ.get("SLURM_CONF") == str(two_node_slurm.slurm.conf)


def test_cancel_multinode_job_leaves_nothing_on_either_node(
        two_node_slurm: TwoNodes, tiny_model: Path, tmp_path: Path, job_state_dir: Path,
        ray_cpu_env: dict[str, str], job_ids: list[str]) -> None:
    """Cancelled once Ray spans both nodes (the server starting): Ray head, the worker in the
    namespace and the server all end with the job."""
    port = free_port()
    rec = slurm.submit(make_cluster_spec(tp2_spec(two_node_slurm, tiny_model, tmp_path, port,
                                                  ray_cpu_env, bench=False)))
    job_ids.append(rec.job_id)
    out = Path(rec.output)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "ray has 2/2 nodes" not in (
            out.read_text(errors="replace") if out.exists() else ""):
        assert not slurm.status(rec.job_id).done, out.read_text(errors="replace")[-2000:]
        time.sleep(1)
    assert "ray has 2/2 nodes" in out.read_text(errors="replace")
    cmds = []
    for p in _job_processes(rec.job_id):
        try:
            cmds.append(" ".join(p.cmdline()))
        except psutil.Error:
            continue
    assert any("raylet" in c for c in cmds) and any("gcs_server" in c for c in cmds), cmds
    # the worker's `ray start` is the namespace node's
    assert any(f"--node-ip-address={two_node_slurm.ns.peer_ip}" in c for c in cmds), cmds

    r = cli("slurm", "cancel", rec.job_id, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert slurm.wait(rec.job_id, poll_s=1, timeout_s=90).state == "CANCELLED"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _job_processes(rec.job_id):
        time.sleep(1)
    assert not [(p.pid, " ".join(p.cmdline())[:80]) for p in _job_processes(rec.job_id)]


@pytest.fixture
def job_ids() -> Iterator[list[str]]:
    """Job ids the test submitted: their per-node Ray temp dirs (/tmp/ray-JOB-R-nN; both nodes
    share this /tmp) are removed afterwards, since a private SLURM's job ids restart at 1."""
    ids: list[str] = []
    yield ids
    for job_id in ids:
        for d in Path("/tmp").glob(f"ray-{job_id}-*-n*"):
            shutil.rmtree(d, ignore_errors=True)
