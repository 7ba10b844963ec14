"""Ctrl-C during `servemark slurm submit --wait`, typed on a real terminal (a pty whose
foreground process group gets the SIGINT, as from a keyboard), on the real SLURM: the command
asks whether to cancel the job; "y" cancels it (no process left), "n" leaves it running.
Then `slurm logs -f` on the serve-only job returns once it serves and prints its endpoint.

The jobs' "vLLM" is the stub server (tests/integration/cluster/test_pbs_jobs.stub_python):
what is tested here is the command's handling of the interrupt, not the server."""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from servemark.deploy import slurm
from servemark.deploy.local import free_port, stop_tree
from tests.conftest import SRC
from tests.integration.cluster.slurmd_setup import LocalSlurm
from tests.integration.cluster.test_pbs_jobs import pbs_spec
from tests.integration.cluster.test_slurm_jobs import _job_processes, cli

pytestmark = pytest.mark.slow
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A command on its own pty, as its controlling terminal (so ^C reaches its process group)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = os.openpty()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(SRC), os.environ.get("PYTHONPATH")])), "COLUMNS": "200"}
        self.proc = subprocess.Popen(  # noqa: PLW1509 (preexec only makes the pty controlling)
            args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.fd = master
        self.text = ""

    def expect(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            m = re.search(pattern, self.text)
            if m:
                return m
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} on the terminal within {timeout_s} s:\n{self.text}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the command exited and closed the terminal
                    data = b""
                if not data:
                    assert re.search(pattern, self.text), f"exited without {pattern!r}:\n{self.text}"
                self.text += _ANSI.sub("", data.decode(errors="replace").replace("\r", ""))

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def finish(self, timeout_s: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                stop_tree(self.proc.pid)
            try:
                while data := os.read(self.fd, 4096):  # what it printed before exiting
                    self.text += _ANSI.sub("", data.decode(errors="replace").replace("\r", ""))
            except OSError:
                pass
            os.close(self.fd)
        return rc


def _submit_and_interrupt(tmp_path: Path, answer: bytes) -> tuple[str, int, str, int]:
    port = free_port()
    spec = pbs_spec(tmp_path, port, bench=False)
    spec["name"] = "smint"
    path = tmp_path / f"int-{port}.yaml"
    path.write_text(yaml.safe_dump(spec))
    term = Terminal([sys.executable, "-m", "servemark", "slurm", "submit", str(path), "--wait"],
                    cwd=tmp_path)
    job_id = term.expect(r"(?m)^(\d+)$", 60).group(1)
    term.expect(rf"job {job_id}: RUNNING", 60)
    term.type(b"\x03")  # Ctrl-C
    term.expect(rf"cancel job {job_id}\? \[y/N\]", 30)
    term.type(answer + b"\r")
    rc = term.finish(60)
    return job_id, rc, term.text, port


def test_ctrl_c_during_submit_wait_asks_whether_to_cancel(local_slurm: LocalSlurm, tmp_path: Path,
                                                         job_state_dir: Path) -> None:
    job_id, rc, text, port = _submit_and_interrupt(tmp_path, b"y")
    assert rc == 130 and f"cancelled {job_id}" in text and "Traceback" not in text, text
    final = slurm.wait(job_id, poll_s=1, timeout_s=60)
    assert final.state == "CANCELLED", final
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _job_processes(f"--port {port}"):
        time.sleep(0.5)
    assert not _job_processes(f"--port {port}")

    job_id, rc, text, port = _submit_and_interrupt(tmp_path, b"n")
    try:
        assert rc == 130 and f"job {job_id} keeps running" in text and "Traceback" not in text, text
        assert slurm.status(job_id).state == "RUNNING"
        # the job serves only: `logs -f` returns once its server is ready, with the endpoint
        logs = cli("slurm", "logs", job_id, "-f", cwd=tmp_path, timeout=120)
        assert logs.returncode == 0, logs.stderr
        url = f"http://{local_slurm.host}:{port}"
        assert f"endpoint ready: {url} (replica 0, head node {local_slurm.host})" in logs.stdout
        assert f"endpoint: {url}" in logs.stderr and f"servemark slurm cancel {job_id}" in logs.stderr
        assert slurm.status(job_id).state == "RUNNING"  # following did not end it
    finally:
        slurm.cancel(job_id)
    assert slurm.wait(job_id, poll_s=1, timeout_s=60).state == "CANCELLED"
