"""Nothing left running, for SLURM jobs, on the real private SLURM: `slurm submit --wait` stopped
by SIGTERM, SIGHUP or a Ctrl-C with no terminal to ask cancels its job; after a `kill -9` of it
the job runs on until `servemark cleanup` cancels it; a job submitted without --wait is left to
run by `cleanup` and cancelled by `cleanup --all`; a job servemark did not record (or whose id
a record names under another name) is never cancelled. The queue is checked after each.

The jobs serve the stub server (test_pbs_jobs.stub_python): cheap, and what is tested is the
life of the job, not the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from servemark.deploy import slurm
from servemark.deploy.local import free_port
from servemark.deploy.submitted import SubmittedJob
from tests.conftest import SRC
from tests.deploy_helpers import wait_for
from tests.integration.cluster.slurmd_setup import LocalSlurm
from tests.integration.cluster.test_pbs_jobs import pbs_spec
from tests.integration.cluster.test_slurm_jobs import _job_processes

pytestmark = pytest.mark.slow


def squeue() -> list[str]:
    """Every job id in the (private) queue."""
    q = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True)
    return q.stdout.split()


@pytest.fixture
def state(local_slurm: LocalSlurm, job_state_dir: Path) -> Iterator[Path]:
    """A private state dir; afterwards, the queue must be empty (nothing left running)."""
    before = set(squeue())
    yield job_state_dir
    left = [j for j in squeue() if j not in before]
    for j in left:  # do not leave them to the next test either
        subprocess.run(["scancel", j], check=False)
    assert not left, f"jobs left in the queue: {left}"


def records(state: Path) -> list[dict]:
    folder = state / "submitted"
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []


def spec_file(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    spec = pbs_spec(tmp_path, port, bench=False)  # serves until cancelled (or 5 min)
    spec["name"] = f"smleft{port}"
    path = tmp_path / f"job-{port}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, port


def servemark(*args: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "servemark", *args], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    proc = servemark(*args, tmp_path=tmp_path)
    stdout, stderr = proc.communicate(timeout=90)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def follow_running(tmp_path: Path) -> tuple[subprocess.Popen[str], str, int]:
    """`slurm submit --wait`, once its job runs."""
    path, port = spec_file(tmp_path)
    proc = servemark("slurm", "submit", str(path), "--wait", tmp_path=tmp_path)
    job_id = (proc.stdout.readline() if proc.stdout else "").strip()
    assert job_id.isdigit(), proc.communicate(timeout=30)
    wait_for(lambda: slurm.status(job_id).state == "RUNNING", 60, f"job {job_id} to run")
    return proc, job_id, port


def assert_gone(job_id: str, port: int) -> None:
    """Not in the queue, CANCELLED, and nothing of its server left on the node."""
    wait_for(lambda: job_id not in squeue(), 60, f"job {job_id} to leave the queue")
    assert slurm.status(job_id).state == "CANCELLED"
    wait_for(lambda: not _job_processes(f"--port {port}"), 30, "the job's server to exit")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                           (signal.SIGINT, 130)])
def test_signal_during_submit_wait_cancels_the_job(state: Path, tmp_path: Path, sig: int,
                                                   code: int) -> None:
    """SIGTERM / SIGHUP: no one to ask; Ctrl-C with stdin not a terminal: no one to answer."""
    proc, job_id, port = follow_running(tmp_path)
    assert [r["job_id"] for r in records(state)] == [job_id]
    assert records(state)[0]["owner_pid"] == proc.pid
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"cancelled {job_id}" in stderr and "Traceback" not in stderr, stderr
    assert_gone(job_id, port)
    assert records(state) == []


def test_kill9_of_submit_wait_then_cleanup_cancels(state: Path, tmp_path: Path) -> None:
    proc, job_id, port = follow_running(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    time.sleep(1)
    assert job_id in squeue() and slurm.status(job_id).state == "RUNNING"  # left running
    listed = cli("cleanup", "--dry-run", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"would cancel slurm job {job_id}" in listed.stdout and "is gone" in listed.stdout
    assert job_id in squeue()  # a dry run changes nothing
    res = cli("cleanup", tmp_path=tmp_path)
    assert res.returncode == 0 and f"cancelled slurm job {job_id}" in res.stderr, res.stderr
    assert_gone(job_id, port)
    assert records(state) == []
    assert "nothing left running" in cli("cleanup", tmp_path=tmp_path).stderr


def test_cleanup_leaves_jobs_meant_to_run_and_all_cancels_only_ours(state: Path,
                                                                   tmp_path: Path) -> None:
    path, port = spec_file(tmp_path)
    sub = cli("slurm", "submit", str(path), tmp_path=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    (rec,) = records(state)
    assert rec["owner_pid"] is None  # meant to keep running
    # a job servemark did not submit, and a stale record whose id now names it
    stranger = subprocess.run(["sbatch", "--parsable", "-J", "not-ours", "-o", "/dev/null",
                               "--wrap", "sleep 300"], capture_output=True, text=True,
                              check=True).stdout.strip()
    stale = {**rec, "job_id": stranger, "owner_pid": 1, "owner_started_at": 0.0}
    SubmittedJob(**stale).path.write_text(json.dumps(stale))
    try:
        wait_for(lambda: slurm.status(job_id).state == "RUNNING", 60, f"job {job_id} to run")
        kept = cli("cleanup", tmp_path=tmp_path)
        assert kept.returncode == 0, kept.stderr
        assert f"left running: slurm job {job_id}" in kept.stderr, kept.stderr
        assert f"job {stranger} " not in kept.stderr
        assert {job_id, stranger} <= set(squeue())
        listed = cli("cleanup", "--dry-run", "--all", tmp_path=tmp_path)
        assert f"would cancel slurm job {job_id}" in listed.stdout, listed.stdout
        res = cli("cleanup", "--all", tmp_path=tmp_path)
        assert res.returncode == 0 and f"cancelled slurm job {job_id}" in res.stderr, res.stderr
        assert_gone(job_id, port)
        assert stranger in squeue() and slurm.status(stranger).state in ("RUNNING", "PENDING")
        assert records(state) == []  # the stale record was pruned, its job untouched
    finally:
        subprocess.run(["scancel", stranger], check=False)
    wait_for(lambda: stranger not in squeue(), 60, "the stranger job to end")
